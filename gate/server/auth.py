"""Authentication and authorization of gRPC callers: one interceptor and one method → roles table.

Who is calling (in this order):
1. `authorization: Bearer <token>` metadata → the API token's principal `token:<name>` with its roles
   (gate/tokens.py; a bad, expired or revoked token is UNAUTHENTICATED even when a certificate is
   also presented, so a stale secret never goes unnoticed).
2. A client certificate verified against GATE_TLS_CLIENT_CA → `cert:<subject CN>` (or the first
   subject alternative name when the certificate has no CN); its roles come from GATE_CERT_ROLES. A
   verified certificate that is not mapped is a known caller without roles: PERMISSION_DENIED.
3. Neither → UNAUTHENTICATED.

What it may call: `METHOD_ROLES` maps every RPC of every gate.v1 service to the roles allowed to call
it; `admin` may call everything. A method missing from the table is refused to everyone but admin, and
a unit test asserts the table covers every method of every service in gate/v1, so a new RPC cannot be
open by accident. Health checking and reflection stay open: they reveal nothing a caller could not
learn by connecting. A known caller without the role gets PERMISSION_DENIED.

The interceptor wraps each handler rather than deciding in `intercept_service`, because the peer's
certificate is only visible on the ServicerContext. The principal is bound to the call's context
(`principal_of`), where gate/server/actor.py picks it up as the actor. Interceptors listed after this
one in `grpc.server(interceptors=[...])` run inside it, so they see the principal too.

Tokens are never logged; denials are logged at INFO with the principal and the method.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc

from gate.config import Settings
from gate.errors import GateError, InvalidArgument
from gate.ports import Clock
from gate.server.status import status_for
from gate.tokens import Principal, Role, TokenService, TokenStore, parse_roles

__all__ = [
    "AUTHORIZATION_METADATA_KEY",
    "METHOD_ROLES",
    "OPEN_SERVICES",
    "AuthInterceptor",
    "Authenticator",
    "allowed",
    "auth_enabled",
    "bind_principal",
    "build_auth",
    "is_loopback",
    "principal_of",
    "server_credentials",
]

log = logging.getLogger(__name__)

AUTHORIZATION_METADATA_KEY = "authorization"

# Services anyone may call, authenticated or not.
OPEN_SERVICES = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)

_CI = Role.CI
_ADMISSION = Role.ADMISSION
_SCANNER = Role.SCANNER
_SECURITY = Role.SECURITY
_BREAKGLASS = Role.BREAKGLASS
_ANY = frozenset(Role)


def _roles(*roles: Role) -> frozenset[Role]:
    return frozenset(roles)


# Every RPC of every gate.v1 service and the roles (besides admin) that may call it. CI pipelines read
# the results of the images they build (GetImageReport, ListFindings for their reports); gate keeps no
# owner per image, so a ci principal can read any image's report — everything else that reads across
# images (affected, audit, policy, exceptions, bases) is security's.
METHOD_ROLES: Mapping[str, frozenset[Role]] = {
    # gate.v1.Gate
    "/gate.v1.Gate/SubmitScan": _roles(_CI),
    "/gate.v1.Gate/GetScan": _roles(_CI, _SCANNER, _SECURITY),
    "/gate.v1.Gate/WatchScan": _roles(_CI, _SCANNER, _SECURITY),
    "/gate.v1.Gate/CheckPromotion": _roles(_CI, _ADMISSION, _SECURITY, _BREAKGLASS),
    "/gate.v1.Gate/GetImageReport": _roles(_CI, _ADMISSION, _SECURITY),
    "/gate.v1.Gate/ListFindings": _roles(_CI, _SECURITY),
    "/gate.v1.Gate/FindAffectedImages": _roles(_SECURITY),
    "/gate.v1.Gate/FindAffectedImagesPages": _roles(_SECURITY),  # the same answer, paged: the same roles
    "/gate.v1.Gate/ImportReport": _roles(_SCANNER),
    "/gate.v1.Gate/AddBase": _roles(_SECURITY),
    "/gate.v1.Gate/ListBases": _roles(_SECURITY),
    "/gate.v1.Gate/DeprecateBase": _roles(_SECURITY),
    "/gate.v1.Gate/RevokeBase": _roles(_SECURITY),
    "/gate.v1.Gate/ListBaseDescendants": _roles(_SECURITY),
    "/gate.v1.Gate/RebuildList": _roles(_SECURITY),
    "/gate.v1.Gate/ListImages": _roles(_SECURITY),
    # gate.v1.Ledger
    "/gate.v1.Ledger/Promote": _roles(_CI, _BREAKGLASS),
    "/gate.v1.Ledger/ListPromotions": _roles(_SECURITY),
    "/gate.v1.Ledger/GetPublicKey": _ANY,  # a public key: every authenticated caller may verify receipts
    # gate.v1.Exceptions
    "/gate.v1.Exceptions/AddException": _roles(_SECURITY),
    "/gate.v1.Exceptions/ListExceptions": _roles(_SECURITY),
    "/gate.v1.Exceptions/RevokeException": _roles(_SECURITY),
    "/gate.v1.Exceptions/ImportVex": _roles(_SECURITY),
    "/gate.v1.Exceptions/ExportVex": _roles(_SECURITY),
    # gate.v1.Audit
    "/gate.v1.Audit/ListAudit": _roles(_SECURITY),
    "/gate.v1.Audit/VerifyAudit": _roles(_SECURITY),
    # gate.v1.Policies
    "/gate.v1.Policies/ShowPolicy": _roles(_SECURITY),
    "/gate.v1.Policies/ValidatePolicy": _roles(_SECURITY),
    "/gate.v1.Policies/ReplayPolicy": _roles(_SECURITY),
}


def allowed(method: str, roles: Iterable[Role]) -> bool:
    """True when a caller holding `roles` may call `method` (a full name, /package.Service/Method)."""
    held = frozenset(roles)
    if Role.ADMIN in held:
        return True
    return bool(held & METHOD_ROLES.get(method, frozenset()))


def _service_of(method: str) -> str:
    return method.lstrip("/").split("/", 1)[0]


def is_loopback(listen: str) -> bool:
    """True for 127.x.x.x, [::1] and localhost listen addresses (auth is off by default there)."""
    host = listen.rsplit(":", 1)[0].strip("[]").lower()
    return host == "localhost" or host == "::1" or host.startswith("127.")


# The principal of each call in flight, keyed by its ServicerContext (dropped with the context).
_principals: weakref.WeakKeyDictionary[Any, Principal] = weakref.WeakKeyDictionary()
_principals_lock = threading.Lock()


def bind_principal(context: grpc.ServicerContext, principal: Principal) -> None:
    """Remember who is behind this call (the interceptor does this once it has authenticated)."""
    with _principals_lock:
        _principals[context] = principal


def principal_of(context: grpc.ServicerContext) -> Principal | None:
    """The authenticated principal of this call, or None when authentication is off."""
    with _principals_lock:
        return _principals.get(context)


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _values(auth_context: Mapping[str, Any], key: str) -> list[str]:
    """The non-empty values of one auth-context property (gRPC gives a list of bytes per key)."""
    raw = auth_context.get(key, ())
    items = [raw] if isinstance(raw, (bytes, str)) else list(raw)
    return [text for text in (_text(item).strip() for item in items) if text]


class Authenticator:
    """Turns a call's metadata and TLS peer into a principal (or raises grpc-ready refusals)."""

    def __init__(self, tokens: TokenService | None, cert_roles: Mapping[str, frozenset[Role]]) -> None:
        """`tokens` verifies bearer tokens (None: tokens are not accepted); `cert_roles` maps CN → roles."""
        self._tokens = tokens
        self._cert_roles = dict(cert_roles)

    def authenticate(
        self, metadata: Sequence[tuple[str, str | bytes]], auth_context: Mapping[str, Any]
    ) -> Principal | None:
        """The caller's principal, or None when it presented no credential at all.

        Raises _Refused(UNAUTHENTICATED) for a credential that does not verify.
        """
        for key, value in metadata:
            if key == AUTHORIZATION_METADATA_KEY:
                return self._bearer(_text(value))
        return self._certificate(auth_context)

    def _bearer(self, header: str) -> Principal:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _Refused(grpc.StatusCode.UNAUTHENTICATED, "authorization metadata must be 'Bearer <token>'")
        if self._tokens is None:
            raise _Refused(grpc.StatusCode.UNAUTHENTICATED, "this server does not accept tokens")
        principal = self._tokens.authenticate(token.strip())
        if principal is None:
            raise _Refused(grpc.StatusCode.UNAUTHENTICATED, "the token is unknown, expired or revoked")
        return principal

    def _certificate(self, auth_context: Mapping[str, Any]) -> Principal | None:
        # gRPC fills the x509_* properties only for a certificate that verified against the client CA.
        if "ssl" not in _values(auth_context, "transport_security_type"):
            return None
        names = _values(auth_context, "x509_common_name") + _values(
            auth_context, "x509_subject_alternative_name"
        )
        if not names:
            return None
        for name in names:
            if name in self._cert_roles:
                return Principal(f"cert:{name}", self._cert_roles[name])
        return Principal(f"cert:{names[0]}", ())


