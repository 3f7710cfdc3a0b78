"""Fuzzing the parsers of outside input: image references, policy YAML, Trivy and Clair reports.

Whatever the input, each raises only its documented error (InvalidArgument / PolicyError /
ScanParseError) — never a KeyError, TypeError or the like that would surface as INTERNAL.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from gate.errors import InvalidArgument
from gate.images.refs import parse_ref
from gate.policy.loader import load_policy
from scanners.clair import ClairScanner
from scanners.interface import ScanParseError
from scanners.trivy import TrivyScanner
from tests.unit.fuzzing import FUZZ, json_values, mutated

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEFAULTS = Path(__file__).resolve().parents[2] / "gate" / "policy" / "defaults.yaml"

ref_alphabet = st.sampled_from(
    [*"abcAZ09-_.:/@+ %\x00\u00e9", "sha256:", "docker:", "docker-archive:", "oci:"]
)
ref_texts = st.text(max_size=80) | st.lists(ref_alphabet, max_size=30).map("".join)


@FUZZ
@given(ref_texts)
def test_parse_ref_raises_only_invalid_argument(text: str) -> None:
    try:
        ref = parse_ref(text, "image")
    except InvalidArgument as e:
        assert e.field == "image"
    else:
        assert ref.kind is not None


def _policy_doc() -> Any:
    return yaml.safe_load(DEFAULTS.read_text())


@FUZZ
@given(st.text(max_size=200) | mutated(_policy_doc()).map(lambda d: yaml.safe_dump(d, allow_unicode=True)))
def test_policy_loader_raises_only_invalid_argument(text: str) -> None:
    with contextlib.suppress(InvalidArgument):  # the one error allowed; anything else fails the test
        load_policy(text, "fuzz.yaml")


def _report_inputs(asset: Path) -> st.SearchStrategy[bytes]:
    doc = json.loads(asset.read_text())
    return (
        st.binary(max_size=200)
        | json_values.map(lambda v: json.dumps(v).encode())
        | mutated(doc, rounds=4).map(lambda v: json.dumps(v).encode())
    )


TRIVY = TrivyScanner("trivy", "/nonexistent")


@FUZZ
@given(_report_inputs(ASSETS / "trivy" / "statuses.json"))
def test_trivy_parse_report_raises_only_scan_parse_error(data: bytes) -> None:
    with contextlib.suppress(ScanParseError):  # the one error allowed; anything else fails the test
        TRIVY.parse_report(data)


def _clair_asset() -> Path:
    candidates = sorted((ASSETS / "clair").glob("*.json"))
    if not candidates:
        pytest.skip("no Clair report asset")
    return max(candidates, key=lambda p: p.stat().st_size)


CLAIR = ClairScanner("http://127.0.0.1:1", "", "gate", 5.0)


@FUZZ
@given(_report_inputs(_clair_asset()))
def test_clair_parse_report_raises_only_scan_parse_error(data: bytes) -> None:
    with contextlib.suppress(ScanParseError):  # the one error allowed; anything else fails the test
        CLAIR.parse_report(data)
