"""Trivy client/server mode against a real `trivy server` on loopback serving the offline test DB.

The scanner runs the real trivy binary as a client (`--server URL`, token in its environment); the
standalone results on the same DB are the yardstick. The last tests go through a real gate gRPC server
configured for server mode.
"""

from __future__ import annotations

import http.server
import json
import os
import stat
import threading
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gate.config import Settings
from gate.v1 import gate_pb2 as pb
from scanners.interface import ScannerUnavailable, ScanResult, ScanTarget, TargetKind
from scanners.trivy import TrivyScanner, TrivyServer
from tests.support import catalog
from tests.support.gateserver import make_settings, running_gate, stub, wait_terminal
from tests.support.images import BuiltImage, push_image, write_docker_archive
from tests.support.registry import Registry
from tests.support.trivyserver import (
    TrivyServerProcess,
    TrivyServerStartError,
    free_port,
    running_trivy_server,
    start_trivy_server,
)

pytestmark = pytest.mark.trivy

TIMEOUT = 120.0


def _env(tmp_path: Path) -> dict[str, str]:
    # A fake HOME keeps the user's docker config and trivy settings out of the scan.
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)}


def client(trivy_bin: str, tmp_path: Path, server: TrivyServer, **kwargs: object) -> TrivyScanner:
    """A server-mode scanner with an EMPTY client cache dir: the DB must come from the server."""
    cache = tmp_path / "client-cache"
    cache.mkdir(exist_ok=True)
    return TrivyScanner(
        trivy_bin,
        str(cache),
        skip_db_update=True,
        base_env=_env(tmp_path),
        server=server,
        **kwargs,  # type: ignore[arg-type]
    )


def of(server: TrivyServerProcess, **changes: str) -> TrivyServer:
    """The TrivyServer settings for a running server (its URL and token), with `changes` applied."""
    return replace(TrivyServer(server.url, server.token, server.token_header), **changes)


def archive(image: BuiltImage, tmp_path: Path, name: str = "image.tar") -> ScanTarget:
    return ScanTarget(TargetKind.DOCKER_ARCHIVE, str(write_docker_archive(image, tmp_path / name)))


def comparable(result: ScanResult) -> tuple[object, ...]:
    """Everything about a result that must not depend on the mode (the report time naturally differs)."""
    return (
        sorted(result.findings, key=repr),
        result.scanner_version,
        result.db_version,
        result.db_updated_at,
        result.config_digest,
        result.diff_ids,
        result.repo_digests,
        result.os_family,
        result.os_name,
    )


@pytest.mark.parametrize(
    "image",
    [catalog.vulnerable_alpine(), catalog.debian_app(), catalog.secret_image()],
    ids=["vulnerable_alpine", "debian_app", "secret_image"],
)
def test_same_findings_as_standalone_on_the_same_db(
    image: BuiltImage, trivy_bin: str, trivy_cache: Path, trivy_server: TrivyServerProcess, tmp_path: Path
) -> None:
    target = archive(image, tmp_path)
    standalone = TrivyScanner(trivy_bin, str(trivy_cache), skip_db_update=True, base_env=_env(tmp_path))
    expected = standalone.scan(target, TIMEOUT)
    got = client(trivy_bin, tmp_path, of(trivy_server)).scan(target, TIMEOUT)
    assert got.findings, "the catalog image should have findings"
    assert comparable(got) == comparable(expected)
    # The DB recorded is the server's (the client cache has none), and the report says which server.
    assert (got.db_version, got.db_updated_at) == ("2", catalog.STANDARD_DB_UPDATED_AT)
    assert not (tmp_path / "client-cache" / "db" / "trivy.db").exists()
    assert got.extra["trivy_server"] == trivy_server.url
    assert "trivy_server" not in expected.extra


