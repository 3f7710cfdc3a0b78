"""`make demo`: the whole story, offline, on a fresh machine.

Builds an offline Trivy vulnerability DB and a small image world with the same builders the test suite
uses — a prod-osbase, a runtime on it, a well-built app on the runtime, and an app on a vulnerable
dev-osbase — starts a real gate server, lets the security team catalogue the bases, lets CI scan both apps
with real trivy, asks whether each may move from s2 to p (denied with reasons; allowed), shows the
lineage, asks which images carry a CVE, then deprecates the prod-osbase and shows the rebuild list and
the new denial. When the Debian docker-registry is installed, a Clair double (tests/support/clair_double.py,
Clair v4's API) scans an image pushed there beside Trivy, and the report shows both scanners' findings
side by side with their disagreements. Finally it stops the server. Exit 0 only if every step answered as
the story says.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from gate.config import Settings
from tests.support import catalog, lineage
from tests.support.clair_double import ClairDouble, standard_clair_advisories
from tests.support.gateserver import REPO_ROOT, settings_env, start_gate_process
from tests.support.images import BuiltImage, push_image, write_docker_archive
from tests.support.registry import REGISTRY_BIN, Registry, RegistryError, start_registry
from tests.support.trivydb import build_trivy_cache

REGISTRY = "registry.example"
OSBASE = "osbase 20200102_01"  # the tier is shown beside the name, so the name need not repeat it
OSBASE_NEXT = "osbase 20200115_02"


def _say(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def _gate(args: list[str], server: str, env: dict[str, str], expect: int) -> bool:
    shown = " ".join(["gate", *args]).replace(str(REPO_ROOT) + "/", "")
    print(f"$ {shown}", flush=True)
    done = subprocess.run(
        [sys.executable, "-m", "gate", *args], env={**env, "GATE_SERVER": server}, check=False, cwd=REPO_ROOT
    )
    verdict = "as expected" if done.returncode == expect else f"UNEXPECTED, wanted {expect}"
    print(f"(exit code {done.returncode}: {verdict})", flush=True)
    return done.returncode == expect


def _archive(image: BuiltImage, work: Path, file: str, name: str) -> str:
    # `docker save NAME` records NAME in the archive: gate reads the repository (and stage) from it.
    return f"docker-archive:{write_docker_archive(image, work / file, name)}"


def _start_registry(work: Path) -> Registry | None:
    """The Debian docker-registry on 127.0.0.1, or None (with the reason printed) when it cannot run."""
    if not Path(REGISTRY_BIN).is_file():
        return None
    try:
        (work / "registry").mkdir()
        return start_registry(work / "registry")
    except (OSError, RegistryError) as error:
        print(f"(no registry for the Clair chapter: {error})")
        return None


def main() -> int:
    """Run the demo; return 0 when every step behaved as the story says."""
    work = Path(tempfile.mkdtemp(prefix="gate-demo-"))
    registry: Registry | None = None
    clair: ClairDouble | None = None
    try:
        _say("1. An offline vulnerability DB and an image world, built locally (no internet needed)")
        cache = work / "trivy-cache"
        build_trivy_cache(cache, catalog.standard_advisories(), datetime.now(UTC))
        osbase = _archive(
            lineage.prod_osbase(), work, "osbase.tar", f"{REGISTRY}/bases/prod-osbase:20200102_01"
        )
        osbase_next = _archive(
            lineage.prod_osbase_next(), work, "osbase-next.tar", f"{REGISTRY}/bases/prod-osbase:20200115_02"
        )
        runtime = _archive(lineage.runtime(), work, "runtime.tar", f"{REGISTRY}/bases/runtime:20200103_01")
        devbase = _archive(
            lineage.dev_osbase(), work, "devbase.tar", f"{REGISTRY}/bases/dev-osbase:20200101_01"
        )
        good = _archive(lineage.app(), work, "payments.tar", f"{REGISTRY}/s2/payments:20261122_01")
        bad = _archive(lineage.app_on_dev_osbase(), work, "ledger.tar", f"{REGISTRY}/s2/ledger:20261122_01")
        print(f"vulnerability DB: {cache}/db/trivy.db ({len(catalog.standard_advisories())} advisories)")
        print("images: prod-osbase → runtime → payments (app);  dev-osbase → ledger (app)")

        # Clair fetches layers from a registry itself, so its chapter needs a real one.
        registry = _start_registry(work)
        clair = ClairDouble(standard_clair_advisories(), psk=b"demo-clair-psk") if registry else None

        _say("2. Start the gate server (SQLite, real trivy, offline DB" + (", Clair)" if clair else ")"))
        settings = Settings(
            data_dir=work / "var",
            database_url=f"sqlite:///{work / 'gate.db'}",
            trivy_cache_dir=str(cache),
            trivy_skip_db_update=True,
            insecure_registries=(registry.host,) if registry else (),
            clair_url=clair.url if clair else "",
            clair_psk=clair.psk_b64 if clair else "",
        )
        server = start_gate_process(settings, work / "server.log")
        env = settings_env(settings)
        addr = server.address
        print(f"gate listening on {addr}")
        ok = True
        try:
            _say("3. The security team catalogues the bases (identified by their layer chains, not tags)")
            for ref, tier, name in (
                (osbase, "prod-osbase", OSBASE),
                (runtime, "runtime", "runtime 3.12"),
                (devbase, "dev-osbase", "devbase 20200101_01"),
            ):
                ok &= _gate(["bases", "add", ref, "--tier", tier, "--name", name], addr, env, 0)

            _say("4. CI scans both apps with real trivy")
            ok &= _gate(["scan", good, "--wait"], addr, env, 0)
            ok &= _gate(["scan", bad, "--wait"], addr, env, 0)

            _say("5. May ledger (built on dev-osbase) move from s2 (pre-production) to p (production)?")
            ok &= _gate(["check", bad, "--from", "s2", "--to", "p"], addr, env, 1)

            _say("6. May payments (app → runtime → prod-osbase, non-root, clean)?")
            ok &= _gate(["check", good, "--from", "s2", "--to", "p"], addr, env, 0)
            ok &= _gate(["report", good], addr, env, 0)

            _say("7. The security team asks: which images carry the critical OpenSSL CVE?")
            ok &= _gate(["affected", catalog.CVE_OPENSSL_CRITICAL], addr, env, 0)

            _say("8. prod-osbase is updated: everything built on it must be rebuilt")
            ok &= _gate(
                ["bases", "add", osbase_next, "--tier", "prod-osbase", "--name", OSBASE_NEXT],
                addr, env, 0,
            )  # fmt: skip
            ok &= _gate(
                ["bases", "deprecate", OSBASE, "--superseded-by", OSBASE_NEXT,
                 "--grace", "0"],
                addr, env, 0,
            )  # fmt: skip
            ok &= _gate(["rebuild-list", "--stage", "s2"], addr, env, 0)
            ok &= _gate(["check", good, "--from", "s2", "--to", "p"], addr, env, 1)

            _say("9. A second opinion: Clair (v4 API) beside Trivy on an image in a registry")
            if registry is None or clair is None:
                print(f"skipped: Clair fetches layers from a registry, and {REGISTRY_BIN} is not installed")
            else:
                ref = f"{registry.host}/s2/billing:20261122_01"
                push_image(registry.host, "s2/billing", "20261122_01", catalog.vulnerable_alpine())
                print(f"pushed {ref} to a local registry; Clair will download its layers from there")
                ok &= _gate(["scan", ref, "--scanners", "trivy,clair", "--wait"], addr, env, 0)
                ok &= _gate(["report", ref], addr, env, 0)
                ok &= _gate(["check", ref, "--from", "s2", "--to", "p"], addr, env, 1)
        finally:
            _say("10. Stop the server")
            server.terminate()
            print("stopped")
        print(
            "\ndemo "
            + ("completed: every answer was the expected one" if ok else "FAILED: see UNEXPECTED above")
        )
        return 0 if ok else 1
    finally:
        if clair is not None:
            clair.stop()
        if registry is not None:
            registry.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
