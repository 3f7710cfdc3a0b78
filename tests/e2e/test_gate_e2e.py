"""End to end: a real gate server on 127.0.0.1:0, the real CLI and a gRPC client, real trivy offline.

Covers the story a CI job lives through: scan → check denied naming the CVEs → clean image allowed; the
single-flight and restart guarantees; scanner failures that keep the previous findings; bad input.
"""

from __future__ import annotations

import json
import stat
import threading
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from gate.config import Settings
from gate.v1 import gate_pb2 as pb
from tests.support import catalog
from tests.support.gateserver import (
    make_settings,
    run_cli,
    running_gate,
    start_gate_process,
    stub,
    wait_terminal,
)
from tests.support.images import push_image, write_docker_archive
from tests.support.registry import Registry

pytestmark = [pytest.mark.trivy, pytest.mark.registry]

UNKNOWN_DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
def settings(tmp_path: Path, trivy_bin: str, trivy_cache: Path, registry: Registry) -> Settings:
    return make_settings(tmp_path, trivy_bin, trivy_cache, insecure_registries=(registry.host,))


@pytest.fixture
def archives(tmp_path: Path) -> dict[str, Path]:
    out = tmp_path / "images"
    out.mkdir()
    return {
        "vulnerable": write_docker_archive(
            catalog.vulnerable_alpine(), out / "vulnerable.tar", "registry.example/s2/payments:20200102_01"
        ),
        "clean": write_docker_archive(catalog.clean_alpine(), out / "clean.tar"),
        "secret": write_docker_archive(catalog.secret_image(), out / "secret.tar"),
    }


