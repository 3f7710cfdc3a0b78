"""The method → roles table covers every RPC, and the interceptor's decisions: open services, no
credential, bad token, wrong role, mapped and unmapped client certificates, admin, and the principal
bound as the actor (a gate-actor claim ignored)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any

import grpc
import pytest

import gate.v1
from gate.server.actor import actor_of
from gate.server.auth import (
    METHOD_ROLES,
    OPEN_SERVICES,
    Authenticator,
    AuthInterceptor,
    allowed,
    is_loopback,
    principal_of,
)
from gate.tokens import Principal, Role


def _all_methods() -> set[str]:
    methods: set[str] = set()
    for info in pkgutil.iter_modules(gate.v1.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"gate.v1.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            methods |= {f"/{service.full_name}/{m.name}" for m in service.methods}
    return methods


def test_every_rpc_of_every_service_is_in_the_table() -> None:
    methods = _all_methods()
    assert "/gate.v1.Gate/CheckPromotion" in methods and len(methods) > 20
    missing = methods - set(METHOD_ROLES)
    assert not missing, f"add these RPCs to METHOD_ROLES in gate/server/auth.py: {sorted(missing)}"
    assert not set(METHOD_ROLES) - methods, "METHOD_ROLES names RPCs that no longer exist"


def test_the_roles_of_the_issue() -> None:
    ci = {Role.CI}
    for method in ("SubmitScan", "GetScan", "WatchScan", "CheckPromotion"):
        assert allowed(f"/gate.v1.Gate/{method}", ci)
    assert allowed("/gate.v1.Ledger/Promote", ci)
    assert not allowed("/gate.v1.Exceptions/AddException", ci)
    assert not allowed("/gate.v1.Audit/ListAudit", ci)
    assert allowed("/gate.v1.Gate/CheckPromotion", {Role.ADMISSION})
    assert not allowed("/gate.v1.Gate/SubmitScan", {Role.ADMISSION})
    assert allowed("/gate.v1.Gate/ImportReport", {Role.SCANNER})
    assert not allowed("/gate.v1.Gate/CheckPromotion", {Role.SCANNER})
    security = {Role.SECURITY}
    for method in (
        "/gate.v1.Gate/FindAffectedImages",
        "/gate.v1.Gate/FindAffectedImagesPages",
        "/gate.v1.Audit/VerifyAudit",
        "/gate.v1.Policies/ReplayPolicy",
        "/gate.v1.Exceptions/AddException",
        "/gate.v1.Gate/AddBase",
    ):
        assert allowed(method, security)
    assert not allowed("/gate.v1.Ledger/Promote", security)
    # The paged answer is the same answer: exactly the roles of the one-row-per-message RPC.
    assert (
        METHOD_ROLES["/gate.v1.Gate/FindAffectedImagesPages"]
        == METHOD_ROLES["/gate.v1.Gate/FindAffectedImages"]
    )
    # admin may call everything, including RPCs a future version adds before the table is updated.
    assert all(allowed(m, {Role.ADMIN}) for m in _all_methods())
    assert allowed("/gate.v1.Future/Thing", {Role.ADMIN})
    assert not allowed("/gate.v1.Future/Thing", set(Role) - {Role.ADMIN})


@pytest.mark.parametrize(
    ("listen", "loopback"),
    [
        ("127.0.0.1:0", True),
        ("127.0.0.2:50051", True),
        ("localhost:50051", True),
        ("[::1]:50051", True),
        ("0.0.0.0:50051", False),
        ("[::]:50051", False),
        ("10.0.0.5:50051", False),
        (":50051", False),
    ],
)
def test_loopback(listen: str, loopback: bool) -> None:
    assert is_loopback(listen) is loopback


class Aborted(Exception):
    pass


class FakeContext:
    """The parts of grpc.ServicerContext the interceptor and actor_of use."""

    def __init__(self, auth: dict[str, list[bytes]] | None = None) -> None:
        self._auth = auth or {}
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.metadata: tuple[tuple[str, str], ...] = ()

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth

    def peer(self) -> str:
        return "ipv4:127.0.0.1:5555"

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code, self.details = code, details
        raise Aborted(details)


class FakeTokens:
    def authenticate(self, token: str) -> Principal | None:
        return {
            "gate_ci": Principal("token:ci", {Role.CI}),
            "gate_admin": Principal("token:root", {Role.ADMIN}),
        }.get(token)


class Details:
    def __init__(self, method: str, metadata: tuple[tuple[str, str], ...]) -> None:
        self.method = method
        self.invocation_metadata = metadata


def _call(
    method: str,
    metadata: tuple[tuple[str, str], ...] = (),
    auth: dict[str, list[bytes]] | None = None,
    stream: bool = False,
) -> tuple[FakeContext, Any]:
    """Run one call through the interceptor; the behavior answers with the actor it sees."""
    seen: list[str] = []

    def unary(request: Any, context: Any) -> str:
        seen.append(actor_of(context))
        return f"ok:{actor_of(context)}"

    def streaming(request: Any, context: Any) -> Iterator[str]:
        yield f"ok:{actor_of(context)}"

    handler = (
        grpc.unary_stream_rpc_method_handler(streaming)
        if stream
        else grpc.unary_unary_rpc_method_handler(unary)
    )
    interceptor = AuthInterceptor(
        Authenticator(FakeTokens(), {"build.example": frozenset({Role.CI})})  # type: ignore[arg-type]
    )
    wrapped = interceptor.intercept_service(lambda _d: handler, Details(method, metadata))  # type: ignore[arg-type]
    assert wrapped is not None
    context = FakeContext(auth)
    context.metadata = metadata
    behavior: Any = wrapped.unary_stream if stream else wrapped.unary_unary
    try:
        result = behavior(None, context)
        return context, list(result) if stream else result
    except Aborted:
        return context, None


def _cert(cn: str) -> dict[str, list[bytes]]:
    return {"transport_security_type": [b"ssl"], "x509_common_name": [cn.encode()]}


def test_open_services_need_nothing() -> None:
    for service in OPEN_SERVICES:
        context, result = _call(f"/{service}/Check")
        assert context.code is None and result == "ok:anonymous@ipv4:127.0.0.1:5555"


def test_no_credential_is_unauthenticated() -> None:
    context, result = _call("/gate.v1.Gate/CheckPromotion", (("gate-actor", "alice"),))
    assert result is None and context.code == grpc.StatusCode.UNAUTHENTICATED
    assert "GATE_TOKEN" in context.details


@pytest.mark.parametrize("header", ["Bearer gate_nope", "Basic abc", "Bearer ", "gate_ci"])
def test_bad_token_is_unauthenticated(header: str) -> None:
    context, result = _call("/gate.v1.Gate/CheckPromotion", (("authorization", header),))
    assert result is None and context.code == grpc.StatusCode.UNAUTHENTICATED


def test_token_principal_is_the_actor_and_a_claim_is_ignored() -> None:
    metadata = (("authorization", "Bearer gate_ci"), ("gate-actor", "security-lead"))
    context, result = _call("/gate.v1.Gate/CheckPromotion", metadata)
    assert context.code is None and result == "ok:token:ci"
    context, result = _call("/gate.v1.Gate/WatchScan", metadata, stream=True)
    assert context.code is None and result == ["ok:token:ci"]


def test_wrong_role_is_permission_denied_naming_what_is_needed() -> None:
    context, result = _call("/gate.v1.Audit/ListAudit", (("authorization", "Bearer gate_ci"),))
    assert result is None and context.code == grpc.StatusCode.PERMISSION_DENIED
    assert "token:ci (roles: ci)" in context.details and "security, admin" in context.details
    # Streaming RPCs are refused before their first message.
    context, result = _call(
        "/gate.v1.Gate/FindAffectedImages", (("authorization", "Bearer gate_ci"),), stream=True
    )
    assert result is None and context.code == grpc.StatusCode.PERMISSION_DENIED


def test_admin_may_call_anything() -> None:
    context, result = _call("/gate.v1.Audit/ListAudit", (("authorization", "Bearer gate_admin"),))
    assert context.code is None and result == "ok:token:root"


def test_client_certificates() -> None:
    context, result = _call("/gate.v1.Gate/SubmitScan", auth=_cert("build.example"))
    assert context.code is None and result == "ok:cert:build.example"
    # A verified but unmapped certificate is a known caller without roles.
    context, result = _call("/gate.v1.Gate/SubmitScan", auth=_cert("laptop.example"))
    assert context.code == grpc.StatusCode.PERMISSION_DENIED and "cert:laptop.example" in context.details
    # SAN when there is no CN; not over plain text.
    san = {"transport_security_type": [b"ssl"], "x509_subject_alternative_name": [b"build.example"]}
    assert _call("/gate.v1.Gate/SubmitScan", auth=san)[1] == "ok:cert:build.example"
    plain = {"transport_security_type": [b"insecure"], "x509_common_name": [b"build.example"]}
    assert _call("/gate.v1.Gate/SubmitScan", auth=plain)[0].code == grpc.StatusCode.UNAUTHENTICATED
    # A presented token that fails is refused even with a good certificate.
    context, _ = _call(
        "/gate.v1.Gate/SubmitScan", (("authorization", "Bearer gate_bad"),), _cert("build.example")
    )
    assert context.code == grpc.StatusCode.UNAUTHENTICATED


def test_principal_is_bound_to_the_call_only() -> None:
    context = FakeContext()
    assert principal_of(context) is None  # type: ignore[arg-type]
    assert actor_of(context) == "anonymous@ipv4:127.0.0.1:5555"  # type: ignore[arg-type]
