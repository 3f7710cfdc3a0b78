"""End to end with two scanners: a real gate server, the real CLI, real trivy, the real registry and the
Clair double (which really downloads the layers from that registry with the URIs and headers gate gives).

`gate scan REF --scanners trivy,clair --wait` runs both; `gate check` explains where they disagree;
Clair's faults (5xx, wrong PSK, a matcher stuck at 202, truncated reports) fail only the Clair job with
its reason, keep Trivy's findings, and fail the verdict exactly when the policy requires Clair.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from gate.config import Settings
from gate.v1 import gate_pb2 as pb
from tests.support import catalog
from tests.support.clair_double import ClairDouble, standard_clair_advisories
from tests.support.gateserver import (
    make_settings,
    run_cli,
    running_gate,
    start_gate_process,
    stub,
    wait_terminal,
)
from tests.support.images import push_image
from tests.support.registry import Registry

pytestmark = [pytest.mark.trivy, pytest.mark.registry]

PSK = b"e2e-clair-psk"
REPOSITORY = "s2/payments"
TAG = "20200102_01"


@pytest.fixture
def clair() -> Iterator[ClairDouble]:
    with ClairDouble(standard_clair_advisories(), psk=PSK) as double:
        yield double


@pytest.fixture
def settings(
    tmp_path: Path, trivy_bin: str, trivy_cache: Path, registry: Registry, clair: ClairDouble
) -> Settings:
    return make_settings(
        tmp_path,
        trivy_bin,
        trivy_cache,
        insecure_registries=(registry.host,),
        clair_url=clair.url,
        clair_psk=clair.psk_b64,
        clair_timeout=30.0,
    )


@pytest.fixture
def image(registry: Registry) -> str:
    push_image(registry.host, REPOSITORY, TAG, catalog.vulnerable_alpine())
    return f"{registry.host}/{REPOSITORY}:{TAG}"


def requiring_clair(tmp_path: Path) -> str:
    """The built-in policy, with s2->p requiring both scanners."""
    text = resources.files("gate.policy").joinpath("defaults.yaml").read_text()
    assert text.count("  s2->p:\n") == 1
    path = tmp_path / "policy.yaml"
    path.write_text(text.replace("  s2->p:\n", "  s2->p:\n    require_scanners: [trivy, clair]\n"))
    return str(path)


def check_json(address: str, image: str) -> dict[str, Any]:
    done = run_cli(["check", image, "--from", "s2", "--to", "p", "--json"], address)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def scan_both(address: str, image: str) -> tuple[int, dict[str, pb.ScanJob]]:
    done = run_cli(["scan", image, "--scanners", "trivy,clair", "--wait", "--json"], address)
    jobs = json.loads(done.stdout)["jobs"]
    client = stub(address)
    by_scanner = {j["scanner"]: client.GetScan(pb.GetScanRequest(id=j["id"]), timeout=10) for j in jobs}
    return done.returncode, by_scanner


def test_both_scanners_succeed_and_the_check_explains_their_disagreements(
    settings: Settings, image: str, clair: ClairDouble
) -> None:
    with running_gate(settings) as gate:
        code, jobs = scan_both(gate.address, image)
        assert code == 0
        assert {name: job.state for name, job in jobs.items()} == {
            "trivy": pb.SUCCEEDED,
            "clair": pb.SUCCEEDED,
        }
        assert jobs["clair"].finding_count == 5  # 2 openssl binaries, 2 busybox binaries, zlib
        # Clair really fetched every layer from the registry gate read the image from.
        assert clair.fetches and all(status == 200 for _, _, status in clair.fetches)

        checked = run_cli(["check", image, "--from", "s2", "--to", "p", "--json"], gate.address)
        decision = json.loads(checked.stdout)
        assert decision["allowed"] is False
        messages = {v.get("vulnerability_id", ""): v["message"] for v in decision["violations"]}
        # Alpine advisories carry no vendor severity in Clair: Unknown beside Trivy's HIGH.
        assert "scanners disagree (trivy: HIGH, clair: UNKNOWN)" in messages[catalog.CVE_BUSYBOX_HIGH]
        # Both agree on the critical OpenSSL finding, so its message stays plain.
        assert "disagree" not in messages[catalog.CVE_OPENSSL_CRITICAL]

        # The report puts both scanners side by side.
        report = json.loads(run_cli(["report", image, "--json"], gate.address).stdout)
        per_scanner = {c["scanner"]: c["finding_count"] for c in report["scanner_counts"]}
        assert per_scanner == {"trivy": jobs["trivy"].finding_count, "clair": 5}
        rows = {
            (d["vulnerability_id"], d["package"]): {
                s["scanner"]: s.get("severity", "") for s in d["severities"]
            }
            for d in report["disagreements"]
        }
        assert rows[(catalog.CVE_BUSYBOX_HIGH, "busybox")] == {"trivy": "HIGH", "clair": "UNKNOWN"}
        assert rows[(catalog.CVE_MUSL_MEDIUM, "musl")] == {"trivy": "MEDIUM", "clair": ""}
        assert (catalog.CVE_OPENSSL_CRITICAL, "libssl3") not in rows
        table = run_cli(["report", image], gate.address).stdout
        assert "Findings by scanner" in table and "TRIVY  CLAIR" in table
        assert "Disagreements (" in table and "not found" in table


def _server_error(clair: ClairDouble, settings: Settings) -> Settings:
    clair.fail_with["vulnerability_report"] = 500
    return settings


def _wrong_psk(clair: ClairDouble, settings: Settings) -> Settings:
    clair.psk = b"not-the-key-gate-has"
    return settings


def _stuck_at_202(clair: ClairDouble, settings: Settings) -> Settings:
    clair.initialising = True
    return replace(settings, clair_timeout=2.0)


def _truncated(clair: ClairDouble, settings: Settings) -> Settings:
    clair.truncate_reports = True
    return settings


FAULTS: dict[str, tuple[Callable[[ClairDouble, Settings], Settings], str]] = {
    "5xx": (_server_error, "500"),
    "401": (_wrong_psk, "rejected gate's PSK token (401)"),
    "202-forever": (_stuck_at_202, "still initialising (202)"),
    "truncated-json": (_truncated, "cut off"),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_clair_faults_fail_only_the_clair_job_and_the_verdict_follows_policy(
    fault: str, settings: Settings, image: str, clair: ClairDouble, tmp_path: Path
) -> None:
    inject, reason = FAULTS[fault]
    settings = inject(clair, settings)
    with running_gate(settings) as gate:
        code, jobs = scan_both(gate.address, image)
        assert code == 3  # a failed job is UNAVAILABLE for the CLI
        assert jobs["trivy"].state == pb.SUCCEEDED and jobs["trivy"].finding_count > 0
        assert jobs["clair"].state == pb.FAILED_JOB
        assert reason in jobs["clair"].error

        # Only Trivy required (the server's default scanners): Clair's failure is a warning and the
        # verdict judges Trivy's findings.
        plain = json.loads(
            run_cli(["check", image, "--from", "s2", "--to", "p", "--json"], gate.address).stdout
        )
        assert plain["state"] == "EVALUATED"
        assert any("clair scan failed" in w and reason in w for w in plain["warnings"])
        assert any(v.get("vulnerability_id") == catalog.CVE_OPENSSL_CRITICAL for v in plain["violations"])

    with running_gate(replace(settings, policy_file=requiring_clair(tmp_path))) as gate:
        strict = json.loads(
            run_cli(["check", image, "--from", "s2", "--to", "p", "--json"], gate.address).stdout
        )
        assert strict["allowed"] is False and strict["state"] == "FAILED"
        assert (
            strict["violations"][0]["rule"] == "scan-state" and reason in strict["violations"][0]["message"]
        )
        # Trivy's findings are still stored and judged beside the failed Clair scan.
        assert any(v.get("vulnerability_id") == catalog.CVE_OPENSSL_CRITICAL for v in strict["violations"])


def test_clair_on_an_archive_is_refused_at_submit(settings: Settings, tmp_path: Path) -> None:
    from tests.support.images import write_docker_archive

    archive = write_docker_archive(catalog.clean_alpine(), tmp_path / "clean.tar")
    with running_gate(settings) as gate:
        done = run_cli(["scan", f"docker-archive:{archive}", "--scanners", "clair"], gate.address)
        assert done.returncode == 2, done.stderr
        assert "INVALID_ARGUMENT" in done.stderr and "scanners" in done.stderr
        assert "needs a registry image" in done.stderr


def test_a_clair_job_resumed_after_a_crash_reaches_clair_from_its_stored_target(
    settings: Settings, image: str, clair: ClairDouble, tmp_path: Path
) -> None:
    clair.delay = 20.0  # the first server's Clair scan hangs in its first request
    first = start_gate_process(replace(settings, scan_concurrency=1), tmp_path / "first.log")
    try:
        client = stub(first.address)
        (job,) = client.SubmitScan(pb.SubmitScanRequest(image=image, scanners=["clair"]), timeout=30).jobs
        assert client.GetScan(pb.GetScanRequest(id=job.id)).state in (pb.QUEUED, pb.RUNNING)
    finally:
        first.kill()  # kill -9: the job stays active in the database, its target without secrets
    clair.delay = 0.0
    with running_gate(settings) as gate:
        done = wait_terminal(stub(gate.address), job.id)
        assert done.state == pb.SUCCEEDED, done.error
        assert done.finding_count == 5
    # The resumed scan indexed the manifest with its layers: only the stored digests made that possible.
    posted = [r.json() for r in clair.logged("POST", "/indexer/api/v1/index_report") if r.status == 201]
    assert posted and posted[-1]["hash"] == catalog.vulnerable_alpine().manifest_digest
    assert [layer["hash"] for layer in posted[-1]["layers"]] == [
        b.digest for b in catalog.vulnerable_alpine().layers
    ]
