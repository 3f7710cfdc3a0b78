"""The gate.v1.Policies servicer: show, validate, replay. Thin: protobuf ⇄ gate.policy_tools.

The protobuf conversions of policy-tool values live here (not in convert.py) because nothing else uses
them. An invalid candidate in ValidatePolicy is an answer; in ReplayPolicy it is INVALID_ARGUMENT.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from gate.policy_tools import PolicyTools, ReplayReport
from gate.server.servicer import _guard
from gate.v1 import policy_pb2 as pb
from gate.v1 import policy_pb2_grpc as pb_grpc

__all__ = ["SERVICE_NAME", "PoliciesServicer", "register_policies", "replay_to_pb"]

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Policies"].full_name


def _ts(value: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


def replay_to_pb(r: ReplayReport) -> pb.ReplayPolicyResponse:
    """A replay report as protobuf."""
    return pb.ReplayPolicyResponse(
        candidate_digest=r.candidate_digest,
        active_digest=r.active_digest,
        since=_ts(r.since),
        total=r.total,
        transitions=[
            pb.ReplayTransitionCount(
                transition=c.transition,
                total=c.total,
                denied_before=c.denied_before,
                denied_after=c.denied_after,
                newly_denied=c.newly_denied,
                newly_allowed=c.newly_allowed,
            )
            for c in r.counts
        ],
        changes=[
            pb.ReplayChange(
                digest=c.decision.digest,
                transition=c.decision.transition,
                evaluated_at=_ts(c.decision.evaluated_at),
                was_allowed=c.decision.allowed,
                would_allow=c.would_allow,
                reasons=list(c.reasons),
                evidence_changed=c.evidence_changed,
                recorded_policy_digest=c.decision.policy_digest,
            )
            for c in r.changes
        ],
    )


class PoliciesServicer(pb_grpc.PoliciesServicer):
    """Implements gate.v1.Policies on top of PolicyTools."""

    def __init__(self, tools: PolicyTools) -> None:
        self._tools = tools

    @_guard
    def ShowPolicy(self, request: pb.ShowPolicyRequest, context: grpc.ServicerContext) -> pb.PolicyView:
        """The active policy."""
        view = self._tools.show()
        return pb.PolicyView(
            source=view.source,
            digest=view.digest,
            normalized_yaml=view.normalized_yaml,
            normalized_json=view.normalized_json,
            transitions=[
                pb.PolicyTransition(
                    transition=key, settings=[pb.PolicySetting(key=k, value=v) for k, v in settings]
                )
                for key, settings in view.transitions
            ],
        )

    @_guard
    def ValidatePolicy(
        self, request: pb.ValidatePolicyRequest, context: grpc.ServicerContext
    ) -> pb.ValidatePolicyResponse:
        """Valid, or the problems with line and field."""
        result = self._tools.validate(request.text, request.source)
        return pb.ValidatePolicyResponse(
            valid=result.valid,
            errors=[pb.PolicyProblem(line=p.line, field=p.field, message=p.message) for p in result.errors],
            digest=result.digest,
        )

    @_guard
    def ReplayPolicy(
        self, request: pb.ReplayPolicyRequest, context: grpc.ServicerContext
    ) -> pb.ReplayPolicyResponse:
        """What the candidate would have changed."""
        report = self._tools.replay(request.text, request.source, request.since, request.transition)
        return replay_to_pb(report)


def register_policies(server: grpc.Server, tools: PolicyTools) -> None:
    """Add the Policies servicer to a server."""
    cast(Any, pb_grpc).add_PoliciesServicer_to_server(PoliciesServicer(tools), server)
