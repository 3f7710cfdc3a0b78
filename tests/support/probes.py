"""Probes for the real tools integration tests need, and the skip-or-fail rule.

Outside CI a missing tool skips the test with the reason; with GATE_REQUIRE_INTEGRATION=1 (set by .ci/run)
it fails instead, so a machine without the tool can never pass CI silently.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def integration_required() -> bool:
    """True under CI, where a missing integration tool is a failure."""
    return os.environ.get("GATE_REQUIRE_INTEGRATION", "") not in ("", "0", "false")


def missing(tool: str, why: str) -> NoReturn:
    """Skip (locally) or fail (under CI) because `tool` is not usable; never returns."""
    message = f"{tool} unavailable: {why}"
    if integration_required():
        pytest.fail(message + " (GATE_REQUIRE_INTEGRATION=1: integration tests may not skip)")
    pytest.skip(message)