class _Refused(Exception):
    """A call refused before it reached a servicer, with the status to answer."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


_Behavior = Callable[[Any, grpc.ServicerContext], Any]


class AuthInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]  # generic only in the stubs
    """Authenticates every call to a gate.v1 service and checks METHOD_ROLES before the servicer runs."""

    def __init__(self, authenticator: Authenticator) -> None:
        """Check calls with `authenticator`."""
        self._authenticator = authenticator

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """The next handler, wrapped so the caller is checked first (open services pass through)."""
        handler = continuation(handler_call_details)
        method = str(handler_call_details.method)
        if handler is None or _service_of(method) in OPEN_SERVICES:
            return handler
        metadata = tuple(handler_call_details.invocation_metadata or ())
        wrapped: grpc.RpcMethodHandler[Any, Any] = _wrap(
            handler, lambda context: self._admit(method, metadata, context)
        )
        return wrapped

    def _admit(
        self, method: str, metadata: Sequence[tuple[str, str | bytes]], context: grpc.ServicerContext
    ) -> None:
        """Bind the caller's principal to `context`, or abort the call with the reason."""
        try:
            principal = self._authenticator.authenticate(metadata, context.auth_context() or {})
            if principal is None:
                raise _Refused(
                    grpc.StatusCode.UNAUTHENTICATED,
                    "authentication required: send a token (gate --token or GATE_TOKEN) "
                    "or a client certificate",
                )
            if not allowed(method, principal.roles):
                needed = [*sorted(r.value for r in METHOD_ROLES.get(method, frozenset())), "admin"]
                held = ", ".join(sorted(r.value for r in principal.roles)) or "none"
                log.info("permission denied: %s (roles: %s) called %s", principal, held, method)
                raise _Refused(
                    grpc.StatusCode.PERMISSION_DENIED,
                    f"{principal} (roles: {held}) may not call {method.lstrip('/')}; "
                    f"it needs one of: {', '.join(needed)}",
                )
        except _Refused as refused:
            if refused.code == grpc.StatusCode.UNAUTHENTICATED:
                log.info("unauthenticated call to %s from %s: %s", method, context.peer(), refused.message)
            context.abort(refused.code, refused.message)
        except GateError as e:  # the token store is unreachable: UNAVAILABLE, not a refusal
            context.abort(*status_for(e))
        bind_principal(context, principal)


