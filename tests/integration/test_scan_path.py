"""The path of one scan through gate, on a real in-process server with the real trivy binary, offline.

What the short path (gate/scanning/jobs.py, GateService.submit_scan / watch_scan) must keep:
a watcher is woken by the completion itself, not by its poll; a job created by this process starts its
scanner without reading the job or the image back from the store; RUNNING is still recorded before the
job ends, even when the scanner fails at once; and the scanner's answer is still checked against the
image gate identified — from memory for a fresh submission, from the store for a resumed job. Counting
wrappers on the repository show which reads happen; nothing here measures time.
"""

from __future__ import annotations

import stat
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gate.config import Settings
from gate.domain import JobState, ScanJob
from gate.images.archive import read_docker_archive
from gate.server.app import RunningGate
from gate.v1 import gate_pb2 as pb
from scanners.interface import ScanTarget, TargetKind
from tests.support import catalog
from tests.support.gateserver import make_settings, running_gate, stub, wait_terminal
from tests.support.images import write_docker_archive

pytestmark = [pytest.mark.trivy]

# Far beyond any scan here: a watcher that depended on its poll would not finish before the join below
# gives up, so finishing proves it was woken by the completion.
NEVER = 3600.0
JOIN = 180.0


@pytest.fixture
def settings(tmp_path: Path, trivy_bin: str, trivy_cache: Path) -> Settings:
    return make_settings(tmp_path, trivy_bin, trivy_cache)


@pytest.fixture
def archives(tmp_path: Path) -> dict[str, Path]:
    out = tmp_path / "images"
    out.mkdir()
    return {
        "vulnerable": write_docker_archive(
            catalog.vulnerable_alpine(), out / "vulnerable.tar", "registry.example/s2/payments:20200102_01"
        ),
        "clean": write_docker_archive(catalog.clean_alpine(), out / "clean.tar"),
    }


@pytest.fixture
def gate(settings: Settings) -> Iterator[RunningGate]:
    with running_gate(settings) as running:
        yield running


