"""End to end: `gate check --scan-if-stale` and a DB-change rescan, real server, CLI and offline trivy.

The server runs on a ManualClock so scans age without sleeping; the vulnerability DB is rebuilt with a
new UpdatedAt (tests/support/trivydb) to make the scheduler's tick rescan what used the old one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gate.clock import ManualClock
from gate.config import Settings
from gate.server.app import RunningGate, create_server
from tests.support import catalog
from tests.support.gateserver import make_settings, run_cli
from tests.support.images import write_docker_archive
from tests.support.trivydb import build_trivy_cache

pytestmark = [pytest.mark.trivy]

START = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def gate(tmp_path: Path, trivy_bin: str, trivy_cache: Path, clock: ManualClock) -> Iterator[RunningGate]:
    # No background ticks: the test ticks the scheduler itself.
    settings: Settings = make_settings(tmp_path, trivy_bin, trivy_cache, rescan_tick=0.0)
    running = create_server(settings, "127.0.0.1:0", clock=clock)
    try:
        yield running
    finally:
        running.stop(grace=1.0)


def check(gate: RunningGate, image: str, *extra: str) -> tuple[int, dict[str, object]]:
    result = run_cli(
        ["check", image, "--from", "s2", "--to", "p", "--json", "--timeout", "120", *extra], gate.address
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def test_check_scan_if_stale_scans_unscanned_and_stale_images(
    gate: RunningGate, clock: ManualClock, tmp_path: Path
) -> None:
    archive = write_docker_archive(
        catalog.vulnerable_alpine(), tmp_path / "app.tar", "registry.example/s2/payments:20200102_01"
    )
    image = f"docker-archive:{archive}"

    _, before = check(gate, image)
    assert before["state"] == "NOT_SCANNED"

    _, scanned = check(gate, image, "--scan-if-stale")
    assert scanned["state"] == "EVALUATED"  # scanned, then judged on the new findings
    assert any(v.get("vulnerability_id") for v in scanned["violations"])  # type: ignore[union-attr]
    digest = str(scanned["digest"])

    clock.advance(timedelta(days=8))  # s2->p allows a 7d old scan
    _, stale = check(gate, digest)
    assert stale["state"] == "RESCAN_REQUIRED"  # gate knows where to read it again
    assert "gate check --scan-if-stale" in json.dumps(stale["violations"])

    # A bare digest is enough: gate rescans from where it read the image before.
    _, fresh = check(gate, digest, "--scan-if-stale")
    assert fresh["state"] == "EVALUATED"


def test_db_rebuilt_with_new_updated_at_rescans_s2_and_p_only(
    gate: RunningGate, clock: ManualClock, tmp_path: Path, trivy_cache: Path
) -> None:
    images = {
        "d": "registry.example/d/payments:20200102_01",
        "s2": "registry.example/s2/payments:20200102_02",
        "p": "registry.example/p/payments:20200102_03",
    }
    digests = {}
    builds = {
        "d": catalog.vulnerable_alpine(),
        "s2": catalog.clean_alpine(),
        "p": catalog.vulnerable_alpine_base(),
    }
    for stage, name in images.items():
        archive = write_docker_archive(builds[stage], tmp_path / f"{stage}.tar", name)
        result = run_cli(["scan", f"docker-archive:{archive}", "--wait", "--json"], gate.address)
        assert result.returncode == 0, result.stderr
        digests[stage] = json.loads(result.stdout)["jobs"][0]["digest"]
    assert gate.scheduler is not None
    assert gate.scheduler.tick().queued == {}  # nothing changed yet

    # The DB is rebuilt with a later UpdatedAt (as a daily update would).
    build_trivy_cache(
        trivy_cache, catalog.standard_advisories(), catalog.STANDARD_DB_UPDATED_AT + timedelta(days=1)
    )
    clock.advance(timedelta(minutes=1))
    queued = gate.scheduler.tick().queued
    stored = {stage: gate.repo.get_image(d) for stage, d in digests.items() if d}
    expected = {r.digest for stage, r in stored.items() if r is not None and stage in ("s2", "p")}
    assert set(queued) == expected and len(expected) == 2
