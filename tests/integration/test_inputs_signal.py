"""The inputs epoch of a SQLite file (gate/store/inputs_signal.py) against the real store.

Every write path that bumps input generations must move the epoch, and only after its commit: a
reader that sees the epoch move must find the write in the database. A rolled-back write moves
nothing. Processes share it through the file beside the database.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from gate.domain import (
    BaseImage,
    ExceptionScope,
    ScopeKind,
    VulnException,
)
from gate.errors import Unavailable
from gate.provenance import chain_id
from gate.store.db import create_engine_for, migrate
from gate.store.exceptions import SqlExceptionStore
from gate.store.generations import GLOBAL
from gate.store.inputs_signal import InputsSignal, signal_of
from gate.store.repository import SqlRepository
from scanners.interface import ScanResult, ScanTarget, TargetKind
from tests.integration.test_store import finding

NOW = datetime(2026, 11, 24, 1, 0, tzinfo=UTC)
DIGEST = "sha256:" + "cd" * 32


@pytest.fixture
def url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'gate.db'}"
    migrate(url)
    return url


@pytest.fixture
def repo(url: str) -> Iterator[SqlRepository]:
    repo = SqlRepository.open(url)
    yield repo
    repo.close()


def _generation(engine: Engine, key: str) -> int:
    with engine.connect() as conn:
        value = conn.execute(
            text('SELECT "value" FROM input_generations WHERE "key" = :k'), {"k": key}
        ).scalar()
    return int(value or 0)


def test_every_input_write_moves_the_epoch_after_its_commit(url: str, repo: SqlRepository) -> None:
    # At the moment each write moves the epoch, another engine (another process's view) must already
    # read the counter the write bumped: the signal follows the commit, never precedes it.
    signal = signal_of(repo._engine)
    assert signal is not None
    observer = create_engine_for(url)
    seen: list[tuple[str, int]] = []
    watched: list[str] = []
    bump = signal.bump

    def observed_bump() -> int:
        seen.append((watched[-1], _generation(observer, watched[-1])))
        return bump()

    signal.bump = observed_bump  # type: ignore[method-assign]
    exceptions = SqlExceptionStore(repo._engine)
    layers = ("sha256:" + "11" * 32,)
    base = BaseImage(
        "osbase 1", "prod-osbase", "sha256:" + "22" * 32, layers, chain_id(layers), registered_at=NOW
    )
    target = ScanTarget(TargetKind.DOCKER_ARCHIVE, "/tmp/image.tar")
    result = ScanResult(scanner="trivy", scanner_version="test", findings=())
    job: list[str] = []
    writes: list[tuple[str, str, Callable[[], object]]] = [
        (
            "import",
            DIGEST,
            lambda: repo.record_import(DIGEST, "trivy", DIGEST, result, [finding("CVE-1")], NOW),
        ),
        ("base", GLOBAL, lambda: repo.add_base(base)),
        (
            "exception",
            GLOBAL,
            lambda: exceptions.add_exceptions(
                [
                    VulnException(
                        id="ex-1",
                        vulnerability_id="CVE-1",
                        scope=ExceptionScope(ScopeKind.DIGEST, DIGEST),
                        expires_at=datetime(2027, 1, 1, tzinfo=UTC),
                        owner="team-a",
                        ticket="SEC-1",
                        reason="accepted",
                        created_at=NOW,
                    )
                ]
            ),
        ),
        (
            "job created",
            DIGEST,
            lambda: job.append(repo.create_job(DIGEST, "trivy", DIGEST, target, NOW)[0].id),
        ),
        ("job running", DIGEST, lambda: repo.mark_running(job[-1], NOW)),
        ("job done", DIGEST, lambda: repo.complete_job(job[-1], result, [finding("CVE-2")], NOW)),
    ]
    try:
        for name, key, write in writes:
            before, generation = signal.current(), _generation(observer, key)
            watched.append(key)
            write()
            assert signal.current() == before + 1, name
            assert seen[-1] == (key, generation + 1), f"{name}: signalled before its commit was visible"
    finally:
        observer.dispose()


def test_a_rolled_back_write_moves_nothing_and_a_read_moves_nothing(repo: SqlRepository) -> None:
    signal = signal_of(repo._engine)
    assert signal is not None
    before = signal.current()
    with pytest.raises(RuntimeError), repo._write() as session:
        session.exec(text("""INSERT INTO input_generations ("key", "value") VALUES ('x', 1)"""))  # type: ignore[call-overload]
        raise RuntimeError("the write fails after bumping")
    repo.input_generations([GLOBAL, DIGEST])
    assert signal.current() == before
    assert repo.input_generations(["x"]) == {"x": 0}


def test_an_input_generation_written_outside_a_transaction_is_refused(repo: SqlRepository) -> None:
    # It would commit as its statement ends, with no commit() after it to move the epoch.
    raw = repo._engine.raw_connection()
    assert raw.driver_connection is not None
    try:
        with pytest.raises(Exception, match="user-defined function raised exception"):
            raw.driver_connection.execute(
                """INSERT INTO input_generations ("key", "value") VALUES ('z', 1)"""
            )
        assert repo.input_generations(["z"]) == {"z": 0}
    finally:
        raw.close()


def test_connections_opened_before_the_migration_are_replaced_by_ones_that_signal(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        with engine.connect() as conn:  # pooled before input_generations exists: it has no triggers
            conn.execute(text("SELECT 1"))
        migrate(engine)
        signal = signal_of(engine)
        assert signal is not None
        with engine.begin() as conn:
            conn.execute(text("""INSERT INTO input_generations ("key", "value") VALUES ('y', 1)"""))
        assert signal.current() == 1
    finally:
        engine.dispose()


def _import_in_another_process(url: str, done: object) -> None:
    repo = SqlRepository.open(url)
    try:
        result = ScanResult(scanner="trivy", scanner_version="test", findings=())
        repo.record_import(DIGEST, "trivy", DIGEST, result, [finding("CVE-9")], NOW)
    finally:
        repo.close()


def test_another_process_moves_the_epoch_this_one_reads(url: str, repo: SqlRepository) -> None:
    signal = signal_of(repo._engine)
    assert signal is not None
    before = signal.current()
    ctx = mp.get_context("spawn")
    proc = ctx.Process(target=_import_in_another_process, args=(url, None))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert signal.current() == before + 1
    assert repo.input_generations([DIGEST]) == {DIGEST: 1}
    assert InputsSignal(signal.path).current() == before + 1  # the file holds it, not the process


def test_one_database_named_by_different_paths_shares_one_epoch(tmp_path: Path) -> None:
    # SQLite follows a symlinked database file to keep one -wal and -shm beside the file itself; the
    # epoch must be as shared, or a process naming the database through the link would trust verdicts
    # that another process's writes changed.
    real, other = tmp_path / "data", tmp_path / "other"
    real.mkdir()
    other.mkdir()
    direct = SqlRepository.open(f"sqlite:///{real / 'gate.db'}")
    (other / "gate.db").symlink_to(real / "gate.db")
    linked = SqlRepository.open(f"sqlite:///{other / 'gate.db'}")
    try:
        seen = signal_of(linked._engine)
        assert seen is not None
        before = seen.current()
        result = ScanResult(scanner="trivy", scanner_version="test", findings=())
        direct.record_import(DIGEST, "trivy", DIGEST, result, [finding("CVE-9")], NOW)
        assert seen.current() == before + 1
        assert linked.input_generations([DIGEST]) == {DIGEST: 1}
        assert not (other / "gate.db.gate-inputs").exists()
    finally:
        direct.close()
        linked.close()


def test_an_epoch_file_that_cannot_be_opened_makes_the_database_unavailable(tmp_path: Path) -> None:
    # A writer that could not signal must not write at all: readers elsewhere would trust old epochs.
    (tmp_path / "gate.db.gate-inputs").mkdir()
    with pytest.raises(Unavailable, match=r"cannot open .*gate\.db\.gate-inputs: Is a directory"):
        create_engine_for(f"sqlite:///{tmp_path / 'gate.db'}")


def test_a_collected_engine_releases_its_epoch_file() -> None:
    # Tests and tools open many engines; each one's map and descriptor go with it, not at exit.
    with tempfile.TemporaryDirectory() as tmp:
        before = len(os.listdir("/proc/self/fd"))
        for i in range(20):
            engine = create_engine_for(f"sqlite:///{tmp}/g{i}.db")
            engine.dispose()
            del engine
        gc.collect()
        assert len(os.listdir("/proc/self/fd")) <= before + 1