def test_vulnerable_alpine_through_the_server_has_the_catalog_findings(
    trivy_bin: str, trivy_server: TrivyServerProcess, tmp_path: Path
) -> None:
    result = client(trivy_bin, tmp_path, of(trivy_server)).scan(
        archive(catalog.vulnerable_alpine(), tmp_path), TIMEOUT
    )
    found = {
        catalog.ExpectedFinding(
            f.vulnerability_id, f.package, f.installed_version, f.fixed_version, f.scanner_severity
        )
        for f in result.findings
    }
    assert found == set(catalog.VULNERABLE_ALPINE_EXPECTED)


@pytest.mark.registry
def test_registry_image_through_the_server(
    trivy_bin: str, trivy_server: TrivyServerProcess, registry: Registry, tmp_path: Path
) -> None:
    image = catalog.vulnerable_alpine()
    digest = push_image(registry.host, "srv/app", "1", image)
    target = ScanTarget(TargetKind.REGISTRY, f"{registry.host}/srv/app@{digest}", insecure=True)
    result = client(trivy_bin, tmp_path, of(trivy_server)).scan(target, TIMEOUT)
    assert {f.vulnerability_id for f in result.findings} == {
        e.vulnerability_id for e in catalog.VULNERABLE_ALPINE_EXPECTED
    }
    assert result.repo_digests == (f"{registry.host}/srv/app@{digest}",)


def _recording_trivy(tmp_path: Path, trivy_bin: str) -> tuple[str, Path]:
    """A `trivy` wrapper that records each run's argv and its TRIVY_TOKEN*, then runs the real binary."""
    record = tmp_path / "runs.jsonl"
    script = tmp_path / "recording-trivy"
    script.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$*" >> "{record}.argv"\n'
        f'printf "token=%s header=%s\\n" "$TRIVY_TOKEN" "$TRIVY_TOKEN_HEADER" >> "{record}.env"\n'
        f'exec "{trivy_bin}" "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script), record


def test_token_travels_in_the_environment_never_in_argv(
    trivy_bin: str, trivy_server: TrivyServerProcess, tmp_path: Path
) -> None:
    wrapper, record = _recording_trivy(tmp_path, trivy_bin)
    result = client(wrapper, tmp_path, of(trivy_server)).scan(
        archive(catalog.vulnerable_alpine(), tmp_path), TIMEOUT
    )
    assert result.findings  # the server accepted the token, so it did arrive
    argv_lines = Path(f"{record}.argv").read_text().splitlines()
    scans = [line for line in argv_lines if line.startswith("image ")]
    assert len(scans) == 1
    assert f"--server {trivy_server.url}" in scans[0]
    assert all(trivy_server.token not in line for line in argv_lines)
    assert "--token" not in scans[0]
    assert f"token={trivy_server.token} header=" in Path(f"{record}.env").read_text().splitlines()


def test_wrong_token_fails_naming_the_server_and_authentication(
    trivy_bin: str, trivy_server: TrivyServerProcess, tmp_path: Path
) -> None:
    wrong = "not-" + trivy_server.token
    with pytest.raises(ScannerUnavailable) as caught:
        client(trivy_bin, tmp_path, of(trivy_server, token=wrong)).scan(
            archive(catalog.vulnerable_alpine(), tmp_path), TIMEOUT
        )
    message = str(caught.value)
    assert caught.value.message.startswith(f"trivy server {trivy_server.url} refused the token")
    assert "authentication failed" in message
    assert "twirp error unauthenticated" in message  # trivy's own words are kept
    assert wrong not in message and trivy_server.token not in message


def test_no_token_against_a_token_server_says_none_is_configured(
    trivy_bin: str, trivy_server: TrivyServerProcess, tmp_path: Path
) -> None:
    with pytest.raises(ScannerUnavailable, match="requires a token and none is configured"):
        client(trivy_bin, tmp_path, TrivyServer(trivy_server.url)).scan(
            archive(catalog.vulnerable_alpine(), tmp_path), TIMEOUT
        )


