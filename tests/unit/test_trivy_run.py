"""Running Trivy: fake `trivy` scripts for every failure mode, plus the real binary's version probe."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from scanners import trivy as trivy_module
from scanners.interface import (
    Credentials,
    ScannerError,
    ScannerUnavailable,
    ScanParseError,
    ScanTarget,
    ScanTimeout,
    TargetKind,
)
from scanners.trivy import TrivyScanner
from tests.support.probes import missing

ASSETS = Path(__file__).parents[1] / "assets/trivy"
TARGET = ScanTarget(TargetKind.DOCKER_ARCHIVE, "/images/app.tar")

# Every fake answers `version` like trivy does, records how it was called, then runs the case's body.
PRELUDE = """#!/bin/sh
here="$(dirname "$0")"
if [ "$1" = version ]; then
  echo x >> "$here/version-calls"
  echo '{"Version":"9.9.9-fake"}'
  exit 0
fi
out=""; prev=""
for a in "$@"; do
  if [ "$prev" = "--output" ]; then out="$a"; fi
  prev="$a"
done
printf '%s\\n' "$@" > "$here/argv"
env > "$here/env"
echo "$out" > "$here/output-path"
echo "$TMPDIR" > "$here/tmpdir"
"""


@pytest.fixture(autouse=True)
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the adapter's temp dirs at an empty folder so leftovers are easy to see."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    yield temp
    # Scan directories are removed in the background, after the result is returned.
    assert trivy_module.wait_for_removals(timeout=30)
    assert list(temp.iterdir()) == [], "the adapter left temporary files behind"


def fake(tmp_path: Path, body: str, name: str = "trivy") -> Path:
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    script = folder / name
    script.write_text(PRELUDE + body)
    script.chmod(0o755)
    return script


def scanner_for(binary: Path | str, cache: Path | None = None, **kwargs: object) -> TrivyScanner:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/nonexistent-home"}
    return TrivyScanner(
        str(binary),
        str(cache or "/nonexistent-cache"),
        base_env=env,
        **kwargs,  # type: ignore[arg-type]
    )


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie (a container's init may never reap orphans)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return text.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def wait_until(condition: object, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return bool(condition())  # type: ignore[operator]


# ---- success ---------------------------------------------------------------------------------------


def test_success_fills_versions_and_cleans_up(tmp_path: Path) -> None:
    report = ASSETS / "statuses.json"
    script = fake(tmp_path, f'cp "{report}" "$out"\n')
    cache = tmp_path / "cache"
    (cache / "db").mkdir(parents=True)
    (cache / "db" / "metadata.json").write_text(
        json.dumps(
            {"Version": 2, "NextUpdate": "2099-01-02T00:00:00Z", "UpdatedAt": "2099-01-01T06:00:00.5Z"}
        )
    )
    result = scanner_for(script, cache).scan(TARGET, timeout=30)
    assert result.scanner == "trivy"
    assert result.scanner_version == "9.9.9-fake"  # from the binary, not the report's "0.76.0"
    assert result.db_version == "2"
    assert result.db_updated_at == datetime(2099, 1, 1, 6, 0, 0, 500000, tzinfo=UTC)
    assert len(result.findings) == 10
    # The report file, its directory and Trivy's private TMPDIR are gone (removed in the background).
    assert trivy_module.wait_for_removals(timeout=30)
    output = Path((tmp_path / "bin" / "output-path").read_text().strip())
    scratch = Path((tmp_path / "bin" / "tmpdir").read_text().strip())
    assert not output.exists() and not output.parent.exists()
    assert scratch.parent == output.parent and not scratch.exists()


def test_leftovers_are_removed_in_the_background_after_success_and_failure(
    tmp_path: Path, private_tempdir: Path
) -> None:
    # Trivy leaving files in its TMPDIR (and a stray file beside the report): removed all the same.
    leave = (
        'mkdir -p "$TMPDIR/layers/x"; echo data > "$TMPDIR/layers/x/blob"\n'
        'echo s > "$(dirname "$out")/stray"\n'
    )
    ok = fake(tmp_path, leave + f'cp "{ASSETS / "empty-results.json"}" "$out"\n')
    assert scanner_for(ok).scan(TARGET, timeout=30).findings == ()
    failing = fake(tmp_path, leave + "exit 3\n", name="trivy-failing")
    with pytest.raises(ScannerError, match="exited with status 3"):
        scanner_for(failing).scan(TARGET, timeout=30)
    assert trivy_module.wait_for_removals(timeout=30)
    assert list(private_tempdir.iterdir()) == []


def test_killed_scan_leftovers_are_removed(tmp_path: Path, private_tempdir: Path) -> None:
    body = 'mkdir -p "$TMPDIR/unpacked"; echo layer > "$TMPDIR/unpacked/l"; exec sleep 300\n'
    script = fake(tmp_path, body)
    with pytest.raises(ScanTimeout):
        scanner_for(script).scan(TARGET, timeout=1)
    assert trivy_module.wait_for_removals(timeout=30)
    assert list(private_tempdir.iterdir()) == []


def test_child_sees_argv_and_env_we_built(tmp_path: Path) -> None:
    script = fake(tmp_path, f'cp "{ASSETS / "empty-results.json"}" "$out"\n')
    target = ScanTarget(
        TargetKind.REGISTRY,
        "reg.test/app@sha256:" + "1" * 64,
        credentials=Credentials(username="u", password="p4ss-word"),
    )
    scanner_for(script, skip_db_update=True).scan(target, timeout=30)
    argv = (tmp_path / "bin" / "argv").read_text().splitlines()
    assert argv[:3] == ["image", "--format", "json"]
    assert argv[-1] == target.location
    assert "p4ss-word" not in argv
    env = dict(
        line.split("=", 1) for line in (tmp_path / "bin" / "env").read_text().splitlines() if "=" in line
    )
    assert env["TRIVY_PASSWORD"] == "p4ss-word"
    assert env["TRIVY_SKIP_VERSION_CHECK"] == "true"
    assert env["TRIVY_DISABLE_TELEMETRY"] == "true"
    assert env["TRIVY_TIMEOUT"] == "60s"  # our 30 s deadline + slack, so ours fires first


def test_no_findings_report(tmp_path: Path) -> None:
    script = fake(tmp_path, f'cp "{ASSETS / "empty-results.json"}" "$out"\n')
    result = scanner_for(script).scan(TARGET, timeout=30)
    assert result.findings == ()
    assert (result.db_version, result.db_updated_at) == ("", None)  # no metadata.json: not fatal


def test_binary_found_on_base_env_path(tmp_path: Path) -> None:
    script = fake(tmp_path, f'cp "{ASSETS / "empty-results.json"}" "$out"\n', name="trivy-on-path")
    s = TrivyScanner("trivy-on-path", "/c", base_env={"PATH": f"{script.parent}:/usr/bin:/bin"})
    assert s.scan(TARGET, timeout=30).scanner_version == "9.9.9-fake"


# ---- failures --------------------------------------------------------------------------------------


def test_garbage_output_is_parse_error(tmp_path: Path) -> None:
    script = fake(tmp_path, "printf 'INFO scanning... {not json' > \"$out\"\n")
    with pytest.raises(ScanParseError, match="not JSON"):
        scanner_for(script).scan(TARGET, timeout=30)


def test_empty_output_is_parse_error(tmp_path: Path) -> None:
    script = fake(tmp_path, ': > "$out"\n')
    with pytest.raises(ScanParseError, match="empty"):
        scanner_for(script).scan(TARGET, timeout=30)


def test_missing_output_is_parse_error(tmp_path: Path) -> None:
    script = fake(tmp_path, "echo 'printed to stdout instead'; exit 0\n")
    with pytest.raises(ScanParseError, match="wrote no report"):
        scanner_for(script).scan(TARGET, timeout=30)


def test_nonzero_exit_keeps_stderr(tmp_path: Path) -> None:
    body = (
        'printf "%s\\n" "INFO progress" "FATAL init error: failed to open db: invalid database" >&2; exit 1\n'
    )
    script = fake(tmp_path, body)
    with pytest.raises(ScannerError) as info:
        scanner_for(script).scan(TARGET, timeout=30)
    err = info.value
    assert type(err) is ScannerError
    assert "exited with status 1" in err.message
    assert "failed to open db: invalid database" in err.detail
    assert "invalid database" in str(err)


def test_huge_stderr_is_trimmed_to_its_end(tmp_path: Path) -> None:
    body = (
        'i=0; while [ $i -lt 3000 ]; do echo "noise line $i" >&2; i=$((i+1)); done\n'
        'echo "FATAL last" >&2; exit 1\n'
    )
    script = fake(tmp_path, body)
    with pytest.raises(ScannerError) as info:
        scanner_for(script).scan(TARGET, timeout=30)
    assert len(info.value.detail) <= 4001
    assert info.value.detail.endswith("FATAL last")


def test_sigkilled_child_is_scanner_error(tmp_path: Path) -> None:
    script = fake(tmp_path, "kill -9 $$\n")
    with pytest.raises(ScannerError, match="killed by signal SIGKILL") as info:
        scanner_for(script).scan(TARGET, timeout=30)
    assert not isinstance(info.value, ScanTimeout)


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    body = (
        f'sleep 300 &\necho $! > "{pids}.tmp"\necho $$ >> "{pids}.tmp"\nmv "{pids}.tmp" "{pids}"\nsleep 300\n'
    )
    script = fake(tmp_path, body)
    started = time.monotonic()
    with pytest.raises(ScanTimeout, match="deadline"):
        scanner_for(script).scan(TARGET, timeout=1.5)
    assert time.monotonic() - started < 10
    assert pids.exists(), "the fake never got going"
    children = [int(line) for line in pids.read_text().split()]
    assert len(children) == 2
    assert wait_until(lambda: not any(alive(pid) for pid in children)), "a child outlived the deadline"


def test_constructor_timeout_is_a_ceiling(tmp_path: Path) -> None:
    script = fake(tmp_path, "exec sleep 300\n")
    started = time.monotonic()
    with pytest.raises(ScanTimeout):
        scanner_for(script, timeout=0.5).scan(TARGET, timeout=3600)
    assert time.monotonic() - started < 10


def test_missing_binary_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(ScannerUnavailable, match="not found"):
        scanner_for(tmp_path / "no-such-trivy").scan(TARGET, timeout=30)


def test_missing_binary_on_path_is_unavailable() -> None:
    s = TrivyScanner("definitely-not-a-trivy-binary", "/c", base_env={"PATH": "/nonexistent"})
    with pytest.raises(ScannerUnavailable, match="not found"):
        s.scan(TARGET, timeout=30)


def test_non_executable_binary_is_unavailable(tmp_path: Path) -> None:
    script = fake(tmp_path, "exit 0\n")
    script.chmod(stat.S_IRUSR | stat.S_IWUSR)
    with pytest.raises(ScannerUnavailable, match="not executable"):
        scanner_for(script).scan(TARGET, timeout=30)


def test_binary_that_is_not_trivy_is_unavailable(tmp_path: Path) -> None:
    script = tmp_path / "fake-trivy"
    script.write_text("#!/bin/sh\necho 'usage: something else'\n")
    script.chmod(0o755)
    with pytest.raises(ScannerUnavailable, match="did not print a Trivy version"):
        scanner_for(script).scan(TARGET, timeout=30)


# ---- version caching ---------------------------------------------------------------------------------


def test_version_is_asked_once_per_binary_and_mtime(tmp_path: Path) -> None:
    script = fake(tmp_path, f'cp "{ASSETS / "empty-results.json"}" "$out"\n')
    calls = tmp_path / "bin" / "version-calls"
    for _ in range(3):
        scanner_for(script).scan(TARGET, timeout=30)  # a new scanner each time: the cache is per process
    assert calls.read_text().count("x") == 1
    # A replaced binary (new mtime) is asked again.
    later = script.stat().st_mtime_ns + 5_000_000_000
    os.utime(script, ns=(later, later))
    assert scanner_for(script).version() == "9.9.9-fake"
    assert calls.read_text().count("x") == 2


def real_trivy() -> str:
    candidates = [
        os.path.join(sysconfig.get_path("scripts"), "trivy"),
        os.path.join(os.path.dirname(sys.executable), "trivy"),
    ]
    for candidate in [*candidates, shutil.which("trivy")]:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    missing("trivy", "no trivy binary in the venv or on PATH")
    raise AssertionError("unreachable")


@pytest.mark.trivy
def test_real_binary_version_is_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    binary = real_trivy()
    trivy_module._version_cache.clear()
    first = TrivyScanner(binary, "/nonexistent-cache").version()
    assert first == "0.76.0"

    def no_more_processes(*args: object, **kwargs: object) -> subprocess.Popen[bytes]:
        raise AssertionError("version() spawned trivy again instead of using the cache")

    monkeypatch.setattr(trivy_module.subprocess, "Popen", no_more_processes)
    started = time.monotonic()
    assert TrivyScanner(binary, "/other-cache").version() == first
    assert time.monotonic() - started < 0.05
