"""Pytest fixture for a private, real Docker engine (Debian dockerd, vfs, no network) for the session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.dockerd import DOCKERD_BIN, Dockerd, DockerdError, start_dockerd
from tests.support.probes import missing


@pytest.fixture(scope="session")
def dockerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dockerd]:
    """A private dockerd on a unix socket under a tmp dir (`.host`, `.client`), stopped at session end.

    Tests share it, so each should load or pull images under its own names.
    """
    if not (Path(DOCKERD_BIN).is_file() and os.access(DOCKERD_BIN, os.X_OK)):
        missing("dockerd", f"{DOCKERD_BIN} not installed (apt-get install docker.io)")
    if os.geteuid() != 0:
        missing("dockerd", "dockerd needs root to run (it mounts and owns /run/docker)")
    try:
        running = start_dockerd(tmp_path_factory.mktemp("dockerd"))
    except (OSError, DockerdError) as error:
        missing("dockerd", f"could not start {DOCKERD_BIN}: {error}")
    try:
        yield running
    finally:
        running.stop()