def test_custom_token_header(trivy_bin: str, trivy_db_template: Path, tmp_path: Path) -> None:
    cache = tmp_path / "server-cache"
    (cache / "db").mkdir(parents=True)
    for name in ("trivy.db", "metadata.json"):
        (cache / "db" / name).write_bytes((trivy_db_template / "db" / name).read_bytes())
    target = archive(catalog.vulnerable_alpine(), tmp_path)
    with running_trivy_server(
        trivy_bin, cache, tmp_path / "server.log", token="hdr-secret", token_header="X-Scan-Key"
    ) as server:
        good = client(trivy_bin, tmp_path, of(server)).scan(target, TIMEOUT)
        assert good.findings
        # The same token under Trivy's default header is not what this server looks at.
        with pytest.raises(ScannerUnavailable, match="authentication failed"):
            client(trivy_bin, tmp_path, of(server, token_header="")).scan(target, TIMEOUT)


def test_server_down_fails_fast_and_names_the_cause(trivy_bin: str, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(ScannerUnavailable) as caught:
        client(trivy_bin, tmp_path, TrivyServer(url, "t")).scan(
            archive(catalog.vulnerable_alpine(), tmp_path), TIMEOUT
        )
    assert str(caught.value) == f"trivy server {url} is unreachable (connection refused)"


def test_server_stopped_after_start_is_unreachable(
    trivy_bin: str, trivy_server: TrivyServerProcess, tmp_path: Path
) -> None:
    scanner = client(trivy_bin, tmp_path, of(trivy_server))
    target = archive(catalog.vulnerable_alpine(), tmp_path)
    assert scanner.scan(target, TIMEOUT).findings
    trivy_server.stop()
    with pytest.raises(ScannerUnavailable, match="is unreachable \\(connection refused\\)"):
        scanner.scan(target, TIMEOUT)
    # The rescan scheduler's probe does not raise: it just has no answer this tick.
    assert scanner.current_db() == ("", None)


def test_a_server_without_a_db_does_not_start_and_scans_then_fail_clearly(
    trivy_bin: str, tmp_path: Path
) -> None:
    empty = tmp_path / "empty-cache"
    empty.mkdir()
    port = free_port()
    with pytest.raises(TrivyServerStartError) as caught:
        start_trivy_server(trivy_bin, empty, tmp_path / "server.log", token="t", port=port)
    # Trivy refuses to serve without a DB rather than answering scans with nothing.
    assert "--skip-db-update cannot be specified on the first run" in str(caught.value)
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(ScannerUnavailable, match="is unreachable"):
        client(trivy_bin, tmp_path, TrivyServer(url, "t")).scan(
            archive(catalog.vulnerable_alpine(), tmp_path), TIMEOUT
        )


def test_something_that_is_not_a_trivy_server_is_refused(trivy_bin: str, tmp_path: Path) -> None:
    # A gate gRPC server is an HTTP/2-only listener: certainly not a Trivy server.
    settings = make_settings(tmp_path, trivy_bin, tmp_path / "unused-cache")
    with running_gate(settings) as gate:
        url = f"http://{gate.address}"
        with pytest.raises(ScannerUnavailable) as caught:
            client(trivy_bin, tmp_path, TrivyServer(url, "t")).scan(
                archive(catalog.vulnerable_alpine(), tmp_path), TIMEOUT
            )
    assert str(caught.value) == (
        f"trivy server {url} did not answer GET /version like an HTTP server: is it a trivy server?"
    )


def test_an_http_server_without_version_is_refused(trivy_bin: str, tmp_path: Path) -> None:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/nothing-here"
        with pytest.raises(ScannerUnavailable) as caught:
            client(trivy_bin, tmp_path, TrivyServer(url, "t")).scan(
                archive(catalog.vulnerable_alpine(), tmp_path), TIMEOUT
            )
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert (
        str(caught.value) == f"trivy server {url} answered GET /version with HTTP 404; is it a trivy server?"
    )


def test_db_metadata_follows_the_servers_db(
    trivy_bin: str, trivy_server: TrivyServerProcess, tmp_path: Path
) -> None:
    scanner = client(trivy_bin, tmp_path, of(trivy_server))
    assert scanner.current_db() == ("2", catalog.STANDARD_DB_UPDATED_AT)
    # A DB refresh on the server rewrites its metadata.json, which /version reads on every request.
    # (Only the metadata changes here: the server keeps matching with the DB it opened, which is the
    # same advisories, so the findings stay as they were.)
    newer = datetime(2025, 7, 1, 6, 0, tzinfo=UTC)
    meta_path = trivy_server.cache_dir / "db" / "metadata.json"
    meta = json.loads(meta_path.read_text())
    meta["UpdatedAt"] = newer.strftime("%Y-%m-%dT%H:%M:%SZ")
    meta_path.write_text(json.dumps(meta))
    assert scanner.current_db() == ("2", newer)
    result = scanner.scan(archive(catalog.vulnerable_alpine(), tmp_path), TIMEOUT)
    assert (result.db_version, result.db_updated_at) == ("2", newer)


# ---- through a real gate gRPC server --------------------------------------------------------------


def _server_settings(tmp_path: Path, trivy_bin: str, server: TrivyServerProcess) -> Settings:
    # GATE_TRIVY_SERVER etc. as Settings.from_env would produce them; the client cache stays empty.
    env = {
        "GATE_TRIVY_SERVER": server.url,
        "GATE_TRIVY_SERVER_TOKEN": server.token,
    }
    from_env = Settings.from_env(env)
    return make_settings(
        tmp_path,
        trivy_bin,
        tmp_path / "gate-trivy-client-cache",
        trivy_server=from_env.trivy_server,
        trivy_server_token=from_env.trivy_server_token,
    )


def test_gate_scans_through_the_server_end_to_end(
    trivy_bin: str, trivy_server: TrivyServerProcess, tmp_path: Path
) -> None:
    ref = "docker-archive:" + str(write_docker_archive(catalog.vulnerable_alpine(), tmp_path / "app.tar"))
    with running_gate(_server_settings(tmp_path, trivy_bin, trivy_server)) as gate:
        api = stub(gate.address)
        job = wait_terminal(api, api.SubmitScan(pb.SubmitScanRequest(image=ref)).jobs[0].id)
        assert job.state == pb.SUCCEEDED, job.error
        assert job.db_version == "2"
        report = api.GetImageReport(pb.GetImageReportRequest(image=ref))
        (scan,) = [s for s in report.scans if s.scanner == "trivy" and s.state == pb.SUCCEEDED]
        assert scan.db_updated_at.ToDatetime(tzinfo=UTC) == catalog.STANDARD_DB_UPDATED_AT
        assert report.finding_count == len(catalog.VULNERABLE_ALPINE_EXPECTED)
        decision = api.CheckPromotion(pb.CheckPromotionRequest(image=ref, from_stage="s2", to_stage="p"))
        assert decision.state == pb.EVALUATED and not decision.allowed
        assert catalog.CVE_OPENSSL_CRITICAL in {v.vulnerability_id for v in decision.violations}


def test_gate_job_fails_with_the_authentication_reason(
    trivy_bin: str, trivy_server: TrivyServerProcess, tmp_path: Path
) -> None:
    ref = "docker-archive:" + str(write_docker_archive(catalog.vulnerable_alpine(), tmp_path / "app.tar"))
    settings = replace(_server_settings(tmp_path, trivy_bin, trivy_server), trivy_server_token="wrong-token")
    with running_gate(settings) as gate:
        api = stub(gate.address)
        job = wait_terminal(api, api.SubmitScan(pb.SubmitScanRequest(image=ref)).jobs[0].id)
    assert job.state == pb.FAILED_JOB
    assert f"trivy server {trivy_server.url} refused the token (authentication failed)" in job.error
    assert "wrong-token" not in job.error