def _wrap(handler: grpc.RpcMethodHandler[Any, Any], admit: Callable[[grpc.ServicerContext], None]) -> Any:
    """The same handler with `admit(context)` run before its behavior (aborting refused calls).

    The wrappers are plain functions even for streaming responses, so the check runs when gRPC calls
    the behavior, before the first message, and a refusal is the call's status.
    """

    def guard(behavior: Any) -> _Behavior:
        def guarded(request: Any, context: grpc.ServicerContext) -> Any:
            admit(context)
            return behavior(request, context)

        return guarded

    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(
            guard(handler.unary_unary), handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(
            guard(handler.unary_stream), handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(
            guard(handler.stream_unary), handler.request_deserializer, handler.response_serializer
        )
    return grpc.stream_stream_rpc_method_handler(
        guard(handler.stream_stream), handler.request_deserializer, handler.response_serializer
    )


def auth_enabled(settings: Settings, listen: str) -> bool:
    """GATE_AUTH_REQUIRED when set; otherwise on exactly when the server listens beyond loopback."""
    return settings.auth_required if settings.auth_required is not None else not is_loopback(listen)


def build_auth(settings: Settings, listen: str, tokens: TokenStore, clock: Clock) -> AuthInterceptor | None:
    """The interceptor for a server on `listen`, or None when authentication is off.

    The server starts even when no credential exists yet: tokens are created against the database
    (`gate tokens create`) and work at once, without a restart. Until then every call is refused, and
    the log says so loudly, as it does for tokens sent in clear text or an open non-loopback server.
    """
    if not auth_enabled(settings, listen):
        if not is_loopback(listen):
            log.warning(
                "AUTHENTICATION IS OFF on %s (GATE_AUTH_REQUIRED=false): anyone who can reach this "
                "address can scan, promote, add exceptions and read everything",
                listen,
            )
        return None
    cert_roles = {subject: parse_roles(roles, "GATE_CERT_ROLES") for subject, roles in settings.cert_roles}
    service = TokenService(tokens, clock)
    if not settings.tls_cert:
        log.warning(
            "authentication is on but TLS is off (GATE_TLS_CERT): bearer tokens cross the network in "
            "clear text"
        )
    if not any(t.state(clock.now()) == "active" for t in service.list()) and not (
        settings.tls_client_ca and cert_roles
    ):
        log.warning(
            "AUTHENTICATION IS ON BUT NOBODY CAN AUTHENTICATE: no active token exists and no client "
            "certificate is mapped to roles; every call will be refused until you run "
            "`gate tokens create --role admin --name NAME` against this database (or set "
            "GATE_TLS_CLIENT_CA + GATE_CERT_ROLES)"
        )
    log.info(
        "authentication on: bearer tokens%s",
        " and client certificates" if settings.tls_client_ca else "",
    )
    return AuthInterceptor(Authenticator(service, cert_roles))


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials from GATE_TLS_CERT/KEY (None without them); client certs required with a CA."""
    if not settings.tls_cert:
        return None
    cert = _read_pem(settings.tls_cert, "GATE_TLS_CERT")
    key = _read_pem(settings.tls_key, "GATE_TLS_KEY")
    ca = _read_pem(settings.tls_client_ca, "GATE_TLS_CLIENT_CA") if settings.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


def _read_pem(path: str, field: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise InvalidArgument(f"cannot read {path}: {e.strerror}", field) from e
