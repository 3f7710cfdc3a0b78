"""The gate.v1.Audit servicer: list audit records, verify the chain. Thin: protobuf ⇄ gate.audit.

The protobuf conversions of audit values live here (not in convert.py) because nothing else uses them.
"""

from __future__ import annotations

from typing import Any, cast

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from gate.audit import AuditLog, AuditRecord, VerifyResult
from gate.server.servicer import _guard
from gate.v1 import audit_pb2 as pb
from gate.v1 import audit_pb2_grpc as pb_grpc

__all__ = ["SERVICE_NAME", "AuditServicer", "record_to_pb", "register_audit", "verify_to_pb"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Audit"].full_name


def record_to_pb(r: AuditRecord) -> pb.AuditRecord:
    """One audit record as protobuf."""
    at = Timestamp()
    at.FromDatetime(r.at)
    return pb.AuditRecord(
        seq=r.seq,
        kind=r.kind,
        actor=r.actor,
        at=at,
        subject=r.subject,
        inputs_digest=r.inputs_digest,
        result=r.result,
        policy_digest=r.policy_digest,
        details=[pb.AuditDetail(key=k, value=v) for k, v in r.details],
        prev_hash=r.prev_hash,
        hash=r.hash,
    )


def verify_to_pb(v: VerifyResult) -> pb.VerifyAuditResponse:
    """A verification result as protobuf."""
    return pb.VerifyAuditResponse(
        ok=v.ok,
        checked=v.checked,
        first_bad_seq=v.first_bad_seq,
        reason=v.reason,
        head_count=v.head_count,
        head_hash=v.head_hash,
        anchor_seq=v.anchor_seq,
    )


class AuditServicer(pb_grpc.AuditServicer):
    """Implements gate.v1.Audit on top of AuditLog."""

    def __init__(self, log: AuditLog) -> None:
        self._log = log

    @_guard
    def ListAudit(self, request: pb.ListAuditRequest, context: grpc.ServicerContext) -> pb.ListAuditResponse:
        """A page of records, newest first."""
        records = self._log.list(request.subject, request.kind, request.page, request.limit)
        # A full page may be followed by more; an empty next page is cheap and ends the listing.
        full = bool(records) and len(records) == self._log.page_size(request.limit)
        return pb.ListAuditResponse(
            records=[record_to_pb(r) for r in records], next_page=request.page + 1 if full else 0
        )

    @_guard
    def VerifyAudit(
        self, request: pb.VerifyAuditRequest, context: grpc.ServicerContext
    ) -> pb.VerifyAuditResponse:
        """Walk the chain; tampering is reported in the answer."""
        return verify_to_pb(self._log.verify(request.anchor))


def register_audit(server: grpc.Server, log: AuditLog) -> None:
    """Add the Audit servicer to a server."""
    cast(Any, pb_grpc).add_AuditServicer_to_server(AuditServicer(log), server)
