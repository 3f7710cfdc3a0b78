"""The gate.v1.Exceptions servicer: thin — protobuf in, ExceptionService call, protobuf out.

The actor (gate/server/actor.py) is the authenticated principal, or with authentication off the
caller's `gate-actor` claim; it is the requester an approver must differ from, and what the audit log
records.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from gate.domain import VulnException
from gate.server.actor import actor_of
from gate.server.servicer import _guard
from gate.v1 import exceptions_pb2 as pb
from gate.v1 import exceptions_pb2_grpc as pb_grpc
from gate.vuln_exceptions import ExceptionService, ExceptionStatus

__all__ = ["SERVICE_NAME", "ExceptionsServicer", "exception_to_pb", "register"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Exceptions"].full_name


def _ts(value: datetime | None) -> Timestamp | None:
    if value is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(value.astimezone(UTC))
    return ts


def exception_to_pb(exc: VulnException, status: ExceptionStatus | None = None) -> pb.VulnException:
    """An exception, with its listed state and matches when `status` is given."""
    return pb.VulnException(
        id=exc.id,
        vulnerability_id=exc.vulnerability_id,
        scope=str(exc.scope),
        expires_at=_ts(exc.expires_at),
        owner=exc.owner,
        ticket=exc.ticket,
        reason=exc.reason,
        approver=exc.approver,
        requested_by=exc.requested_by,
        created_at=_ts(exc.created_at),
        revoked_at=_ts(exc.revoked_at),
        revoked_by=exc.revoked_by,
        justification=exc.justification,
        state=status.state if status else ("revoked" if exc.revoked_at else "active"),
        matching_digests=list(status.matching_digests) if status else [],
        unused=status.unused if status else False,
    )


class ExceptionsServicer(pb_grpc.ExceptionsServicer):
    """Implements gate.v1.Exceptions on top of ExceptionService."""

    def __init__(self, service: ExceptionService) -> None:
        self._service = service

    @_guard
    def AddException(
        self, request: pb.AddExceptionRequest, context: grpc.ServicerContext
    ) -> pb.VulnException:
        """Create an exception."""
        exc = self._service.add(
            request.vulnerability_id,
            request.scope,
            request.expires,
            owner=request.owner,
            ticket=request.ticket,
            reason=request.reason,
            approver=request.approver,
            actor=actor_of(context),
            justification=request.justification,
        )
        return exception_to_pb(exc)

    @_guard
    def ListExceptions(
        self, request: pb.ListExceptionsRequest, context: grpc.ServicerContext
    ) -> pb.ListExceptionsResponse:
        """Exceptions with state and matches, filtered."""
        found = self._service.list(
            expired=request.expired, unused=request.unused, include_revoked=request.include_revoked
        )
        return pb.ListExceptionsResponse(exceptions=[exception_to_pb(s.exception, s) for s in found])

    @_guard
    def RevokeException(
        self, request: pb.RevokeExceptionRequest, context: grpc.ServicerContext
    ) -> pb.VulnException:
        """Revoke one exception."""
        return exception_to_pb(self._service.revoke(request.id, actor_of(context)))

    @_guard
    def ImportVex(self, request: pb.ImportVexRequest, context: grpc.ServicerContext) -> pb.ImportVexResponse:
        """OpenVEX not_affected statements → digest-scoped exceptions."""
        result = self._service.import_vex(
            request.document,
            request.expires,
            owner=request.owner,
            ticket=request.ticket,
            approver=request.approver,
            actor=actor_of(context),
        )
        return pb.ImportVexResponse(
            added=[exception_to_pb(e) for e in result.added], ignored=list(result.ignored)
        )

    @_guard
    def ExportVex(self, request: pb.ExportVexRequest, context: grpc.ServicerContext) -> pb.ExportVexResponse:
        """The active exceptions as OpenVEX."""
        document, skipped = self._service.export_vex(request.author or actor_of(context))
        return pb.ExportVexResponse(document=document, skipped=list(skipped))


def register(server: grpc.Server, service: ExceptionService) -> None:
    """Attach the servicer to a server."""
    cast(Any, pb_grpc).add_ExceptionsServicer_to_server(ExceptionsServicer(service), server)
