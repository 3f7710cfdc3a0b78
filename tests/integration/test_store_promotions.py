"""The promotion ledger in SqlRepository, on SQLite and (marker `postgres`) PostgreSQL.

record_promotion saves decision + promotion together only while the evidence (the current findings)
still gives the findings digest the promotion names; promoted_digests is "which digests are in stage S".
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from gate.domain import Decision, Promotion, Stage, VerdictState
from gate.ledger import findings_digest
from gate.store.repository import SqlRepository
from tests.integration.test_store import DIGEST_A, DIGEST_B, finding, info, ref, result

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def repo(db_url: str) -> Iterator[SqlRepository]:
    store = SqlRepository.open(db_url)
    try:
        yield store
    finally:
        store.close()


def decision(digest: str, src: Stage = Stage.S2, dst: Stage = Stage.P) -> Decision:
    return Decision(
        allowed=True,
        digest=digest,
        from_stage=src,
        to_stage=dst,
        state=VerdictState.EVALUATED,
        policy_digest="f" * 64,
        evaluated_at=T0,
        summary="allowed",
    )


def promotion(
    repo: SqlRepository, digest: str, n: int, *, dst: Stage = Stage.P, at: datetime = T0
) -> Promotion:
    return Promotion(
        id=f"promo-{n}",
        digest=digest,
        from_stage=Stage(list(Stage)[dst.rank - 1]),
        to_stage=dst,
        target=f"127.0.0.1:5000/{dst.value}/payments:{n}",
        policy_digest="f" * 64,
        findings_digest=findings_digest({digest: repo.current_findings(digest)}),
        decision_id="",
        actor="alice@ci",
        promoted_at=at,
        expires_at=at + timedelta(days=7),
    )


def seed(repo: SqlRepository, digest: str) -> None:
    repo.upsert_image(info(digest), ref("s2/payments", "1"), T0)
    repo.record_import(digest, "trivy", "img", result(), [finding("CVE-2024-1")], T0)


def test_record_then_list_round_trip(repo: SqlRepository) -> None:
    seed(repo, DIGEST_A)
    wanted = replace(promotion(repo, DIGEST_A, 1), breakglass=True, breakglass_reason="INC-7 hotfix")
    stored = repo.record_promotion(wanted, decision(DIGEST_A), [DIGEST_A])
    assert stored is not None and stored.decision_id.isdigit()
    assert stored == replace(wanted, decision_id=stored.decision_id)
    assert repo.list_promotions() == [stored]
    assert repo.list_promotions(stage=Stage.S2) == []
    assert repo.list_promotions(digest=DIGEST_B) == []


def test_changed_evidence_records_nothing(repo: SqlRepository) -> None:
    seed(repo, DIGEST_A)
    wanted = promotion(repo, DIGEST_A, 1)
    # A scan lands between the evaluation and the write: the promotion's evidence is gone.
    repo.record_import(DIGEST_A, "trivy", "img", result(), [finding("CVE-2024-2")], T0 + timedelta(minutes=1))
    assert repo.record_promotion(wanted, decision(DIGEST_A), [DIGEST_A]) is None
    assert repo.list_promotions() == []
    with repo._read() as session:  # the allowing decision was not kept either
        assert session.exec(text("SELECT count(*) FROM decisions")).one()[0] == 0  # type: ignore[call-overload]


def test_findings_digest_is_order_independent_and_sensitive() -> None:
    a, b = finding("CVE-1"), finding("CVE-2", package="zlib")
    assert findings_digest({DIGEST_A: (a, b)}) == findings_digest({DIGEST_A: (b, a)})
    assert findings_digest({DIGEST_A: (a,)}) != findings_digest({DIGEST_A: (a, b)})
    assert findings_digest({DIGEST_A: ()}) != findings_digest({DIGEST_B: ()})
    assert findings_digest({DIGEST_A: (a,)}) != findings_digest(
        {DIGEST_A: (replace(a, fixed_version="1.1"),)}
    )


def test_promoted_digests_latest_per_digest(repo: SqlRepository) -> None:
    seed(repo, DIGEST_A)
    seed(repo, DIGEST_B)
    first = repo.record_promotion(promotion(repo, DIGEST_A, 1), decision(DIGEST_A), [DIGEST_A])
    later = repo.record_promotion(
        promotion(repo, DIGEST_A, 2, at=T0 + timedelta(hours=1)), decision(DIGEST_A), [DIGEST_A]
    )
    other = repo.record_promotion(promotion(repo, DIGEST_B, 3), decision(DIGEST_B), [DIGEST_B])
    into_s2 = repo.record_promotion(
        promotion(repo, DIGEST_B, 4, dst=Stage.S2), decision(DIGEST_B, Stage.S1, Stage.S2), [DIGEST_B]
    )
    assert None not in (first, later, other, into_s2)
    assert [p.id for p in repo.promoted_digests(Stage.P)] == ["promo-2", "promo-3"]
    assert [p.id for p in repo.promoted_digests(Stage.S2)] == ["promo-4"]
    assert repo.promoted_digests(Stage.T) == []
    listed = [p.id for p in repo.list_promotions(stage=Stage.P)]
    assert listed[0] == "promo-2" and sorted(listed[1:]) == ["promo-1", "promo-3"]  # newest first
