"""End to end: authentication and roles on a real server, driven by the real CLI in subprocesses.

Tokens are created with `gate tokens create` against the database while no server runs; with
GATE_AUTH_REQUIRED=true a call without a token exits 4 (UNAUTHENTICATED), a wrong role exits 4
(PERMISSION_DENIED), a ci token scans and checks, a security token adds exceptions (approved by another
principal) but cannot scan, the audit log records principals rather than claimed actors, breakglass
needs the breakglass role, and a revoked token stops working at once. Over TLS: a client certificate's
CN becomes the principal, a client without a certificate is refused, and a TLS-only server is reached
with --tls-ca. A server listening beyond loopback turns authentication on by itself.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest

from gate.config import Settings
from gate.server.app import create_server
from gate.v1 import gate_pb2 as pb
from gate.v1 import gate_pb2_grpc as pb_grpc
from tests.support import catalog
from tests.support.gateserver import make_settings, run_cli, running_gate, settings_env
from tests.support.images import write_docker_archive
from tests.support.tls import make_client_cert, make_pki

pytestmark = pytest.mark.trivy

UNKNOWN_DIGEST = "sha256:" + "cd" * 32


@pytest.fixture
def settings(tmp_path: Path, trivy_bin: str, trivy_cache: Path) -> Settings:
    return make_settings(tmp_path, trivy_bin, trivy_cache, auth_required=True)


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: the server's database, no inherited credentials."""
    env = settings_env(settings)
    env.update(extra)
    return env


def create_token(settings: Settings, name: str, *roles: str) -> str:
    """`gate tokens create` in a subprocess, with no server anywhere: the token is stdout's last word."""
    args = ["tokens", "create", "--name", name, *(x for r in roles for x in ("--role", r))]
    out = run_cli(args, "127.0.0.1:1", _env(settings))
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout.split()[-1]


def cli(args: list[str], address: str, settings: Settings, token: str = "", **extra: str) -> tuple[int, str]:
    env = _env(settings, **extra)
    if token:
        env["GATE_TOKEN"] = token
    out = run_cli(args, address, env)
    return out.returncode, out.stdout + out.stderr