def _fake_trivy(tmp_path: Path, trivy_bin: str, name: str, body: str) -> str:
    """A `trivy` that answers `version` with the real binary and runs `body` for scans."""
    path = tmp_path / name
    path.write_text(
        "\n".join(
            [
                "#!/bin/sh",
                f'REAL_TRIVY="{trivy_bin}"',
                'if [ "$1" = version ]; then exec "$REAL_TRIVY" "$@"; fi',
                body,
            ]
        )
        + "\n"
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def _count_worker_calls(
    monkeypatch: pytest.MonkeyPatch, repo: object, names: tuple[str, ...]
) -> Counter[str]:
    """Count calls of repository methods made on the job runner's threads (gate-scan-*)."""
    calls: Counter[str] = Counter()
    for name in names:
        original: Callable[..., Any] = getattr(repo, name)

        def counted(
            *args: Any, _original: Callable[..., Any] = original, _name: str = name, **kw: Any
        ) -> Any:
            if threading.current_thread().name.startswith("gate-scan"):
                calls[_name] += 1
            return _original(*args, **kw)

        monkeypatch.setattr(repo, name, counted)
    return calls


def _watch(gate: RunningGate, job_id: str) -> list[ScanJob]:
    """Follow GateService.watch_scan on a thread with a poll that never fires; return what it yielded."""
    seen: list[ScanJob] = []
    errors: list[BaseException] = []

    def follow() -> None:
        try:
            seen.extend(gate.service.watch_scan(job_id, lambda: True, poll=NEVER))
        except BaseException as e:  # re-raised below, on the test's thread
            errors.append(e)

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    watcher.join(JOIN)
    assert not watcher.is_alive(), "the watcher was not woken when the job ended"
    assert not errors, errors
    return seen


def test_watcher_is_woken_by_the_completion_and_reports_what_the_store_holds(
    gate: RunningGate, archives: dict[str, Path]
) -> None:
    [submitted] = gate.service.submit_scan(f"docker-archive:{archives['vulnerable']}", [], force=True)
    seen = _watch(gate, submitted.job.id)
    states = [j.state for j in seen]
    assert states[-1] is JobState.SUCCEEDED, seen[-1].error
    assert all(s.active for s in states[:-1])
    # The final event comes from the runner's copy of the finished job: it must be the stored job.
    stored = gate.repo.get_job(submitted.job.id)
    assert seen[-1] == stored
    assert gate.runner.finished(submitted.job.id) == stored
    assert stored is not None and stored.finding_count > 0


def test_grpc_watch_ends_with_the_completion(gate: RunningGate, archives: dict[str, Path]) -> None:
    client = stub(gate.address)
    job = client.SubmitScan(pb.SubmitScanRequest(image=f"docker-archive:{archives['vulnerable']}")).jobs[0]
    done = wait_terminal(client, job.id)
    assert done.state == pb.SUCCEEDED, done.error
    assert done.finding_count > 0
    assert done.started_at.ToDatetime() <= done.finished_at.ToDatetime()


def test_a_submitted_job_starts_its_scanner_without_reading_the_store(
    gate: RunningGate, archives: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _count_worker_calls(
        monkeypatch, gate.repo, ("get_job", "get_image", "mark_running", "complete_job")
    )
    ref = f"docker-archive:{archives['vulnerable']}"
    [submitted] = gate.service.submit_scan(ref, [], force=True)
    seen = _watch(gate, submitted.job.id)
    assert seen[-1].state is JobState.SUCCEEDED, seen[-1].error
    assert calls["get_job"] == 0 and calls["get_image"] == 0
    assert calls["mark_running"] == 1 and calls["complete_job"] == 1
    # The image row the submission writes after queueing the job is there, with the name it was saved as.
    image = gate.repo.get_image(submitted.job.digest)
    assert image is not None
    assert (image.repository, image.tags) == ("s2/payments", ("20200102_01",))


def test_a_scanner_that_fails_at_once_still_leaves_running_recorded_first(
    tmp_path: Path, settings: Settings, archives: dict[str, Path], trivy_bin: str
) -> None:
    crash = _fake_trivy(tmp_path, trivy_bin, "crash-trivy", 'echo "FATAL: boom" >&2; exit 1')
    with running_gate(make_settings(tmp_path, crash, Path(settings.trivy_cache_dir))) as gate:
        [submitted] = gate.service.submit_scan(f"docker-archive:{archives['vulnerable']}", [], force=True)
        seen = _watch(gate, submitted.job.id)
        job = gate.repo.get_job(submitted.job.id)
    assert job is not None and job.state is JobState.FAILED
    assert "boom" in job.error
    assert seen[-1] == job
    # RUNNING is written beside the scanner; the FAILED write waited for it instead of racing it.
    assert job.started_at is not None and job.finished_at is not None
    assert job.started_at <= job.finished_at


def test_a_scanner_reading_another_image_is_refused_on_both_paths(
    tmp_path: Path, settings: Settings, archives: dict[str, Path], trivy_bin: str
) -> None:
    other = archives["clean"]
    # Scans whatever it is asked to, but reads the clean image instead: its config digest differs.
    swap = _fake_trivy(
        tmp_path,
        trivy_bin,
        "swapping-trivy",
        f'exec "$REAL_TRIVY" $(echo "$@" | sed "s#--input [^ ]*#--input {other}#")',
    )
    vulnerable = archives["vulnerable"]
    identified = read_docker_archive(vulnerable)
    with running_gate(make_settings(tmp_path, swap, Path(settings.trivy_cache_dir))) as gate:
        # A fresh submission: checked against the config digest handed over with the job.
        [submitted] = gate.service.submit_scan(f"docker-archive:{vulnerable}", [], force=True)
        fresh = _watch(gate, submitted.job.id)[-1]
        # A job the runner knows only by id (as after a restart): checked against the stored image.
        queued, created = gate.repo.create_job(
            identified.digest,
            "trivy",
            f"docker-archive:{vulnerable}",
            ScanTarget(TargetKind.DOCKER_ARCHIVE, str(vulnerable)),
            datetime.now(UTC),
        )
        assert created
        assert gate.runner.submit(queued.id)
        resumed = _watch(gate, queued.id)[-1]
        current = gate.repo.current_findings(identified.digest)
    for job in (fresh, resumed):
        assert job.state is JobState.FAILED
        assert "scanner reported image" in job.error
        assert identified.config_digest in job.error
    assert current == ()