def _wrapper(tmp_path: Path, trivy_bin: str, name: str, body: str) -> str:
    """A fake `trivy` that answers `version` with the real binary and runs `body` for scans.

    The real binary's path is written into the script: gate gives trivy a minimal environment.
    """
    path = tmp_path / name
    script = [
        "#!/bin/sh",
        f'REAL_TRIVY="{trivy_bin}"',
        'if [ "$1" = version ]; then exec "$REAL_TRIVY" "$@"; fi',
        body,
    ]
    path.write_text("\n".join(script) + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


def test_cli_scan_check_denied_then_clean_allowed(settings: Settings, archives: dict[str, Path]) -> None:
    with running_gate(settings) as gate:
        vuln = f"docker-archive:{archives['vulnerable']}"
        clean = f"docker-archive:{archives['clean']}"

        scanned = run_cli(["scan", vuln, "--wait"], gate.address)
        assert scanned.returncode == 0, scanned.stderr

        denied = run_cli(["check", vuln, "--from", "s2", "--to", "p"], gate.address)
        assert denied.returncode == 1, denied.stdout + denied.stderr
        assert catalog.CVE_OPENSSL_CRITICAL in denied.stdout
        assert catalog.CVE_ZLIB_CRITICAL_NOFIX in denied.stdout

        as_json = run_cli(["check", vuln, "--from", "s2", "--to", "p", "--json"], gate.address)
        decision = json.loads(as_json.stdout)
        assert decision["allowed"] is False
        assert decision["state"] == "EVALUATED"
        ids = {v.get("vulnerability_id") for v in decision["violations"]}
        assert {
            catalog.CVE_OPENSSL_CRITICAL,
            catalog.CVE_BUSYBOX_HIGH,
            catalog.CVE_ZLIB_CRITICAL_NOFIX,
        } <= ids
        # The fixable CRITICAL names the version that fixes it, so the reader knows what to do.
        openssl = [
            v for v in decision["violations"] if v.get("vulnerability_id") == catalog.CVE_OPENSSL_CRITICAL
        ]
        assert openssl and all(v.get("fixed_version") for v in openssl)

        # `docker save` recorded the name: gate places the archive in repository s2/payments, stage s2.
        report = json.loads(run_cli(["report", vuln, "--json"], gate.address).stdout)
        assert (report["repository"], report["stage"], report["tags"]) == (
            "s2/payments",
            "s2",
            ["20200102_01"],
        )

        assert run_cli(["scan", clean, "--wait"], gate.address).returncode == 0
        # The built-in s2 → p needs a catalogued prod-osbase: the clean OS image is registered as one
        # (a catalogued base is exempt from the root-user rule). tests/e2e/test_bases_e2e.py covers apps.
        registered = run_cli(["bases", "add", clean, "--tier", "prod-osbase"], gate.address)
        assert registered.returncode == 0, registered.stderr
        allowed = run_cli(["check", clean, "--from", "s2", "--to", "p"], gate.address)
        assert allowed.returncode == 0, allowed.stdout + allowed.stderr


def test_registry_image_by_tag_grpc(settings: Settings, registry: Registry) -> None:
    image = catalog.vulnerable_alpine()
    digest = push_image(registry.host, "s2/payments", "20200102_01", image)
    by_tag = f"{registry.host}/s2/payments:20200102_01"
    with running_gate(settings) as gate:
        client = stub(gate.address)
        reply = client.SubmitScan(pb.SubmitScanRequest(image=by_tag), timeout=30)
        assert [j.digest for j in reply.jobs] == [digest]
        job = wait_terminal(client, reply.jobs[0].id)
        assert job.state == pb.SUCCEEDED, job.error
        assert job.scanner_version

        decision = client.CheckPromotion(
            pb.CheckPromotionRequest(image=by_tag, from_stage="s2", to_stage="p"), timeout=10
        )
        assert not decision.allowed
        assert decision.digest == digest
        assert decision.state == pb.EVALUATED
        assert decision.policy_digest
        assert any(v.vulnerability_id == catalog.CVE_OPENSSL_CRITICAL for v in decision.violations)

        report = client.GetImageReport(
            pb.GetImageReportRequest(image=f"{registry.host}/s2/payments@{digest}")
        )
        assert report.stage == "s2"
        assert "20200102_01" in report.tags
        assert report.finding_count > 0

        affected = list(
            client.FindAffectedImages(
                pb.FindAffectedImagesRequest(vulnerability_id=catalog.CVE_OPENSSL_CRITICAL)
            )
        )
        assert {a.digest for a in affected} == {digest}
        assert all(a.stage == "s2" and a.repository == "s2/payments" for a in affected)
        assert (
            list(
                client.FindAffectedImages(
                    pb.FindAffectedImagesRequest(vulnerability_id=catalog.CVE_OPENSSL_CRITICAL, stage="p")
                )
            )
            == []
        )

        page1 = client.ListFindings(pb.ListFindingsRequest(image=digest, page_size=1))
        assert len(page1.findings) == 1 and page1.next_page_token
        high = client.ListFindings(pb.ListFindingsRequest(image=digest, min_severity="CRITICAL"))
        assert high.findings and all(f.severity == "CRITICAL" for f in high.findings)


def test_secret_denied(settings: Settings, archives: dict[str, Path]) -> None:
    with running_gate(settings) as gate:
        ref = f"docker-archive:{archives['secret']}"
        assert run_cli(["scan", ref, "--wait"], gate.address).returncode == 0
        out = run_cli(["check", ref, "--from", "s2", "--to", "p", "--json"], gate.address)
        decision = json.loads(out.stdout)
        assert decision["allowed"] is False
        assert any(v["rule"] == "secret" for v in decision["violations"])


def test_never_scanned_digest_needs_no_registry(settings: Settings) -> None:
    with running_gate(settings) as gate:
        client = stub(gate.address)
        # Port 1 has no registry: a round trip would fail, so NOT_SCANNED proves none was made.
        decision = client.CheckPromotion(
            pb.CheckPromotionRequest(
                image=f"127.0.0.1:1/s2/app@{UNKNOWN_DIGEST}", from_stage="s2", to_stage="p"
            )
        )
        assert decision.state == pb.NOT_SCANNED
        assert not decision.allowed
        bare = client.CheckPromotion(
            pb.CheckPromotionRequest(image=UNKNOWN_DIGEST, from_stage="s2", to_stage="p")
        )
        assert bare.state == pb.NOT_SCANNED


def test_fifty_concurrent_submits_one_trivy_run(
    tmp_path: Path, settings: Settings, archives: dict[str, Path], trivy_bin: str
) -> None:
    log = tmp_path / "runs.log"
    fake = _wrapper(tmp_path, trivy_bin, "counting-trivy", f'echo run >> "{log}"\nexec "$REAL_TRIVY" "$@"')
    with running_gate(replace(settings, trivy_bin=fake)) as gate:
        client = stub(gate.address)
        ref = f"docker-archive:{archives['vulnerable']}"
        replies: list[pb.SubmitScanResponse] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(50)

        def submit() -> None:
            try:
                barrier.wait()
                replies.append(client.SubmitScan(pb.SubmitScanRequest(image=ref), timeout=60))
            except BaseException as e:  # collected and asserted below
                errors.append(e)

        threads = [threading.Thread(target=submit) for _ in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        assert not errors
        ids = {r.jobs[0].id for r in replies}
        assert len(ids) == 1
        job = wait_terminal(client, ids.pop())
        assert job.state == pb.SUCCEEDED, job.error
    assert log.read_text().count("run") == 1


def test_restart_resumes_queued_jobs(
    tmp_path: Path, settings: Settings, archives: dict[str, Path], trivy_bin: str
) -> None:
    hang = _wrapper(tmp_path, trivy_bin, "hanging-trivy", "exec sleep 300")
    first = start_gate_process(replace(settings, trivy_bin=hang, scan_concurrency=1), tmp_path / "first.log")
    try:
        client = stub(first.address)
        jobs = [
            client.SubmitScan(pb.SubmitScanRequest(image=f"docker-archive:{archives[k]}"), timeout=30).jobs[0]
            for k in ("vulnerable", "clean")
        ]
        states = {client.GetScan(pb.GetScanRequest(id=j.id)).state for j in jobs}
        assert states <= {pb.QUEUED, pb.RUNNING}
    finally:
        first.kill()  # kill -9: the jobs stay QUEUED/RUNNING in the database
    with running_gate(settings) as gate:
        client = stub(gate.address)
        for j in jobs:
            done = wait_terminal(client, j.id)
            assert done.state == pb.SUCCEEDED, done.error


@pytest.mark.parametrize(
    ("name", "body", "reason"),
    [
        (
            "garbage",
            'echo "this is not json" > "$(echo "$@" | sed -n "s/.*--output \\([^ ]*\\).*/\\1/p")"',
            "json",
        ),
        ("killed", "kill -9 $$", "signal"),
        ("timeout", "exec sleep 60", "deadline"),
        ("crash", 'echo "FATAL: boom" >&2; exit 1', "boom"),
    ],
)
def test_scanner_failure_keeps_previous_findings(
    tmp_path: Path,
    settings: Settings,
    archives: dict[str, Path],
    trivy_bin: str,
    name: str,
    body: str,
    reason: str,
) -> None:
    ref = f"docker-archive:{archives['vulnerable']}"
    with running_gate(settings) as gate:
        client = stub(gate.address)
        first = wait_terminal(client, client.SubmitScan(pb.SubmitScanRequest(image=ref)).jobs[0].id)
        assert first.state == pb.SUCCEEDED
        before = client.ListFindings(pb.ListFindingsRequest(image=ref, page_size=1000))

    broken = _wrapper(tmp_path, trivy_bin, f"{name}-trivy", body)
    with running_gate(replace(settings, trivy_bin=broken, trivy_timeout=3.0)) as gate:
        client = stub(gate.address)
        job = wait_terminal(client, client.SubmitScan(pb.SubmitScanRequest(image=ref, force=True)).jobs[0].id)
        assert job.state == pb.FAILED_JOB
        assert reason in job.error.lower()
        after = client.ListFindings(pb.ListFindingsRequest(image=ref, page_size=1000))
        assert [f.vulnerability_id for f in after.findings] == [f.vulnerability_id for f in before.findings]
        decision = client.CheckPromotion(pb.CheckPromotionRequest(image=ref, from_stage="s2", to_stage="p"))
        assert not decision.allowed
        assert decision.state == pb.FAILED
        cli = run_cli(["check", ref, "--from", "s2", "--to", "p"], gate.address)
        assert cli.returncode == 1


def test_import_report_for_unknown_digest(
    tmp_path: Path, settings: Settings, archives: dict[str, Path], trivy_bin: str, trivy_cache: Path
) -> None:
    import subprocess

    from tests.support.trivydb import trivy_env

    report = tmp_path / "report.json"
    subprocess.run(
        [
            trivy_bin,
            "image",
            "--format",
            "json",
            "--output",
            str(report),
            "--cache-dir",
            str(trivy_cache),
            "--skip-db-update",
            "--scanners",
            "vuln,secret",
            "--input",
            str(archives["vulnerable"]),
        ],
        env=trivy_env(),
        check=True,
        capture_output=True,
        timeout=120,
    )
    config_digest = catalog.vulnerable_alpine().config_digest
    with running_gate(settings) as gate:
        out = run_cli(
            ["import-report", "--scanner", "trivy", str(report), "--image", config_digest], gate.address
        )
        assert out.returncode == 0, out.stderr
        client = stub(gate.address)
        rep = client.GetImageReport(pb.GetImageReportRequest(image=config_digest))
        assert rep.finding_count > 0
        assert any(s.imported for s in rep.scans)
        decision = client.CheckPromotion(
            pb.CheckPromotionRequest(image=config_digest, from_stage="s2", to_stage="p")
        )
        assert decision.state == pb.EVALUATED and not decision.allowed


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["check", "not a ref", "--from", "s2", "--to", "p"], "image"),
        (["check", UNKNOWN_DIGEST, "--from", "s2", "--to", "prod"], "to_stage"),
        (["check", UNKNOWN_DIGEST, "--from", "s2", "--to", "t"], "to_stage"),
        (["check", UNKNOWN_DIGEST, "--from", "p", "--to", "s2"], "from_stage"),
        (["check", UNKNOWN_DIGEST, "--from", "d", "--to", "p"], "to_stage"),
        (["scan", "docker-archive:/nonexistent/x.tar"], "image"),
        (["scan", "127.0.0.1:1/p/app:20200102_01", "--scanners", "nessus"], "scanners"),
        (["scan", "payments:20200102_01"], "image"),
    ],
)
def test_bad_input_is_invalid_argument(settings: Settings, args: list[str], field: str) -> None:
    with running_gate(settings) as gate:
        out = run_cli(args, gate.address)
        assert out.returncode == 2, out.stdout + out.stderr
        assert field in out.stderr
        client = stub(gate.address)
        with pytest.raises(grpc.RpcError) as err:
            client.GetImageReport(pb.GetImageReportRequest(image=UNKNOWN_DIGEST))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_not_a_trivy_report_is_refused(tmp_path: Path, settings: Settings) -> None:
    junk = tmp_path / "junk.json"
    junk.write_text(json.dumps({"hello": "world"}))
    with running_gate(settings) as gate:
        out = run_cli(
            ["import-report", "--scanner", "trivy", str(junk), "--image", UNKNOWN_DIGEST], gate.address
        )
        assert out.returncode == 2
        assert "report" in out.stderr
        client = stub(gate.address)
        with pytest.raises(grpc.RpcError) as err:
            client.GetImageReport(pb.GetImageReportRequest(image=UNKNOWN_DIGEST))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


def test_health_and_reflection(settings: Settings) -> None:
    with running_gate(settings) as gate:
        channel = grpc.insecure_channel(gate.address)
        health = health_pb2_grpc.HealthStub(channel)
        assert (
            health.Check(health_pb2.HealthCheckRequest(service="gate.v1.Gate")).status
            == health_pb2.HealthCheckResponse.SERVING
        )
        refl = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = list(
            refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        )
        names = {s.name for s in answers[0].list_services_response.service}
        assert "gate.v1.Gate" in names
