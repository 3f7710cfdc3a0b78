"""`gate check` (table output) lists the exceptions a verdict applied, like `--json` always did."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from gate.cli.formats.exceptions import render_applied_exceptions
from gate.v1 import gate_pb2, gate_pb2_grpc
from tests.unit.test_cli import DIGEST, IMAGE, FakeGate, run_cli

# 2025-01-31T12:00:00Z
EXPIRES = Timestamp(seconds=1_738_324_800)


def _applied(**kw: object) -> gate_pb2.AppliedException:
    fields: dict[str, object] = {
        "exception_id": "ex-0123456789ab",
        "vulnerability_id": "CVE-2024-1111",
        "finding_id": "CVE-2024-1111",
        "package": "openssl",
        "installed_version": "3.0.1",
        "scope": "repo:registry.example:5000/team/app",
        "expires_at": EXPIRES,
        "owner": "team-payments",
        "ticket": "SEC-42",
        "reason": "not reachable: the TLS server is off",
        "rule": "max-severity",
        **kw,
    }
    return gate_pb2.AppliedException(**fields)  # type: ignore[arg-type]


def _allowed_with(*applied: gate_pb2.AppliedException) -> gate_pb2.Decision:
    return gate_pb2.Decision(
        allowed=True,
        digest=DIGEST,
        from_stage="s2",
        to_stage="p",
        state=gate_pb2.EVALUATED,
        summary="allowed; 2 findings waived by exceptions",
        applied_exceptions=list(applied),
        warnings=["exception ex-0123456789ab expires in 3 days"],
    )


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGate]:
    servicer = FakeGate()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    gate_pb2_grpc.add_GateServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    monkeypatch.setenv("GATE_SERVER", f"127.0.0.1:{port}")
    try:
        yield servicer
    finally:
        servicer.release.set()
        server.stop(grace=None)


def test_nothing_applied_renders_nothing() -> None:
    assert render_applied_exceptions([]) == ""


def test_one_row_per_waived_finding_with_id_cve_owner_ticket_and_expiry() -> None:
    text = render_applied_exceptions(
        [
            _applied(package="libssl3"),
            # Matched through an alias: the exception names the GHSA, the finding is the CVE.
            _applied(
                exception_id="ex-aaaaaaaaaaaa",
                vulnerability_id="GHSA-xxxx-yyyy-zzzz",
                finding_id="CVE-2024-2222",
                package="requests",
                owner="team-web",
                ticket="",
                expires_at=None,
            ),
        ]
    )
    lines = text.strip("\n").splitlines()
    assert lines[0] == "Exceptions applied (2):"
    assert lines[1].split() == ["EXCEPTION", "VULNERABILITY", "PACKAGE", "OWNER", "/", "TICKET", "EXPIRES"]
    first, second = lines[2], lines[3]
    assert first.split() == [
        "ex-0123456789ab",
        "CVE-2024-1111",
        "libssl3",
        "team-payments",
        "/",
        "SEC-42",
        "2025-01-31",
    ]
    # No ticket: just the owner; no expiry: the blank marker, so the columns stay aligned.
    assert second.split() == [
        "ex-aaaaaaaaaaaa",
        "GHSA-xxxx-yyyy-zzzz",
        "(CVE-2024-2222)",
        "requests",
        "team-web",
        "-",
    ]
    # Short: the reason and scope stay in --json.
    assert "not reachable" not in text and "repo:" not in text
    assert "PLATFORM" not in text


def test_platform_column_only_for_index_verdicts() -> None:
    text = render_applied_exceptions([_applied(platform="linux/arm64"), _applied(platform="linux/amd64")])
    header, *rows = text.strip("\n").splitlines()[1:]
    assert header.split()[-1] == "PLATFORM"
    assert [row.split()[-1] for row in rows] == ["linux/amd64", "linux/arm64"]


def test_check_table_lists_applied_exceptions_before_warnings(
    fake: FakeGate, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.decision = _allowed_with(_applied(), _applied(package="libssl3"))
    r = run_cli(capsys, "check", IMAGE, "--from", "s2", "--to", "p")
    assert r.code == 0
    assert r.out.startswith(f"ALLOWED: {DIGEST} s2 -> p")
    assert "Exceptions applied (2):" in r.out
    assert r.out.count("ex-0123456789ab  CVE-2024-1111") == 2
    assert "team-payments / SEC-42" in r.out and "2025-01-31" in r.out
    assert r.out.index("Exceptions applied") < r.out.index("Warnings (1):")


def test_check_table_without_exceptions_has_no_block(
    fake: FakeGate, capsys: pytest.CaptureFixture[str]
) -> None:
    fake.decision = _allowed_with()
    r = run_cli(capsys, "check", IMAGE, "--from", "s2", "--to", "p")
    assert r.code == 0
    assert "Exceptions applied" not in r.out