def test_tokens_and_roles(settings: Settings, tmp_path: Path) -> None:
    ci = create_token(settings, "ci", "ci")
    security = create_token(settings, "security", "security")
    oncall = create_token(settings, "oncall", "ci,breakglass")
    assert ci.startswith("gate_") and len({ci, security, oncall}) == 3

    listed = run_cli(["tokens", "list", "--json"], "127.0.0.1:1", _env(settings))
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)["tokens"]}
    assert rows["oncall"]["roles"] == ["breakglass", "ci"] and rows["ci"]["state"] == "active"
    assert ci not in listed.stdout and security not in listed.stdout  # never shown again

    image = write_docker_archive(
        catalog.vulnerable_alpine(), tmp_path / "app.tar", "registry.example/s2/auth-app:20200102_01"
    )
    ref = f"docker-archive:{image}"
    with running_gate(settings) as gate:
        address = gate.address
        code, text = cli(["check", ref, "--from", "s2", "--to", "p"], address, settings)
        assert code == 4 and "UNAUTHENTICATED" in text, text
        code, text = cli(["check", ref, "--from", "s2", "--to", "p"], address, settings, token="gate_forged")
        assert code == 4 and "UNAUTHENTICATED" in text, text

        # ci scans and checks; the claimed --actor is ignored in favour of the principal.
        code, text = cli(["scan", ref, "--wait"], address, settings, token=ci)
        assert code == 0, text
        code, text = cli(
            ["check", ref, "--from", "s2", "--to", "p", "--json", "--actor", "security-lead"],
            address,
            settings,
            token=ci,
        )
        assert code == 1, text  # denied: a successful answer
        digest = json.loads(text[: text.rindex("}") + 1])["digest"]
        code, text = cli(["audit", "list"], address, settings, token=ci)
        assert code == 4 and "PERMISSION_DENIED" in text and "token:ci" in text, text

        # security reads the audit log (principals, not claims) and adds exceptions, but cannot scan.
        code, text = cli(["audit", "list", "--json"], address, settings, token=security)
        assert code == 0, text
        actors = {r.get("actor") for r in json.loads(text)["records"]}
        assert "token:ci" in actors and "security-lead" not in actors, actors
        code, text = cli(["scan", ref], address, settings, token=security)
        assert code == 4 and "PERMISSION_DENIED" in text, text
        expires = (datetime.now(UTC) + timedelta(days=10)).date().isoformat()
        add = ["exceptions", "add", catalog.CVE_OPENSSL_CRITICAL, "--scope", f"digest:{digest}"]
        add += ["--expires", expires, "--reason", "r", "--ticket", "SEC-1", "--owner", "team-a"]
        code, text = cli([*add, "--approver", "token:security"], address, settings, token=security)
        assert code == 2 and "cannot also approve" in text, text
        code, text = cli([*add, "--approver", "bob", "--actor", "bob"], address, settings, token=security)
        assert code == 0, text

        # Breakglass needs the role; GATE_BREAKGLASS_ACTORS plays no part with auth on.
        glass = ["check", ref, "--from", "s2", "--to", "p", "--breakglass", "prod is down"]
        code, text = cli(glass, address, settings, token=ci)
        assert code == 4 and "breakglass role" in text, text
        code, text = cli(glass, address, settings, token=oncall)
        assert code == 0, text

        # Revocation works against the database at once, without a restart.
        revoked = run_cli(["tokens", "revoke", "ci"], "127.0.0.1:1", _env(settings))
        assert revoked.returncode == 0, revoked.stderr
        code, text = cli(["check", ref, "--from", "s2", "--to", "p"], address, settings, token=ci)
        assert code == 4 and "UNAUTHENTICATED" in text, text

        # Health stays open.
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        with grpc.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_mtls_client_certificate_is_the_principal(settings: Settings, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    runner = make_client_cert(pki, "ci-runner")
    stranger = make_client_cert(pki, "laptop")
    mtls = replace(
        settings,
        tls_cert=str(pki.cert_file),
        tls_key=str(pki.key_file),
        tls_client_ca=str(pki.ca_file),
        cert_roles=(("ci-runner", ("ci",)),),
    )
    check = ["check", f"registry.example/s2/x@{UNKNOWN_DIGEST}", "--from", "s2", "--to", "p", "--json"]
    with running_gate(mtls) as gate:
        tls = {"GATE_TLS_CA": str(pki.ca_file)}
        as_runner = {
            **tls,
            "GATE_CLIENT_CERT": str(runner.cert_file),
            "GATE_CLIENT_KEY": str(runner.key_file),
        }
        code, text = cli(check, gate.address, settings, **as_runner)
        assert code == 1 and '"NOT_SCANNED"' in text, text  # an answer: never scanned, denied
        code, text = cli(["audit", "list"], gate.address, settings, **as_runner)
        assert code == 4 and "cert:ci-runner (roles: ci)" in text, text
        # The same options on the command line.
        flags = ["--tls-ca", str(pki.ca_file), "--tls-cert", str(stranger.cert_file)]
        code, text = cli([*check, *flags, "--tls-key", str(stranger.key_file)], gate.address, settings)
        assert code == 4 and "cert:laptop (roles: none)" in text, text
        # No client certificate: the TLS handshake itself is refused.
        code, text = cli(check, gate.address, settings, **tls)
        assert code == 3, text
        # Plain text to a TLS server fails too.
        code, text = cli(check, gate.address, settings)
        assert code == 3, text


def test_tls_server_without_client_certificates(settings: Settings, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    tls_only = replace(settings, tls_cert=str(pki.cert_file), tls_key=str(pki.key_file))
    admin = create_token(settings, "root", "admin")
    check = ["check", f"registry.example/s2/x@{UNKNOWN_DIGEST}", "--from", "s2", "--to", "p"]
    with running_gate(tls_only) as gate:
        code, text = cli([*check, "--tls-ca", str(pki.ca_file)], gate.address, settings, token=admin)
        assert code == 1 and "NOT_SCANNED" in text, text
        code, text = cli([*check, "--tls-ca", str(pki.ca_file)], gate.address, settings)
        assert code == 4 and "UNAUTHENTICATED" in text, text
        code, text = cli(check, gate.address, settings, token=admin)  # plain text to TLS
        assert code == 3, text


def test_auth_is_on_by_default_beyond_loopback(tmp_path: Path, trivy_bin: str, trivy_cache: Path) -> None:
    open_settings = make_settings(tmp_path, trivy_bin, trivy_cache)
    assert open_settings.auth_required is None
    gate = create_server(open_settings, "0.0.0.0:0")
    try:
        with grpc.insecure_channel(f"127.0.0.1:{gate.port}") as channel:
            with pytest.raises(grpc.RpcError) as caught:
                pb_grpc.GateStub(channel).GetScan(pb.GetScanRequest(id="x"), timeout=10)
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        gate.stop(grace=1.0)
    # On loopback it stays off, which is what every other test relies on.
    with running_gate(open_settings) as local, grpc.insecure_channel(local.address) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            pb_grpc.GateStub(channel).GetScan(pb.GetScanRequest(id="x"), timeout=10)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
