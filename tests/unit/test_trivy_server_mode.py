"""Trivy client/server mode without a server: settings, exact argv/env, and how failures are worded."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gate.config import Settings
from gate.errors import InvalidArgument
from gate.server.app import build_scanners
from scanners.interface import Credentials, ScannerError, ScannerUnavailable, ScanTarget, TargetKind
from scanners.trivy import TrivyScanner, TrivyServer, _older_db, _server_failure

TOKEN = "srv-t0ken-9f1c"
URL = "http://trivy.internal:4954"
REF = "registry.test:5000/team/app@sha256:" + "ab" * 32
BASE_ENV = {"PATH": "/usr/bin", "HOME": "/home/gate", "TRIVY_TOKEN": "from-the-shell"}
COMMON = [
    "/opt/trivy",
    "image",
    "--format",
    "json",
    "--output",
    "/w/report.json",
    "--cache-dir",
    "/c",
    "--scanners",
    "vuln,secret",
]
OFFLINE = ["--skip-db-update", "--skip-java-db-update", "--offline-scan"]

# Trivy 0.76's FATAL lines, captured from real client runs against a real `trivy server`.
_PREFIX = (
    "FATAL\tFatal error\trun error: image scan error: scan error: scan failed: failed analysis: "
    "unable to get missing layers: unable to fetch missing layers: backoff: permanent error (last error: "
)
STDERR_BAD_TOKEN = _PREFIX + "twirp error unauthenticated: invalid token)\n"
STDERR_REFUSED = (
    _PREFIX + "twirp error internal: failed to do request: Post "
    '"http://127.0.0.1:45999/twirp/trivy.cache.v1.Cache/MissingBlobs": dial tcp 127.0.0.1:45999: '
    "connect: connection refused)\n"
)
STDERR_NOT_TRIVY = (
    _PREFIX + 'twirp error unknown: Error from intermediary with HTTP status code 501 "Not Implemented")\n'
)


def server_scanner(**kwargs: object) -> TrivyScanner:
    server = TrivyServer(URL, TOKEN)
    return TrivyScanner("/opt/trivy", "/c", base_env=BASE_ENV, server=server, **kwargs)  # type: ignore[arg-type]


# ---- settings ------------------------------------------------------------------------------------


def test_standalone_by_default() -> None:
    s = Settings.from_env({})
    assert (s.trivy_server, s.trivy_server_token, s.trivy_server_token_header) == ("", "", "")
    trivy = build_scanners(s)["trivy"]
    assert isinstance(trivy, TrivyScanner) and trivy.server is None


def test_server_settings_reach_the_scanner_and_the_token_stays_out_of_repr() -> None:
    s = Settings.from_env(
        {
            "GATE_TRIVY_SERVER": "https://trivy.internal:4954/",
            "GATE_TRIVY_SERVER_TOKEN": TOKEN,
            "GATE_TRIVY_SERVER_TOKEN_HEADER": "X-Scan-Key",
        }
    )
    assert s.trivy_server == "https://trivy.internal:4954"  # trailing slash dropped
    trivy = build_scanners(s)["trivy"]
    assert isinstance(trivy, TrivyScanner)
    assert trivy.server == TrivyServer("https://trivy.internal:4954", TOKEN, "X-Scan-Key")
    assert TOKEN not in repr(s) and TOKEN not in repr(trivy.server)


@pytest.mark.parametrize(
    ("env", "variable", "words"),
    [
        ({"GATE_TRIVY_SERVER": "trivy.internal:4954"}, "GATE_TRIVY_SERVER", "http:// or https://"),
        ({"GATE_TRIVY_SERVER": "ftp://trivy:4954"}, "GATE_TRIVY_SERVER", "http:// or https://"),
        ({"GATE_TRIVY_SERVER": "http://:4954"}, "GATE_TRIVY_SERVER", "no host"),
        ({"GATE_TRIVY_SERVER": "http://trivy:port"}, "GATE_TRIVY_SERVER", "not a usable URL"),
        ({"GATE_TRIVY_SERVER": "http://trivy:70000"}, "GATE_TRIVY_SERVER", "not a usable URL"),
        ({"GATE_TRIVY_SERVER": "http://trivy:0"}, "GATE_TRIVY_SERVER", "port 0"),
        ({"GATE_TRIVY_SERVER": "http://trivy:4954/?x=1"}, "GATE_TRIVY_SERVER", "query"),
        ({"GATE_TRIVY_SERVER_TOKEN": TOKEN}, "GATE_TRIVY_SERVER_TOKEN", "GATE_TRIVY_SERVER"),
        (
            {"GATE_TRIVY_SERVER": URL, "GATE_TRIVY_SERVER_TOKEN_HEADER": "X-Key"},
            "GATE_TRIVY_SERVER_TOKEN_HEADER",
            "GATE_TRIVY_SERVER_TOKEN is not",
        ),
        (
            {
                "GATE_TRIVY_SERVER": URL,
                "GATE_TRIVY_SERVER_TOKEN": TOKEN,
                "GATE_TRIVY_SERVER_TOKEN_HEADER": "X Key",
            },
            "GATE_TRIVY_SERVER_TOKEN_HEADER",
            "header name",
        ),
        (
            {"GATE_TRIVY_SERVER": URL, "GATE_TRIVY_SERVER_TOKEN": TOKEN + "\r\nX-Evil: 1"},
            "GATE_TRIVY_SERVER_TOKEN",
            "line breaks",
        ),
        (
            {"GATE_TRIVY_SERVER": URL, "GATE_TRIVY_DB_REPOSITORY": "mirror.local/trivy-db:2"},
            "GATE_TRIVY_DB_REPOSITORY",
            "lives on the trivy server",
        ),
    ],
)
def test_bad_server_settings_name_the_variable(env: dict[str, str], variable: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        Settings.from_env(env)
    assert caught.value.field == variable
    assert words in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_user_info_in_the_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(InvalidArgument) as caught:
        Settings.from_env({"GATE_TRIVY_SERVER": "http://admin:hunter2@trivy:4954"})
    assert caught.value.field == "GATE_TRIVY_SERVER"
    assert "hunter2" not in str(caught.value)
    assert "process list" in str(caught.value)


def test_settings_built_in_code_are_checked_when_the_scanner_is_built() -> None:
    with pytest.raises(InvalidArgument) as caught:
        build_scanners(Settings(trivy_server="trivy:4954"))
    assert caught.value.field == "GATE_TRIVY_SERVER"


# ---- command line and environment ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "skip_db_update", "tail"),
    [
        (
            ScanTarget(TargetKind.DOCKER_ARCHIVE, "/i/app.tar"),
            False,
            ["--skip-db-update", "--input", "/i/app.tar"],
        ),
        (ScanTarget(TargetKind.OCI_LAYOUT, "/i/layout"), True, [*OFFLINE, "--input", "/i/layout"]),
        (
            ScanTarget(TargetKind.REGISTRY, REF, insecure=True),
            True,
            [*OFFLINE, "--image-src", "remote", "--insecure", REF],
        ),
    ],
)
def test_exact_argv_in_server_mode(target: ScanTarget, skip_db_update: bool, tail: list[str]) -> None:
    argv = server_scanner(skip_db_update=skip_db_update).build_argv(target, "/w/report.json")
    assert argv == [*COMMON, "--server", URL, *tail]


@pytest.mark.parametrize("kind", list(TargetKind))
def test_token_only_in_env_never_in_argv(kind: TargetKind) -> None:
    target = ScanTarget(
        kind, REF if kind is TargetKind.REGISTRY else "/i/x", credentials=Credentials("u", "p")
    )
    s = server_scanner(skip_db_update=True)
    argv = s.build_argv(target, "/w/report.json")
    assert not any(TOKEN in arg for arg in argv)
    assert "--token" not in argv and "--token-header" not in argv
    env = s.build_env(target)
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/gate",
        "TRIVY_SKIP_VERSION_CHECK": "true",
        "TRIVY_DISABLE_TELEMETRY": "true",
        "TRIVY_USERNAME": "u",
        "TRIVY_PASSWORD": "p",
        "TRIVY_TOKEN": TOKEN,  # ours, not the caller's shell's
    }


def test_custom_token_header_goes_in_env() -> None:
    s = TrivyScanner("/opt/trivy", "/c", base_env=BASE_ENV, server=TrivyServer(URL, TOKEN, "X-Scan-Key"))
    env = s.build_env(ScanTarget(TargetKind.OCI_LAYOUT, "/i/x"))
    assert (env["TRIVY_TOKEN"], env["TRIVY_TOKEN_HEADER"]) == (TOKEN, "X-Scan-Key")


def test_no_token_means_no_token_variables_even_if_the_shell_has_one() -> None:
    s = TrivyScanner("/opt/trivy", "/c", base_env=BASE_ENV, server=TrivyServer(URL))
    env = s.build_env(ScanTarget(TargetKind.OCI_LAYOUT, "/i/x"))
    assert "TRIVY_TOKEN" not in env and "TRIVY_TOKEN_HEADER" not in env


def test_db_repository_is_refused_in_server_mode() -> None:
    with pytest.raises(ValueError, match="lives on the server"):
        TrivyScanner("/opt/trivy", "/c", db_repository="mirror/db:2", server=TrivyServer(URL))


# ---- failures and DB metadata --------------------------------------------------------------------


def test_wrong_token_is_an_authentication_failure_naming_the_server() -> None:
    error = _server_failure(URL, True, STDERR_BAD_TOKEN, "/i/app.tar")
    assert isinstance(error, ScannerUnavailable)
    assert (
        error.message
        == f"trivy server {URL} refused the token (authentication failed) while scanning /i/app.tar"
    )
    assert "invalid token" in str(error)


def test_missing_token_says_none_is_configured() -> None:
    error = _server_failure(URL, False, STDERR_BAD_TOKEN, "/i/app.tar")
    assert isinstance(error, ScannerUnavailable)
    assert "requires a token and none is configured (authentication failed)" in error.message


def test_unreachable_server_names_the_cause() -> None:
    error = _server_failure(URL, True, STDERR_REFUSED, "/i/app.tar")
    assert isinstance(error, ScannerUnavailable)
    assert (
        error.message == f"trivy server {URL} is unreachable (connection refused) while scanning /i/app.tar"
    )


def test_something_that_is_not_a_trivy_server_is_a_server_error() -> None:
    error = _server_failure(URL, True, STDERR_NOT_TRIVY, "/i/app.tar")
    assert type(error) is ScannerError
    assert error.message == f"trivy server {URL} failed the scan of /i/app.tar"
    assert "501" in str(error)


def test_other_failures_are_left_to_the_generic_handling() -> None:
    assert _server_failure(URL, True, "FATAL\tunable to open archive: no such file", "/i/app.tar") is None


def test_db_recorded_when_the_server_updated_its_db_during_a_scan_is_the_older() -> None:
    old = ("2", datetime(2025, 6, 1, tzinfo=UTC))
    new = ("2", datetime(2025, 6, 2, tzinfo=UTC))
    assert _older_db(old, new) == old
    assert _older_db(new, old) == old
    assert _older_db(old, ("", None)) == old
