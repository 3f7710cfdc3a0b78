"""End to end: a real gate server with GATE_METRICS_LISTEN, a real Trivy scan and a check; /metrics moves.

Metrics are process-wide, so the test scrapes before and after and compares.
"""

from __future__ import annotations

import re
import urllib.request
from pathlib import Path

import pytest

from gate.config import Settings
from gate.v1 import gate_pb2 as pb
from tests.support import catalog
from tests.support.gateserver import make_settings, running_gate, stub, wait_terminal
from tests.support.images import write_docker_archive

pytestmark = [pytest.mark.trivy]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$")


def scrape(port: int) -> dict[str, float]:
    """Every sample of the exposition, keyed by `name{labels}` exactly as printed."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match:
            out[match.group(1) + (match.group(2) or "")] = float(match.group(3))
    return out


def healthz(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as reply:
        return int(reply.status)


@pytest.fixture
def settings(tmp_path: Path, trivy_bin: str, trivy_cache: Path) -> Settings:
    return make_settings(tmp_path, trivy_bin, trivy_cache, metrics_listen="127.0.0.1:0", rescan_tick=0.0)


def test_scan_and_check_move_the_counters(settings: Settings, tmp_path: Path) -> None:
    archive = write_docker_archive(
        catalog.vulnerable_alpine(), tmp_path / "vulnerable.tar", "registry.example/s2/payments:20200102_01"
    )
    image = f"docker-archive:{archive}"
    with running_gate(settings) as gate:
        assert gate.metrics is not None
        port = gate.metrics.port
        assert healthz(port) == 200
        before = scrape(port)

        client = stub(gate.address)
        reply = client.SubmitScan(pb.SubmitScanRequest(image=image, scanners=["trivy"]), timeout=60)
        job = wait_terminal(client, reply.jobs[0].id)
        assert job.state == pb.SUCCEEDED, job.error
        decision = client.CheckPromotion(
            pb.CheckPromotionRequest(image=image, from_stage="s2", to_stage="p"), timeout=30
        )
        assert not decision.allowed

        after = scrape(port)

        def delta(sample: str) -> float:
            return after.get(sample, 0.0) - before.get(sample, 0.0)

        assert delta('gate_decisions_total{result="denied",transition="s2->p"}') == 1
        assert delta('gate_scan_duration_seconds_count{outcome="succeeded",scanner="trivy"}') == 1
        assert delta('gate_scan_duration_seconds_sum{outcome="succeeded",scanner="trivy"}') > 0
        assert delta('gate_rpc_requests_total{code="OK",method="/gate.v1.Gate/SubmitScan"}') == 1
        assert delta('gate_rpc_requests_total{code="OK",method="/gate.v1.Gate/CheckPromotion"}') == 1
        assert 'gate_scan_queue_depth{state="queued"}' in after
        assert 'gate_scan_queue_depth{state="running"}' in after

        # A never-scanned digest is a NOT_SCANNED deny: still a decision, counted like any other.
        unknown = client.CheckPromotion(
            pb.CheckPromotionRequest(image="sha256:" + "cd" * 32, from_stage="s2", to_stage="p"), timeout=30
        )
        assert not unknown.allowed
        assert (
            scrape(port).get('gate_decisions_total{result="denied",transition="s2->p"}', 0)
            == after['gate_decisions_total{result="denied",transition="s2->p"}'] + 1
        )
    # Stopped: the port is released (a new scrape cannot connect).
    with pytest.raises(OSError):
        scrape(port)
