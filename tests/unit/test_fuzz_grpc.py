"""Fuzzing every gate.v1 RPC of a real in-process server with random values in every request field.

Whatever arrives, the answer is a proper status — never INTERNAL or UNKNOWN (a bug) — and a request
that is refused leaves the database exactly as it was (row counts of every table unchanged). Registry
traffic is sent to a dead loopback proxy, so random references that look like registry names fail
UNAVAILABLE without leaving the machine.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as d
from google.protobuf.message_factory import GetMessageClass
from hypothesis import given
from hypothesis import strategies as st

from gate.server.app import RunningGate
from gate.v1 import audit_pb2, exceptions_pb2, gate_pb2, ledger_pb2, policy_pb2
from tests.support.gateserver import make_settings, running_gate
from tests.unit.fuzzing import FUZZ

SERVICES = [
    s
    for module in (gate_pb2, ledger_pb2, exceptions_pb2, audit_pb2, policy_pb2)
    for s in module.DESCRIPTOR.services_by_name.values()
]
METHODS = [m for s in SERVICES for m in s.methods if not m.client_streaming]
BUGS = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)

texts = st.text(max_size=60) | st.sampled_from(
    [
        "",
        "s2",
        "p",
        "trivy",
        "clair",
        "sha256:" + "a" * 64,
        "docker-archive:/nonexistent.tar",
        "127.0.0.1:1/p/a:1",
    ]
)


@pytest.fixture(scope="module")
def gate(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningGate, Path]]:
    tmp = tmp_path_factory.mktemp("fuzz-grpc")
    mp = pytest.MonkeyPatch()
    # requests (and so the registry client) honours these: every registry call hits a dead loopback port.
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        mp.setenv(name, "http://127.0.0.1:9")
    mp.setenv("NO_PROXY", "")
    settings = make_settings(
        tmp, "trivy", tmp / "no-cache", rescan_tick=0.0, docker_host="unix:///nonexistent"
    )
    try:
        with running_gate(settings) as running:
            yield running, tmp / "gate.db"
    finally:
        mp.undo()


def _counts(db: Path) -> dict[str, int]:
    conn = sqlite3.connect(db)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    finally:
        conn.close()


def _value(draw: st.DrawFn, field: d.FieldDescriptor) -> Any:
    t = field.type
    if t == d.FieldDescriptor.TYPE_STRING:
        return draw(texts)
    if t == d.FieldDescriptor.TYPE_BYTES:
        return draw(st.binary(max_size=200))
    if t == d.FieldDescriptor.TYPE_BOOL:
        return draw(st.booleans())
    if t == d.FieldDescriptor.TYPE_ENUM:
        return draw(st.sampled_from([v.number for v in field.enum_type.values]))
    if t in (d.FieldDescriptor.TYPE_INT32, d.FieldDescriptor.TYPE_SINT32):
        return draw(st.integers(-(2**31), 2**31 - 1))
    if t in (d.FieldDescriptor.TYPE_INT64, d.FieldDescriptor.TYPE_SINT64):
        return draw(st.integers(-(2**63), 2**63 - 1))
    if t in (d.FieldDescriptor.TYPE_UINT32,):
        return draw(st.integers(0, 2**32 - 1))
    if t in (d.FieldDescriptor.TYPE_UINT64,):
        return draw(st.integers(0, 2**64 - 1))
    if t in (d.FieldDescriptor.TYPE_DOUBLE, d.FieldDescriptor.TYPE_FLOAT):
        return draw(st.floats(allow_nan=False, width=32))
    return None  # nested messages stay unset


@st.composite
def calls(draw: st.DrawFn, methods: list[d.MethodDescriptor]) -> tuple[d.MethodDescriptor, Any]:
    method = draw(st.sampled_from(methods))
    request = GetMessageClass(method.input_type)()
    for field in method.input_type.fields:
        if field.type == d.FieldDescriptor.TYPE_MESSAGE:
            continue
        if field.is_repeated:
            values = [_value(draw, field) for _ in range(draw(st.integers(0, 3)))]
            getattr(request, field.name).extend(values)
        elif draw(st.integers(0, 4)):  # mostly set, sometimes left at its default
            setattr(request, field.name, _value(draw, field))
    return method, request


def _call(gate: RunningGate, method: d.MethodDescriptor, request: Any) -> grpc.StatusCode:
    path = f"/{method.containing_service.full_name}/{method.name}"
    response = GetMessageClass(method.output_type)
    with grpc.insecure_channel(gate.address) as channel:
        kind = channel.unary_stream if method.server_streaming else channel.unary_unary
        stub = kind(
            path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString,
        )
        try:
            answer = stub(request, timeout=20, metadata=(("gate-actor", "fuzz"),))
            if method.server_streaming:
                list(answer)
        except grpc.RpcError as e:
            assert e.code() not in BUGS, f"{path} answered {e.code()}: {e.details()} for {request}"
            return e.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.name)
def test_random_requests_never_internal_nor_partial(
    gate: tuple[RunningGate, Path], service: d.ServiceDescriptor
) -> None:
    running, db = gate
    methods = [m for m in METHODS if m.containing_service is service]

    @FUZZ
    @given(calls(methods))
    def run(call: tuple[d.MethodDescriptor, Any]) -> None:
        method, request = call
        before = _counts(db)
        code = _call(running, method, request)
        if code != grpc.StatusCode.OK:
            assert _counts(db) == before, f"{method.name} was refused ({code}) but changed the database"

    run()
