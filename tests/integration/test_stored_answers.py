"""Stored FindAffectedImagesPages answers (gate/server/affected_answers.py), on both backends.

A process that has not read an answer itself (just started, another worker, another replica) starts
from the answer stored in the database and patches the images changed since its mark. Each test uses a
new AffectedAnswers for the reads it checks, so nothing comes from memory: after every kind of write,
the answer built from the stored one must equal, row for row and in order, the answer computed from
scratch — and must have been built from the stored one, so the test proves that path is exact. A
stored answer that is stale, of another format or damaged is never used for rows; the read is whole
and stores a good one.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from gate import metrics
from gate.domain import BaseImage, Severity
from gate.ports import StoredAnswer
from gate.provenance import chain_id
from gate.server import affected_answers
from gate.server.affected_answers import FORMAT, AffectedAnswers
from gate.service import GateService
from gate.store.repository import SqlRepository
from tests.integration.test_affected_answers import RESULT, _info, fresh, kept, rescan
from tests.integration.test_affected_images import (
    AMD,
    IMAGES,
    INDEX_1,
    OS_LAYERS,
    T0,
    diff_ids,
    digest,
    finding,
    findings_of,
    index_ref,
    ref,
    service,
)
from tests.integration.test_affected_images import (
    repo as repo,
)

QUERIES = (("CVE-1", ""), ("CVE-1", "p"), ("CVE-1", "d"), ("CVE-2", ""))


@pytest.fixture
def gate(repo: SqlRepository) -> GateService:
    return service(repo)


def stored_rows(repo: SqlRepository, vid: str) -> int | None:
    answer = repo.stored_answer(vid)
    return None if answer is None else answer.row_count


def store_all(gate: GateService) -> AffectedAnswers:
    """A process that reads every answer whole and stores it (every answer counts as large here)."""
    answers = AffectedAnswers(gate, store_min_rows=1)
    for vid, _ in QUERIES:
        kept(answers, vid, "")
    assert answers.flush(10)
    return answers


def check_from_store(
    gate: GateService, *, whole: tuple[str, ...] = (), max_changed: int = affected_answers.MAX_CHANGED
) -> None:
    """Each query, in a new process, equals the fresh answer and was built from the stored one.

    For the ids in `whole` the stored answer is stale: the first query of each reads whole and stores
    a good answer, which the next queries of that id (other stages) start from. `max_changed` is the
    processes' bound on the images a patch may re-read.
    """
    stale = set(whole)
    for vid, stage in QUERIES:
        answers = AffectedAnswers(gate, store_min_rows=1, max_changed=max_changed)
        assert kept(answers, vid, stage) == fresh(gate, vid, stage), (vid, stage)
        if vid in stale:
            stale.discard(vid)
            assert (answers.full_reads, answers.from_store) == (1, 0), (vid, stage)
        else:
            assert (answers.full_reads, answers.from_store) == (0, 1), (vid, stage)
        assert answers.flush(10)


def test_a_new_process_starts_from_the_stored_answer_after_every_kind_of_change(
    repo: SqlRepository, gate: GateService
) -> None:
    assert stored_rows(repo, "CVE-1") is None
    store_all(gate)
    assert stored_rows(repo, "cve-1 ") == len(fresh(gate, "CVE-1", "")) > 0  # keyed like a search
    before = metrics.REGISTRY.get_sample_value("gate_affected_answers_total", {"read": "stored"}) or 0.0
    check_from_store(gate)
    after = metrics.REGISTRY.get_sample_value("gate_affected_answers_total", {"read": "stored"}) or 0.0
    assert after - before == len(QUERIES)

    # The same writes as the kept answers' test: each new process patches the stored answer.
    rescan(repo, 3, [finding("CVE-1", "openssl", Severity.CRITICAL, diff_ids(3)[0])], 2)
    check_from_store(gate)
    rescan(repo, 1, [finding("CVE-2", "noise", Severity.HIGH, diff_ids(1)[0])], 3)
    rescan(repo, 2, [replace(f, severity=Severity.LOW) for f in findings_of(2, "trivy")], 3)
    check_from_store(gate)
    repo.upsert_image(_info(4), replace(ref(4), tag="hotfix"), T0)
    check_from_store(gate)
    repo.upsert_image(_info(5), replace(ref(5), repository="p/app-5"), T0)  # d -> p
    check_from_store(gate)
    repo.record_import(
        AMD.digest, "trivy", AMD.digest, RESULT, [finding("CVE-1", "libc", Severity.HIGH, "")], T0
    )
    repo.upsert_image(INDEX_1, index_ref("p/multi", "v1"), T0)
    check_from_store(gate)
    assert any(r.indexes for r in fresh(gate, "CVE-1", ""))
    repo.upsert_image(_info(11), replace(ref(11), tag="other"), T0)
    check_from_store(gate)

    # The catalog changes: the rows of the images built on the new base now name it, and the feed
    # names exactly those images (migration 0013), so each new process still patches the stored answer.
    unattributed = fresh(gate, "CVE-1", "")
    repo.add_base(base("osbase 2", "0e"))
    assert {r.introduced_by for r in fresh(gate, "CVE-1", "")} - {r.introduced_by for r in unattributed} == {
        "prod-osbase osbase 2"
    }
    check_from_store(gate)

    # A base under more images than a process patches: the stored answers are stale, so the reads are
    # whole and store good ones, which the next processes patch again.
    under = len({r.digest for r in fresh(gate, "CVE-1", "")})
    repo.add_base(base("osbase 3", "0f"))
    stale = repo.stored_answer("CVE-1")
    check_from_store(gate, whole=("CVE-1", "CVE-2"), max_changed=under - 1)
    restored = repo.stored_answer("CVE-1")
    assert restored is not None and stale is not None and restored.mark != stale.mark
    check_from_store(gate)


def base(name: str, byte: str) -> BaseImage:
    """A prod-osbase of the first OS layer: every test image is built on it."""
    return BaseImage(
        name=name,
        tier="prod-osbase",
        digest="sha256:" + byte * 32,
        diff_ids=OS_LAYERS[:1],
        chain_id=chain_id(OS_LAYERS[:1]),
        registered_at=T0,
    )


def test_small_answers_are_not_stored_and_storing_can_be_off(repo: SqlRepository, gate: GateService) -> None:
    rows = len(fresh(gate, "CVE-1", ""))
    answers = AffectedAnswers(gate, store_min_rows=rows + 1)
    kept(answers, "CVE-1", "")
    assert answers.flush(10) and stored_rows(repo, "CVE-1") is None
    off = AffectedAnswers(gate, store_min_rows=0)
    kept(off, "CVE-1", "")
    assert off.flush(10) and stored_rows(repo, "CVE-1") is None and off.warm() == 0
    answers = AffectedAnswers(gate, store_min_rows=rows)
    kept(answers, "CVE-1", "")
    assert answers.flush(10) and stored_rows(repo, "CVE-1") == rows


def test_a_stage_query_stores_the_answer_over_every_stage(repo: SqlRepository, gate: GateService) -> None:
    answers = AffectedAnswers(gate, store_min_rows=1)
    assert kept(answers, "CVE-1", "p") == fresh(gate, "CVE-1", "p")
    assert answers.flush(10)
    assert stored_rows(repo, "CVE-1") == len(fresh(gate, "CVE-1", ""))
    check_from_store(gate, whole=("CVE-2",))  # never asked: nothing stored


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: replace(s, format="gaa0 an older gate"),
        lambda s: replace(s, body=s.body[:-3]),
        lambda s: replace(s, body=s.body[:10]),
        lambda s: replace(s, row_count=s.row_count + 1),
        lambda s: replace(s, body=s.body[:16] + b"\xff\xfe" + s.body[18:]),
    ],
    ids=["other-format", "truncated-rows", "truncated-header", "count", "text"],
)
def test_a_damaged_or_foreign_stored_answer_is_never_used(
    repo: SqlRepository, gate: GateService, damage: Any
) -> None:
    store_all(gate)
    good = repo.stored_answer("CVE-1")
    assert good is not None
    repo.store_answer("CVE-1", damage(good))
    answers = AffectedAnswers(gate, store_min_rows=1)
    assert kept(answers, "CVE-1", "") == fresh(gate, "CVE-1", "")
    assert (answers.full_reads, answers.from_store) == (1, 0)
    assert answers.flush(10)
    replaced = repo.stored_answer("CVE-1")
    assert replaced is not None and (replaced.format, replaced.row_count) == (FORMAT, good.row_count)
    check_from_store(gate)


def test_an_answer_is_stored_again_once_enough_images_changed(
    repo: SqlRepository, gate: GateService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(affected_answers, "_drift_limit", lambda answer, max_changed: 2)
    store_all(gate)
    first = repo.stored_answer("CVE-1")
    answers = AffectedAnswers(gate, store_min_rows=1)
    kept(answers, "CVE-1", "")  # from the stored answer, nothing changed: not stored again
    rescan(repo, 0, findings_of(0, "trivy"), 5)  # one image changed: under the limit
    kept(answers, "CVE-1", "")
    assert answers.flush(10) and answers.stored == 0
    assert repo.stored_answer("CVE-1") == first
    rescan(repo, 2, findings_of(2, "trivy"), 5)  # two images since the stored one: stored again
    kept(answers, "CVE-1", "")
    assert answers.flush(10) and answers.stored == 1
    second = repo.stored_answer("CVE-1")
    assert second is not None and first is not None and second.mark != first.mark
    # The drift counts from the answer stored last.
    rescan(repo, 4, findings_of(4, "trivy"), 6)
    kept(answers, "CVE-1", "")
    assert answers.flush(10) and answers.stored == 1
    check_from_store(gate)


def test_warm_stores_the_common_answers_before_anyone_asks(
    repo: SqlRepository, gate: GateService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(affected_answers, "_drift_limit", lambda answer, max_changed: 2)
    cve1 = len(fresh(gate, "CVE-1", ""))
    cve2 = len(fresh(gate, "CVE-2", ""))
    assert cve1 > cve2 > 0
    # Only ids with at least that many current findings count as common.
    assert gate.popular_vulnerabilities(cve1)[0] == "CVE-1"
    assert "CVE-2" not in gate.popular_vulnerabilities(cve1 + 5)
    warming = AffectedAnswers(gate, max_rows=0, store_min_rows=cve2)
    written = warming.warm()
    assert written == len(gate.popular_vulnerabilities(cve2)) >= 2
    assert stored_rows(repo, "CVE-1") == cve1 and stored_rows(repo, "CVE-2") == cve2
    check_from_store(gate)
    assert warming.warm() == 0  # nothing drifted: nothing written
    rescan(repo, 0, findings_of(0, "trivy"), 5)
    rescan(repo, 2, findings_of(2, "trivy"), 5)
    assert warming.warm() >= 1  # CVE-1's images drifted past the limit: stored again
    check_from_store(gate)


def test_stored_answers_survive_in_the_database_across_repositories(db_url: str) -> None:
    # Two repositories on one database stand for two processes: what one stores, the other reads.
    body = b"not rows at all"
    first = SqlRepository.open(db_url)
    try:
        first.store_answer("cve-9", StoredAnswer("x", "1", 0, body))
        first.store_answer("CVE-9", StoredAnswer("y", "2", 0, body + b"!"))  # one key: replaced
    finally:
        first.close()
    second = SqlRepository.open(db_url)
    try:
        assert second.stored_answer(" Cve-9") == StoredAnswer("y", "2", 0, body + b"!")
        assert second.stored_answer("CVE-10") is None
        with pytest.raises(ValueError, match="vulnerability id"):
            second.store_answer("  ", StoredAnswer("x", "1", 0, body))
    finally:
        second.close()


def gains(repo: SqlRepository, i: int, vid: str, days: int) -> None:
    """Image i is rescanned and now also has `vid` (its other findings unchanged)."""
    rescan(repo, i, [*findings_of(i, "trivy"), finding(vid, "new-pkg", Severity.HIGH, diff_ids(i)[0])], days)


def test_an_id_that_becomes_common_is_stored_by_the_next_watch(
    repo: SqlRepository, gate: GateService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(affected_answers, "_drift_limit", lambda answer, max_changed: 2)
    watching = AffectedAnswers(gate, max_rows=0, store_min_rows=3)
    assert watching.watch() == 0  # before the first warm pass has counted every id: nothing to go by
    assert watching.exact_counts == 0
    assert watching.warm() >= 2  # CVE-1 and CVE-2 are common already
    assert stored_rows(repo, "CVE-9") is None
    gains(repo, 0, "CVE-9", 2)
    assert watching.watch() == 0 and stored_rows(repo, "CVE-9") is None
    gains(repo, 1, "CVE-9", 2)
    assert watching.watch() == 0 and stored_rows(repo, "CVE-9") is None
    assert watching.exact_counts == 0  # its bound (2) is below the threshold: not even counted
    gains(repo, 2, "CVE-9", 2)
    assert watching.watch() == 1  # the third image: common now, stored at once
    assert watching.exact_counts == 1
    assert stored_rows(repo, "CVE-9") == len(fresh(gate, "CVE-9", "")) == 3
    # A new process answers it from the stored answer, also after it spread further.
    gains(repo, 3, "CVE-9", 2)
    answers = AffectedAnswers(gate, store_min_rows=1)
    assert kept(answers, "CVE-9", "") == fresh(gate, "CVE-9", "")
    assert (answers.full_reads, answers.from_store) == (0, 1)
    assert watching.watch() == 0  # grew by one row: under the drift that stores it again
    first = repo.stored_answer("CVE-9")
    gains(repo, 4, "CVE-9", 2)
    assert watching.watch() == 1  # two rows since it was stored: stored again, as it spreads
    assert stored_rows(repo, "CVE-9") == len(fresh(gate, "CVE-9", "")) == 5
    again = repo.stored_answer("CVE-9")
    assert again is not None and first is not None and again.mark != first.mark
    assert watching.exact_counts == 1  # common already: never counted again
    # Once every id is counted again, it is one of the common ids the warm pass keeps.
    monkeypatch.setattr(affected_answers, "POPULAR_EVERY", 0.0)
    watching.warm()
    gains(repo, 5, "CVE-9", 2)
    gains(repo, 6, "CVE-9", 2)
    assert watching.watch() == 0 and stored_rows(repo, "CVE-9") == 5


def test_a_watch_bound_that_grew_by_rescans_alone_is_lowered_to_the_exact_count(
    repo: SqlRepository, gate: GateService
) -> None:
    watching = AffectedAnswers(gate, max_rows=0, store_min_rows=3)
    watching.warm()
    # One image with CVE-8, rescanned again and again: each rescan adds its row to the bound.
    for days in (2, 3):
        gains(repo, 0, "CVE-8", days)
        assert watching.watch() == 0
    assert watching.exact_counts == 0  # bound 2
    gains(repo, 0, "CVE-8", 4)
    assert watching.watch() == 0 and watching.exact_counts == 1  # bound 3: counted, 1
    gains(repo, 0, "CVE-8", 5)
    assert watching.watch() == 0 and watching.exact_counts == 1  # lowered to 1, now 2: not counted
    assert stored_rows(repo, "CVE-8") is None
    gains(repo, 1, "CVE-8", 5)
    gains(repo, 2, "CVE-8", 5)
    assert watching.watch() == 1 and watching.exact_counts == 2  # three images: common
    assert stored_rows(repo, "CVE-8") == 3


def test_a_watch_after_too_many_changed_images_counts_every_id_again(
    repo: SqlRepository, gate: GateService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(affected_answers, "MAX_WATCHED", 2)
    watching = AffectedAnswers(gate, max_rows=0, store_min_rows=3)
    watching.warm()
    for i in (0, 1, 2):
        gains(repo, i, "CVE-7", 2)  # three images changed: more than the watch narrows down
    assert watching.watch() == 1 and watching.exact_counts == 0  # counted with every id instead
    assert stored_rows(repo, "CVE-7") == 3
    gains(repo, 3, "CVE-6", 2)  # and the next watch narrows down again from that count
    assert watching.watch() == 0 and watching.exact_counts == 0


def test_tick_warms_first_then_watches_until_the_next_pass_is_due(
    repo: SqlRepository, gate: GateService
) -> None:
    watching = AffectedAnswers(gate, max_rows=0, store_min_rows=3)
    assert watching.tick(warm_every=3600) >= 2  # the first tick is a warm pass
    for i in (0, 1, 2):
        gains(repo, i, "CVE-9", 2)
    assert watching.tick(warm_every=3600) == 1 and watching.exact_counts == 1  # a watch
    rescan(repo, 0, findings_of(0, "trivy"), 3)
    assert watching.tick(warm_every=0) == 0 and watching.exact_counts == 1  # a pass: nothing drifted enough


def test_counts_over_changed_images_are_keyed_like_the_count_of_every_id(repo: SqlRepository) -> None:
    # The watch adds counts over changed images (findings' ids and aliases, keyed in Python) to counts
    # over every image (finding_ids, keyed at ingest): the two must name and count alike.
    odd = finding(" cve-5 ", "odd", Severity.LOW, diff_ids(0)[0], aliases=("ghsa-zz", "CVE-5", " "))
    rescan(repo, 0, [*findings_of(0, "trivy"), odd], 2)
    before = repo.finding_counts(None, 0)
    assert before.counts is not None and before.counts["CVE-5"] == before.counts["GHSA-ZZ"] == 1
    unchanged = repo.finding_counts(before.mark, 100)
    assert unchanged.counts == {} and unchanged.mark == before.mark
    # Every image rescanned with what it had: the changed images' counts are every id's counts.
    for i in range(IMAGES):
        rescan(repo, i, [f for f in repo.current_findings(digest(i)) if f.scanner == "trivy"], 3)
    rescanned = repo.finding_counts(before.mark, 100)
    assert rescanned.counts == before.counts and rescanned.mark != before.mark
    assert repo.finding_counts(before.mark, IMAGES - 1).counts is None  # more images than the limit
    assert repo.current_finding_count("cve-1", 1000) == before.counts["CVE-1"]
    assert repo.current_finding_count("CVE-1", 3) == 3
    assert repo.current_finding_count("CVE-404", 3) == 0
