"""The gate.v1.Ledger servicer: thin — protobuf in, PromotionLedger call, protobuf out.

The actor (gate/server/actor.py) is the authenticated principal, or with authentication off the
caller's `gate-actor` claim; breakglass permission is decided on it (the breakglass role, or
GATE_BREAKGLASS_ACTORS without authentication) and the ledger records it.
"""

from __future__ import annotations

from typing import Any, cast

import grpc

from gate.promotion import PromotionLedger
from gate.receipts import ALGORITHM
from gate.server import convert
from gate.server.actor import actor_of
from gate.server.servicer import _guard
from gate.v1 import ledger_pb2 as pb
from gate.v1 import ledger_pb2_grpc as pb_grpc

__all__ = ["SERVICE_NAME", "LedgerServicer", "register"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Ledger"].full_name


class LedgerServicer(pb_grpc.LedgerServicer):
    """Implements gate.v1.Ledger on top of PromotionLedger."""

    def __init__(self, ledger: PromotionLedger) -> None:
        self._ledger = ledger

    @_guard
    def Promote(self, request: pb.PromoteRequest, context: grpc.ServicerContext) -> pb.PromoteResponse:
        """Judge; when allowed, record and sign. A deny is an OK reply with promoted=false."""
        result = self._ledger.promote(
            request.image,
            request.from_stage,
            request.to_stage,
            target=request.target,
            actor=actor_of(context),
            breakglass_reason=request.breakglass_reason,
        )
        reply = pb.PromoteResponse(decision=convert.decision_to_pb(result.decision))
        if result.promotion is not None and result.receipt is not None:
            reply.promoted = True
            reply.promotion.CopyFrom(convert.promotion_to_pb(result.promotion))
            reply.receipt = result.receipt.to_json()
        return reply

    @_guard
    def ListPromotions(
        self, request: pb.ListPromotionsRequest, context: grpc.ServicerContext
    ) -> pb.ListPromotionsResponse:
        """Recorded promotions, newest first."""
        found = self._ledger.list_promotions(request.stage, request.digest, request.limit)
        return pb.ListPromotionsResponse(promotions=[convert.promotion_to_pb(p) for p in found])

    @_guard
    def GetPublicKey(self, request: pb.GetPublicKeyRequest, context: grpc.ServicerContext) -> pb.PublicKey:
        """The key receipts are signed with."""
        signer = self._ledger.signer
        return pb.PublicKey(key_id=signer.key_id, algorithm=ALGORITHM, pem=signer.public_pem)


def register(server: grpc.Server, ledger: PromotionLedger) -> None:
    """Attach the servicer to a server."""
    cast(Any, pb_grpc).add_LedgerServicer_to_server(LedgerServicer(ledger), server)
