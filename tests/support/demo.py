"""`make demo`: the whole story, offline, on a fresh machine.

Builds a vulnerable and a clean image plus an offline Trivy vulnerability DB (with the same builders the
test suite uses), starts a real gate server, scans both images with real trivy, asks whether each may
move from s2 to p, shows the denial with its reasons and the approval, and stops the server.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from gate.config import Settings
from tests.support import catalog
from tests.support.gateserver import REPO_ROOT, settings_env, start_gate_process
from tests.support.images import write_docker_archive
from tests.support.trivydb import build_trivy_cache


def _say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def _gate(args: list[str], server: str, env: dict[str, str]) -> int:
    shown = " ".join(["gate", *args]).replace(str(REPO_ROOT) + "/", "")
    print(f"$ {shown}", flush=True)
    env = {**env, "GATE_SERVER": server}
    done = subprocess.run([sys.executable, "-m", "gate", *args], env=env, check=False, cwd=REPO_ROOT)
    print(f"(exit code {done.returncode})", flush=True)
    return done.returncode


def main() -> int:
    """Run the demo; return 0 when every step behaved as the story says."""
    work = Path(tempfile.mkdtemp(prefix="gate-demo-"))
    try:
        _say("1. An offline vulnerability DB and two images, built locally (no internet needed)")
        cache = work / "trivy-cache"
        build_trivy_cache(cache, catalog.standard_advisories(), datetime.now(UTC))
        vulnerable = write_docker_archive(
            catalog.vulnerable_alpine(),
            work / "payments-vulnerable.tar",
            "registry.example/s2/payments:20261122_01",
        )
        clean = write_docker_archive(
            catalog.clean_alpine(), work / "payments-clean.tar", "registry.example/s2/payments:20261122_02"
        )
        print(f"vulnerability DB: {cache}/db/trivy.db ({len(catalog.standard_advisories())} advisories)")
        print(f"images: {vulnerable.name}, {clean.name}")

        _say("2. Start the gate server (SQLite, real trivy, offline DB)")
        settings = Settings(
            data_dir=work / "var",
            database_url=f"sqlite:///{work / 'gate.db'}",
            trivy_cache_dir=str(cache),
            trivy_skip_db_update=True,
        )
        server = start_gate_process(settings, work / "server.log")
        env = settings_env(settings)
        print(f"gate listening on {server.address}")
        try:
            ok = True
            _say("3. CI scans both images")
            ok &= _gate(["scan", f"docker-archive:{vulnerable}", "--wait"], server.address, env) == 0
            ok &= _gate(["scan", f"docker-archive:{clean}", "--wait"], server.address, env) == 0

            _say("4. May the vulnerable image move from s2 (pre-production) to p (production)?")
            ok &= (
                _gate(
                    ["check", f"docker-archive:{vulnerable}", "--from", "s2", "--to", "p"],
                    server.address,
                    env,
                )
                == 1
            )

            _say("5. May the clean image?")
            ok &= (
                _gate(["check", f"docker-archive:{clean}", "--from", "s2", "--to", "p"], server.address, env)
                == 0
            )

            _say("6. The security team asks: which images carry the critical OpenSSL CVE?")
            ok &= _gate(["affected", catalog.CVE_OPENSSL_CRITICAL], server.address, env) == 0
        finally:
            _say("7. Stop the server")
            server.terminate()
            print("stopped")
        print(
            "\ndemo "
            + ("completed: the vulnerable image was denied, the clean one allowed" if ok else "FAILED")
        )
        return 0 if ok else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
