"""Typed gRPC client for the gate.v1 API and the status-code → exit-code mapping.

This is the only CLI module that imports grpc: commands see protobuf messages and `CliError`, never
`grpc.RpcError`, so the exit-code contract is enforced in one place.
"""

from __future__ import annotations

import argparse
import getpass
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar, cast

import grpc

from gate.cli import CliError, ExitCode
from gate.config import Settings
from gate.server.actor import ACTOR_METADATA_KEY
from gate.server.auth import AUTHORIZATION_METADATA_KEY
from gate.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    gate_pb2,
    gate_pb2_grpc,
    ledger_pb2,
    ledger_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
)

_T = TypeVar("_T")

_BAD_INPUT = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
_NOT_AUTHORIZED = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})


def exit_code_for(code: grpc.StatusCode | None) -> ExitCode:
    """Map a gRPC status to the CLI exit code.

    Anything not explicitly a caller mistake or an authorization problem counts as "server
    unavailable" (3): UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, INTERNAL, and also the codes
    a CI job cannot fix by changing its input (UNKNOWN, UNIMPLEMENTED, ABORTED, CANCELLED, DATA_LOSS).
    """
    if code in _BAD_INPUT:
        return ExitCode.BAD_INPUT
    if code in _NOT_AUTHORIZED:
        return ExitCode.NOT_AUTHORIZED
    return ExitCode.UNAVAILABLE


def error_from_rpc(error: grpc.RpcError, server: str) -> CliError:
    """Turn a failed RPC into a one-line CliError carrying the status details and the exit code."""
    # Errors raised by a channel are also grpc.Call objects; anything else has no status to report.
    if not isinstance(error, grpc.Call):
        return CliError(f"{error} (server {server})", ExitCode.UNAVAILABLE)
    code = error.code()
    details = " ".join((error.details() or "").split())  # one line, whatever the server sent
    name = code.name if code is not None else "UNKNOWN"
    if code == grpc.StatusCode.UNAVAILABLE:
        # Connection refused and "scanner down" both arrive as UNAVAILABLE; say where we tried.
        details = f"{details} (server {server})" if details else f"cannot reach gate server at {server}"
    return CliError(f"{name}: {details or 'no details'}", exit_code_for(code))


# How a server older than an RPC refuses it: no such method, or (with auth on) no role may call it.
_OLDER_SERVER = frozenset({grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.PERMISSION_DENIED})


