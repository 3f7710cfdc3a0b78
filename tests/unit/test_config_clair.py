"""Settings for Clair and its notifier: GATE_CLAIR_* and GATE_NOTIFIER_LISTEN, with start-up errors."""

from __future__ import annotations

import pytest

from gate.config import Settings
from gate.errors import InvalidArgument
from gate.server.app import build_scanners
from scanners.clair import ClairScanner

PSK = "c2VjcmV0LWtleQ=="  # base64("secret-key")


def test_clair_is_off_by_default() -> None:
    s = Settings.from_env({})
    assert (s.clair_url, s.clair_psk, s.clair_issuer, s.clair_timeout, s.notifier_listen) == (
        "",
        "",
        "gate",
        300.0,
        "",
    )
    assert s.available_scanners == ("trivy",)


def test_clair_url_makes_clair_available_per_request_but_not_a_default() -> None:
    s = Settings.from_env({"GATE_CLAIR_URL": "http://clair:6060", "GATE_CLAIR_PSK": PSK})
    assert s.scanners == ("trivy",)
    assert s.available_scanners == ("trivy", "clair")
    scanners = build_scanners(s)
    clair = scanners["clair"]
    assert isinstance(clair, ClairScanner) and clair.url == "http://clair:6060" and clair.issuer == "gate"
    assert "secret-key" not in repr(s) and PSK not in repr(s) and PSK not in repr(clair)


def test_clair_as_a_default_scanner_and_its_knobs() -> None:
    s = Settings.from_env(
        {
            "GATE_SCANNERS": "trivy,clair",
            "GATE_CLAIR_URL": "https://clair.internal",
            "GATE_CLAIR_ISSUER": "ci-gate",
            "GATE_CLAIR_TIMEOUT": "45",
            "GATE_NOTIFIER_LISTEN": "127.0.0.1:0",
        }
    )
    assert s.scanners == s.available_scanners == ("trivy", "clair")
    assert (s.clair_issuer, s.clair_timeout, s.notifier_listen) == ("ci-gate", 45.0, "127.0.0.1:0")


@pytest.mark.parametrize(
    ("env", "field", "words"),
    [
        ({"GATE_SCANNERS": "trivy,clair"}, "GATE_SCANNERS", "GATE_CLAIR_URL"),
        (
            {"GATE_CLAIR_URL": "http://c", "GATE_CLAIR_PSK": "not base64!"},
            "GATE_CLAIR_PSK",
            "not valid base64",
        ),
        ({"GATE_CLAIR_URL": "http://c", "GATE_CLAIR_TIMEOUT": "0"}, "GATE_CLAIR_TIMEOUT", "at least"),
        ({"GATE_NOTIFIER_LISTEN": "6061"}, "GATE_NOTIFIER_LISTEN", "host:port"),
        ({"GATE_NOTIFIER_LISTEN": "127.0.0.1:6061"}, "GATE_NOTIFIER_LISTEN", "needs GATE_CLAIR_URL"),
        ({"GATE_NOTIFIER_LISTEN": "127.0.0.1:http"}, "GATE_NOTIFIER_LISTEN", "host:port"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, str], field: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        Settings.from_env(env)
    assert caught.value.field == field
    assert words in caught.value.message
    assert "not base64!" not in caught.value.message  # a PSK is never echoed


def test_a_bad_clair_url_is_refused_at_start_up() -> None:
    s = Settings.from_env({"GATE_CLAIR_URL": "clair:6060"})
    with pytest.raises(InvalidArgument) as caught:
        build_scanners(s)
    assert caught.value.field == "GATE_CLAIR_URL"
