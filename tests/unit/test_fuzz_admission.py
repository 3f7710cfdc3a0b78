"""Fuzzing the pure admission review with mutated AdmissionReview bodies.

Whatever the body, evaluate() answers (never raises) with a response that has a boolean `allowed`, and
asks for no scans on a body it could not read: the API server shows whatever gate answers, so a crash
here would only become an opaque webhook failure.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from gate.domain import Stage
from gate.webhook.review import ResolveError, RuntimeStatus, evaluate
from gate.webhook.stages import ReviewSettings, parse_stage_map
from tests.support.admission import KINDS, pod_spec, review_body
from tests.unit.fuzzing import FUZZ, json_values, mutated

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
STAGES = parse_stage_map("dev=d,prod=p,stage=s2")
DIGEST = "sha256:" + "a" * 64


class Lookup:
    """Knows one promoted digest; every tag resolution fails."""

    def resolve_tag(self, reference: str) -> str:
        raise ResolveError("not in this test")

    def known(self, digest: str) -> bool:
        return digest == DIGEST

    def promoted_into(self, digest: str) -> frozenset[Stage]:
        return frozenset({Stage.S2, Stage.P}) if digest == DIGEST else frozenset()

    def runtime(self, digest: str) -> RuntimeStatus:
        return RuntimeStatus()


def _bodies() -> st.SearchStrategy[Any]:
    spec = pod_spec([f"reg.example.com/p/app@{DIGEST}", "busybox:1"], init=["reg.example.com/d/x:1"])
    valid = [review_body(kind, ns, spec) for kind in KINDS for ns in ("dev", "prod", "stage")]
    return json_values | st.sampled_from(valid).flatmap(lambda body: mutated(body, rounds=4))


@FUZZ
@given(_bodies())
def test_review_never_raises(body: Any) -> None:
    outcome = evaluate(body, Lookup(), STAGES, NOW, ReviewSettings())
    response = outcome.response.get("response")
    assert isinstance(response, dict)
    assert isinstance(response.get("allowed"), bool)
    assert outcome.allowed is response["allowed"]
    if not isinstance(body, dict) or not isinstance(body.get("request"), dict):
        assert outcome.scans == ()