class GateClient:
    """A connection to one gate server; every method raises CliError instead of grpc errors.

    `timeout` is the deadline in seconds for each unary call and for each listing stream; watching a
    scan takes its own (longer) deadline because scans legitimately run for minutes.
    """

    def __init__(
        self,
        server: str,
        timeout: float,
        actor: str = "",
        *,
        token: str = "",
        tls: TlsOptions | None = None,
    ) -> None:
        self.server = server
        self.timeout = timeout
        # Sent with every call. A server without authentication records the claimed actor; one with
        # authentication knows the caller from the token or certificate and ignores the claim.
        metadata: list[tuple[str, str]] = [(ACTOR_METADATA_KEY, actor)] if actor else []
        if token:
            metadata.append((AUTHORIZATION_METADATA_KEY, f"Bearer {token}"))
        self._metadata = tuple(metadata)
        self._channel = _channel(server, tls)
        # The generated stub module is untyped; the cast keeps that looseness inside this class.
        stub_factory = cast(Callable[[grpc.Channel], Any], gate_pb2_grpc.GateStub)
        self._stub = stub_factory(self._channel)
        self._audit = cast(Callable[[grpc.Channel], Any], audit_pb2_grpc.AuditStub)(self._channel)
        self._policies = cast(Callable[[grpc.Channel], Any], policy_pb2_grpc.PoliciesStub)(self._channel)
        self._ledger = cast(Callable[[grpc.Channel], Any], ledger_pb2_grpc.LedgerStub)(self._channel)

    def close(self) -> None:
        """Close the underlying channel."""
        self._channel.close()

    def __enter__(self) -> GateClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _unary(self, method: str, request: Any, response_type: type[_T], stub: Any = None) -> _T:
        # `stub` selects another gate.v1 service on the same channel (the Gate service by default).
        try:
            call = getattr(stub if stub is not None else self._stub, method)
            return cast(_T, call(request, timeout=self.timeout, metadata=self._metadata))
        except grpc.RpcError as e:
            raise error_from_rpc(e, self.server) from e

    def _stream(self, method: str, request: Any, item_type: type[_T], timeout: float | None) -> Iterator[_T]:
        # Stream errors surface while iterating, not at call time, so the whole loop is guarded.
        call = getattr(self._stub, method)(request, timeout=timeout, metadata=self._metadata)
        try:
            for item in call:
                yield cast(_T, item)
        except grpc.RpcError as e:
            raise error_from_rpc(e, self.server) from e
        finally:
            # A caller that stops early (job reached a terminal state) must not leave the RPC open;
            # cancelling a finished call is a no-op.
            call.cancel()

    def submit_scan(self, image: str, scanners: list[str], force: bool) -> gate_pb2.SubmitScanResponse:
        """Queue scans of an image; one job per scanner."""
        request = gate_pb2.SubmitScanRequest(image=image, scanners=scanners, force=force)
        return self._unary("SubmitScan", request, gate_pb2.SubmitScanResponse)

    def get_scan(self, job_id: str) -> gate_pb2.ScanJob:
        """Fetch one scan job by id."""
        return self._unary("GetScan", gate_pb2.GetScanRequest(id=job_id), gate_pb2.ScanJob)

    def watch_scan(self, job_id: str, timeout: float | None) -> Iterator[gate_pb2.ScanEvent]:
        """Stream a job's state changes until it is terminal (or `timeout` seconds pass)."""
        return self._stream("WatchScan", gate_pb2.WatchScanRequest(id=job_id), gate_pb2.ScanEvent, timeout)

    def check_promotion(
        self,
        image: str,
        from_stage: str,
        to_stage: str,
        breakglass_reason: str = "",
        *,
        scan_if_stale: bool = False,
    ) -> gate_pb2.Decision:
        """Ask whether an image may move from one stage to the next (with breakglass, if a reason).

        With `scan_if_stale` the server first scans a stale or unscanned image it can locate and waits
        for the scan within this call's deadline (--timeout).
        """
        request = gate_pb2.CheckPromotionRequest(
            image=image,
            from_stage=from_stage,
            to_stage=to_stage,
            breakglass_reason=breakglass_reason,
            scan_if_stale=scan_if_stale,
        )
        return self._unary("CheckPromotion", request, gate_pb2.Decision)

    # -- gate.v1.Ledger -----------------------------------------------------------------------------

    def promote(
        self, image: str, from_stage: str, to_stage: str, target: str, breakglass_reason: str
    ) -> ledger_pb2.PromoteResponse:
        """Judge and, when allowed, record a promotion; the reply carries the signed receipt."""
        request = ledger_pb2.PromoteRequest(
            image=image,
            from_stage=from_stage,
            to_stage=to_stage,
            target=target,
            breakglass_reason=breakglass_reason,
        )
        return self._unary("Promote", request, ledger_pb2.PromoteResponse, self._ledger)

    def list_promotions(self, stage: str, digest: str, limit: int) -> ledger_pb2.ListPromotionsResponse:
        """Recorded promotions, newest first."""
        request = ledger_pb2.ListPromotionsRequest(stage=stage, digest=digest, limit=limit)
        return self._unary("ListPromotions", request, ledger_pb2.ListPromotionsResponse, self._ledger)

    def get_public_key(self) -> ledger_pb2.PublicKey:
        """The key receipts are signed with."""
        return self._unary(
            "GetPublicKey", ledger_pb2.GetPublicKeyRequest(), ledger_pb2.PublicKey, self._ledger
        )

    def get_image_report(self, image: str) -> gate_pb2.ImageReport:
        """Fetch what the server knows about one image."""
        request = gate_pb2.GetImageReportRequest(image=image)
        return self._unary("GetImageReport", request, gate_pb2.ImageReport)

    def list_findings_page(self, request: gate_pb2.ListFindingsRequest) -> gate_pb2.ListFindingsResponse:
        """Fetch one page of findings; the caller follows next_page_token."""
        return self._unary("ListFindings", request, gate_pb2.ListFindingsResponse)

    def find_affected_images(self, vulnerability_id: str, stage: str) -> Iterator[gate_pb2.AffectedImage]:
        """Stream every stored image whose current findings include the vulnerability, row by row.

        Asks for pages (FindAffectedImagesPages: the same rows, far fewer messages). A server from
        before that RPC refuses it before any page — UNIMPLEMENTED, or PERMISSION_DENIED where its
        role table does not know the method — and is then asked with FindAffectedImages instead.
        """
        request = gate_pb2.FindAffectedImagesRequest(vulnerability_id=vulnerability_id, stage=stage)
        call = self._stub.FindAffectedImagesPages(request, timeout=self.timeout, metadata=self._metadata)
        started = False
        try:
            for page in call:
                started = True
                yield from cast(gate_pb2.AffectedImagesPage, page).images
            return
        except grpc.RpcError as e:
            older = isinstance(e, grpc.Call) and e.code() in _OLDER_SERVER
            if started or not older:
                raise error_from_rpc(e, self.server) from e
        finally:
            call.cancel()
        # A caller truly without the role is refused again here, with the old RPC's own answer.
        yield from self._stream("FindAffectedImages", request, gate_pb2.AffectedImage, self.timeout)

    def list_images(self, stage: str, on_base: str) -> Iterator[gate_pb2.ImageSummary]:
        """Stream the stored images in a stage (optionally only those built on a base)."""
        request = gate_pb2.ListImagesRequest(stage=stage, on_base=on_base)
        return self._stream("ListImages", request, gate_pb2.ImageSummary, self.timeout)

    def import_report(self, image: str, scanner: str, report: bytes) -> gate_pb2.ImportReportResponse:
        """Store a scanner report produced elsewhere."""
        request = gate_pb2.ImportReportRequest(image=image, scanner=scanner, report=report)
        return self._unary("ImportReport", request, gate_pb2.ImportReportResponse)

    def add_base(self, image: str, tier: str, name: str) -> gate_pb2.Base:
        """Register a base image with a tier."""
        request = gate_pb2.AddBaseRequest(image=image, tier=tier, name=name)
        return self._unary("AddBase", request, gate_pb2.Base)

    def list_bases(self) -> gate_pb2.ListBasesResponse:
        """Every catalogued base."""
        return self._unary("ListBases", gate_pb2.ListBasesRequest(), gate_pb2.ListBasesResponse)

    def deprecate_base(self, image: str, superseded_by: str, grace: str) -> gate_pb2.Base:
        """Deprecate a base in favour of a successor after a grace period."""
        request = gate_pb2.DeprecateBaseRequest(image=image, superseded_by=superseded_by, grace=grace)
        return self._unary("DeprecateBase", request, gate_pb2.Base)

    def revoke_base(self, image: str) -> gate_pb2.Base:
        """Revoke a base."""
        return self._unary("RevokeBase", gate_pb2.RevokeBaseRequest(image=image), gate_pb2.Base)

    def base_descendants(self, image: str) -> Iterator[gate_pb2.BaseDescendant]:
        """Stream every stored image built on a base."""
        request = gate_pb2.ListBaseDescendantsRequest(image=image)
        return self._stream("ListBaseDescendants", request, gate_pb2.BaseDescendant, self.timeout)

    def rebuild_list(self, stage: str) -> Iterator[gate_pb2.RebuildItem]:
        """Stream the images built on deprecated, revoked or superseded bases."""
        request = gate_pb2.RebuildListRequest(stage=stage)
        return self._stream("RebuildList", request, gate_pb2.RebuildItem, self.timeout)

    # -- gate.v1.Audit ------------------------------------------------------------------------------

    def list_audit(self, subject: str, kind: str, limit: int, page: int) -> audit_pb2.ListAuditResponse:
        """A page of audit records, newest first."""
        request = audit_pb2.ListAuditRequest(subject=subject, kind=kind, limit=limit, page=page)
        return self._unary("ListAudit", request, audit_pb2.ListAuditResponse, self._audit)

    def verify_audit(self, anchor: str) -> audit_pb2.VerifyAuditResponse:
        """Verify the audit chain (against an exported anchor hash, if given)."""
        request = audit_pb2.VerifyAuditRequest(anchor=anchor)
        return self._unary("VerifyAudit", request, audit_pb2.VerifyAuditResponse, self._audit)

    # -- gate.v1.Policies ---------------------------------------------------------------------------

    def show_policy(self) -> policy_pb2.PolicyView:
        """The server's active policy."""
        return self._unary(
            "ShowPolicy", policy_pb2.ShowPolicyRequest(), policy_pb2.PolicyView, self._policies
        )

    def validate_policy(self, text: str, source: str) -> policy_pb2.ValidatePolicyResponse:
        """Validate a policy document on the server."""
        request = policy_pb2.ValidatePolicyRequest(text=text, source=source)
        return self._unary("ValidatePolicy", request, policy_pb2.ValidatePolicyResponse, self._policies)

    def replay_policy(
        self, text: str, source: str, since: str, transition: str
    ) -> policy_pb2.ReplayPolicyResponse:
        """Replay a candidate policy over the server's stored decisions."""
        request = policy_pb2.ReplayPolicyRequest(text=text, source=source, since=since, transition=transition)
        return self._unary("ReplayPolicy", request, policy_pb2.ReplayPolicyResponse, self._policies)


