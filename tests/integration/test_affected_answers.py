"""Ready FindAffectedImagesPages answers (gate/server/affected_answers.py) stay exact, on both backends.

A kept answer is patched, call by call, with the rows of the images the change feed says changed since
it was read. After each kind of write that can change an answer — a rescan that adds, removes or
re-rates the vulnerability, a new tag, a move to another stage, an index listing a platform image, a
base added to the catalog, an unrelated image — the pages from the kept answer must equal, row for row
and in order, the pages computed from scratch by the service; and the call must have been a patch, so
the test proves the cheap path is the one that was exact.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from gate import metrics
from gate.domain import BaseImage, ImageInfo, Severity
from gate.provenance import chain_id
from gate.server import affected_answers, convert
from gate.server.affected_answers import AffectedAnswers
from gate.service import GateService
from gate.store import repository as repository_module
from gate.store.repository import SqlRepository
from gate.v1 import gate_pb2 as pb
from scanners.interface import ScanResult
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

RESULT = ScanResult(scanner="trivy", scanner_version="test", findings=())


@pytest.fixture
def gate(repo: SqlRepository) -> GateService:
    return service(repo)


def fresh(gate: GateService, vid: str, stage: str) -> list[pb.AffectedImage]:
    """The answer computed from scratch, as rows of the reply."""
    return [convert.affected_to_pb(r) for r in gate.affected_images(vid, stage)]


def kept(answers: AffectedAnswers, vid: str, stage: str, page_size: int = 3) -> list[pb.AffectedImage]:
    pages = list(answers.pages(vid, stage, page_size))
    assert all(0 < len(p.images) <= page_size for p in pages)
    return [row for page in pages for row in page.images]


def rescan(repo: SqlRepository, i: int, findings: list[Any], days: int) -> None:
    repo.record_import(digest(i), "trivy", digest(i), RESULT, findings, T0 + timedelta(days))


def check(answers: AffectedAnswers, gate: GateService, *, patched: bool = True, first: bool = False) -> None:
    """Every kept answer the tests hold equals the fresh one, and was answered by a patch (or not).

    `first`: the first calls, where the stage's answer starts from the every-stage one just read.
    """
    for vid, stage in (("CVE-1", ""), ("CVE-1", "p"), ("CVE-2", "")):
        before = (answers.patches, answers.full_reads)
        assert kept(answers, vid, stage) == fresh(gate, vid, stage), (vid, stage)
        if patched or (first and stage):
            assert (answers.patches, answers.full_reads) == (before[0] + 1, before[1]), (vid, stage)
        else:
            assert answers.full_reads == before[1] + 1, (vid, stage)


def counted(read: str) -> float:
    return metrics.REGISTRY.get_sample_value("gate_affected_answers_total", {"read": read}) or 0.0


def test_kept_answers_follow_every_kind_of_change(repo: SqlRepository, gate: GateService) -> None:
    answers = AffectedAnswers(gate)
    before = counted("patched"), counted("whole")
    check(answers, gate, patched=False, first=True)  # first calls read whole answers
    check(answers, gate)  # nothing changed: patched with nothing, the same answer

    # Image 3 had been rescanned without CVE-1: a rescan brings it back, now critical.
    rescan(repo, 3, [finding("CVE-1", "openssl", Severity.CRITICAL, diff_ids(3)[0])], 2)
    check(answers, gate)
    # Image 1 loses CVE-1 (and keeps CVE-2); image 2 is re-rated, so its group moves in the order.
    rescan(repo, 1, [finding("CVE-2", "noise", Severity.HIGH, diff_ids(1)[0])], 3)
    rescan(repo, 2, [replace(f, severity=Severity.LOW) for f in findings_of(2, "trivy")], 3)
    check(answers, gate)
    # A new tag on image 4 (in the answer): its rows carry the tag.
    repo.upsert_image(_info(4), replace(ref(4), tag="hotfix"), T0)
    check(answers, gate)
    # Image 5 moves from stage d to p: it joins the stage-p answer.
    repo.upsert_image(_info(5), replace(ref(5), repository="p/app-5"), T0)
    check(answers, gate)
    # An index now lists a platform image with CVE-1: the child's rows name the index.
    repo.record_import(
        AMD.digest, "trivy", AMD.digest, RESULT, [finding("CVE-1", "libc", Severity.HIGH, "")], T0
    )
    check(answers, gate)
    repo.upsert_image(INDEX_1, index_ref("p/multi", "v1"), T0)
    check(answers, gate)
    assert any(r.indexes for r in fresh(gate, "CVE-1", "")), "the index must be in the answer"
    # A tag added to the index names its platform images: their rows change through the index.
    repo.upsert_image(INDEX_1, index_ref("p/multi", "v2"), T0)
    check(answers, gate)
    # An image that does not have the vulnerability changes: the answer does not.
    repo.upsert_image(_info(11), replace(ref(11), tag="other"), T0)
    check(answers, gate)
    # The catalog changes: the rows of the images built on the new base now name it, and the feed
    # names exactly those images (migration 0013), so this too is a patch.
    unattributed = fresh(gate, "CVE-1", "")
    layers = (*OS_LAYERS,)
    repo.add_base(
        BaseImage(
            name="osbase 2",
            tier="prod-osbase",
            digest="sha256:" + "0e" * 32,
            diff_ids=layers[:1],
            chain_id=chain_id(layers[:1]),
            registered_at=T0,
        )
    )
    attributed = fresh(gate, "CVE-1", "")
    assert [r.introduced_by for r in attributed] != [r.introduced_by for r in unattributed]
    assert {r.introduced_by for r in attributed} - {r.introduced_by for r in unattributed} == {
        "prod-osbase osbase 2"
    }
    check(answers, gate)
    # /metrics counts every call by how it was read.
    counts = counted("patched") - before[0], counted("whole") - before[1]
    assert counts == (answers.patches, answers.full_reads)


def _info(i: int) -> ImageInfo:
    return ImageInfo(
        digest=digest(i), config_digest="sha256:" + f"{i + 50:02d}" * 32, diff_ids=diff_ids(i), os="linux"
    )


def test_too_many_changed_images_read_the_answer_whole(repo: SqlRepository, gate: GateService) -> None:
    answers = AffectedAnswers(gate, max_changed=2)
    assert kept(answers, "CVE-1", "") == fresh(gate, "CVE-1", "")
    for i in (0, 4, 8):  # three changed images, over the limit of two
        repo.upsert_image(_info(i), replace(ref(i), tag="again"), T0)
    assert kept(answers, "CVE-1", "") == fresh(gate, "CVE-1", "")
    assert (answers.full_reads, answers.patches) == (2, 0)


def test_how_many_changed_images_a_patch_takes_follows_the_answer_size(
    repo: SqlRepository, gate: GateService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One changed image per row of the answer (and no floor): a patch re-reads up to that many.
    monkeypatch.setattr(affected_answers, "MIN_PATCHED", 1)
    monkeypatch.setattr(affected_answers, "PATCH_PER_ROW", 1)
    answers = AffectedAnswers(gate)
    every, in_p = len(fresh(gate, "CVE-1", "")), len(fresh(gate, "CVE-1", "p"))
    assert every >= IMAGES > in_p > 0
    kept(answers, "CVE-1", "")
    kept(answers, "CVE-1", "p")
    for i in range(IMAGES):  # every image changed: under the large answer's limit, over the small one's
        repo.upsert_image(_info(i), replace(ref(i), tag="again"), T0)
    before = (answers.patches, answers.full_reads)
    assert kept(answers, "CVE-1", "") == fresh(gate, "CVE-1", "")
    assert (answers.patches, answers.full_reads) == (before[0] + 1, before[1])
    assert kept(answers, "CVE-1", "p") == fresh(gate, "CVE-1", "p")
    assert (answers.patches, answers.full_reads) == (before[0] + 1, before[1] + 1)


def test_a_patch_of_many_images_binds_them_as_one_list_on_sqlite(
    repo: SqlRepository, gate: GateService, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Past _IN_PLACEHOLDERS changed digests, SQLite gets them as one JSON array: same rows, same order.
    monkeypatch.setattr(repository_module, "_IN_PLACEHOLDERS", 2)
    answers = AffectedAnswers(gate)
    check(answers, gate, patched=False, first=True)
    for i in (0, 1, 2, 3, 5, 8):
        rescan(repo, i, [replace(f, severity=Severity.CRITICAL) for f in findings_of(i, "trivy")], 4)
    check(answers, gate)
    rescan(repo, 4, [], 4)  # one image loses every finding: its rows go
    repo.upsert_image(_info(6), replace(ref(6), tag="again"), T0)
    check(answers, gate)


def test_an_answer_cut_off_mid_stream_is_not_kept(repo: SqlRepository, gate: GateService) -> None:
    answers = AffectedAnswers(gate)
    pages = answers.pages("CVE-1", "", 1)
    next(pages)
    pages.close()  # the caller went away after the first page
    assert kept(answers, "CVE-1", "") == fresh(gate, "CVE-1", "")
    assert answers.full_reads == 2  # the cut-off read kept nothing
    kept(answers, "CVE-1", "")
    assert answers.patches == 1


def test_kept_rows_are_bounded(repo: SqlRepository, gate: GateService) -> None:
    rows = len(fresh(gate, "CVE-1", ""))
    assert rows > 4
    # Room for two answers of that size, not three: the least recently used one goes.
    answers = AffectedAnswers(gate, max_rows=2 * rows)
    kept(answers, "CVE-1", "")
    kept(answers, "cve-1", "")  # another spelling is another entry, with the same rows
    kept(answers, "Cve-1", "")
    assert (answers.full_reads, answers.patches) == (3, 0)
    kept(answers, "Cve-1", "")  # still kept
    assert (answers.full_reads, answers.patches) == (3, 1)
    kept(answers, "CVE-1", "")  # the first one went
    assert (answers.full_reads, answers.patches) == (4, 1)
    # Empty answers count too: unknown ids cannot grow the kept answers past the bound.
    few = AffectedAnswers(gate, max_rows=4)
    for n in range(10):
        assert kept(few, f"CVE-404-{n}", "") == []
    assert few.kept() == (4, 4)
    # Off: every call reads the answer whole.
    off = AffectedAnswers(gate, max_rows=0)
    assert kept(off, "CVE-404", "") == [] and kept(off, "CVE-1", "") == kept(off, "CVE-1", "")
    assert (off.full_reads, off.patches) == (3, 0)
    # An answer bigger than half the room is sent, never kept.
    small = AffectedAnswers(gate, max_rows=rows)
    assert kept(small, "CVE-1", "") == kept(small, "CVE-1", "")
    assert (small.full_reads, small.patches) == (2, 0)


def test_arguments_are_checked_before_anything_is_read(repo: SqlRepository, gate: GateService) -> None:
    from gate.errors import InvalidArgument

    answers = AffectedAnswers(gate)
    for args, field in (
        (("", "", 0), "vulnerability_id"),
        (("CVE-1", "prod", 0), "stage"),
        (("CVE-1", "", 1001), "page_size"),
    ):
        with pytest.raises(InvalidArgument) as refused:
            answers.pages(*args)
        assert refused.value.field == field
    assert answers.full_reads == 0


def test_kept_answers_stay_exact_under_concurrent_rescans(repo: SqlRepository, gate: GateService) -> None:
    """Writers rescan images (adding, dropping, re-rating CVE-1) while readers patch kept answers.

    A change the feed failed to report — a write landing between a read's mark and its rows, or a
    transaction that committed out of order — would leave the kept answer wrong for good, since
    later patches re-read only images that change again. So once the writers stop, one more patched
    call must equal a fresh read.
    """
    answers = AffectedAnswers(gate)
    stop = threading.Event()
    errors: list[BaseException] = []

    def write(seed: int) -> None:
        rng = random.Random(seed)
        day = 10 + seed * 10_000
        try:
            while not stop.is_set():
                i = rng.randrange(12)
                sev = rng.choice([Severity.LOW, Severity.HIGH, Severity.CRITICAL])
                found = [finding("CVE-2", "noise", Severity.HIGH, diff_ids(i)[0])]
                if rng.random() < 0.6:
                    found.append(finding("CVE-1", "openssl", sev, diff_ids(i)[0]))
                day += 1
                rescan(repo, i, found, day)
        except BaseException as e:
            errors.append(e)

    def read() -> None:
        try:
            while not stop.is_set():
                kept(answers, "CVE-1", "", page_size=5)
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(2)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for thread in threads:
        thread.start()
    time.sleep(3)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert answers.patches > 10, "the readers must have patched kept answers while writes landed"
    assert kept(answers, "CVE-1", "") == fresh(gate, "CVE-1", "")
