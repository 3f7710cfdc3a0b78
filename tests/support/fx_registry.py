"""Pytest fixture for a real OCI registry (Debian docker-registry) shared by the whole session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.probes import missing
from tests.support.registry import REGISTRY_BIN, Registry, RegistryError, start_registry


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A plain-http registry on 127.0.0.1 (in-memory storage), stopped at session end.

    Tests share it, so each should push to its own repository name.
    """
    if not (Path(REGISTRY_BIN).is_file() and os.access(REGISTRY_BIN, os.X_OK)):
        missing("registry", f"{REGISTRY_BIN} not installed (apt-get install docker-registry)")
    try:
        running = start_registry(tmp_path_factory.mktemp("registry"))
    except (OSError, RegistryError) as error:
        missing("registry", f"could not start {REGISTRY_BIN}: {error}")
    try:
        yield running
    finally:
        running.stop()