@dataclass(frozen=True)
class TlsOptions:
    """How the CLI speaks TLS: the CA bundle that verifies the server, and its own cert + key for mTLS.

    Empty `ca` with a client certificate verifies the server against the system's roots.
    """

    ca: str = ""
    cert: str = ""
    key: str = ""

    @property
    def enabled(self) -> bool:
        """True when any TLS file is given (a plain-text channel otherwise)."""
        return bool(self.ca or self.cert or self.key)


def _read(path: str, option: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise CliError(f"{option}: cannot read {path}: {e.strerror}", ExitCode.BAD_INPUT) from e


def _channel(server: str, tls: TlsOptions | None) -> grpc.Channel:
    """A plain channel, or a TLS one when any TLS file is given."""
    if tls is None or not tls.enabled:
        return grpc.insecure_channel(server)
    if bool(tls.cert) != bool(tls.key):
        raise CliError("--tls-cert and --tls-key go together", ExitCode.BAD_INPUT)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(tls.ca, "--tls-ca") if tls.ca else None,
        private_key=_read(tls.key, "--tls-key") if tls.key else None,
        certificate_chain=_read(tls.cert, "--tls-cert") if tls.cert else None,
    )
    return grpc.secure_channel(server, credentials)


def positive_seconds(text: str) -> float:
    """Argparse type for a deadline: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
    return value


def client_options(default_server: str, settings: Settings | None = None) -> argparse.ArgumentParser:
    """Build the parent parser with the options every client command shares.

    --server, --timeout, --json, --actor, and the credentials: --token and the TLS files, whose
    defaults come from `settings` (GATE_TOKEN, GATE_TLS_CA, GATE_CLIENT_CERT, GATE_CLIENT_KEY).
    """
    settings = settings or Settings()
    parser = argparse.ArgumentParser(add_help=False)
    group = parser.add_argument_group("connection and output")
    group.add_argument(
        "--server",
        default=default_server,
        metavar="HOST:PORT",
        help=f"gate server address (env GATE_SERVER; default {default_server})",
    )
    group.add_argument(
        "--timeout",
        type=positive_seconds,
        default=30.0,
        metavar="SECONDS",
        help="deadline for each request (default 30)",
    )
    group.add_argument(
        "--json", action="store_true", help="print the response as one JSON document on stdout"
    )
    group.add_argument(
        "--actor",
        default=default_actor(),
        metavar="NAME",
        help="who you are, recorded in the audit log when the server has no authentication "
        "(default $USER@hostname; with authentication the token's or certificate's principal counts)",
    )
    auth = parser.add_argument_group("authentication and TLS")
    auth.add_argument(
        "--token",
        default=settings.token,
        metavar="TOKEN",
        help="API token sent as 'authorization: Bearer' (env GATE_TOKEN; prefer the env: argv is visible "
        "to other users of the machine)",
    )
    auth.add_argument(
        "--tls-ca",
        default=settings.tls_ca,
        metavar="FILE",
        help="connect with TLS, verifying the server against this CA bundle (env GATE_TLS_CA)",
    )
    auth.add_argument(
        "--tls-cert",
        default=settings.client_cert,
        metavar="FILE",
        help="client certificate for mTLS, PEM (env GATE_CLIENT_CERT; with --tls-key)",
    )
    auth.add_argument(
        "--tls-key",
        default=settings.client_key,
        metavar="FILE",
        help="the client certificate's private key, PEM (env GATE_CLIENT_KEY)",
    )
    return parser


def default_actor() -> str:
    """`user@hostname` of this process, the actor claimed when --actor is not given."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (e.g. an arbitrary container uid)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def connect(args: argparse.Namespace) -> GateClient:
    """Open a client from the parsed connection options (--server, --timeout, --actor, credentials)."""
    tls = TlsOptions(
        str(getattr(args, "tls_ca", "") or ""),
        str(getattr(args, "tls_cert", "") or ""),
        str(getattr(args, "tls_key", "") or ""),
    )
    return GateClient(
        str(args.server),
        float(args.timeout),
        str(getattr(args, "actor", "")),
        token=str(getattr(args, "token", "") or ""),
        tls=tls,
    )
