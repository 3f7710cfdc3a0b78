"""gate/store/checkpoint.py: `gate serve` folds SQLite's WAL on its own thread, not inside commits."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from gate.config import Settings
from gate.server.app import create_server
from gate.store.checkpoint import WalCheckpointer
from gate.store.db import create_engine_for, has_wal, migrate


def _wal_pages(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size // 4096 if wal.exists() else 0


def test_commits_leave_the_log_to_the_checkpointer(tmp_path: Path) -> None:
    db = tmp_path / "gate.db"
    engine = create_engine_for(f"sqlite:///{db}", background_checkpoint=True)
    migrate(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 0
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE filler (b BLOB)"))
    # Far more than the 1,000 pages after which a commit would checkpoint by itself.
    for _ in range(30):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO filler VALUES (zeroblob(200000))"))
    assert _wal_pages(db) > 1000
    checkpointer = WalCheckpointer(engine)
    busy, frames, done = checkpointer.checkpoint()
    assert (busy, done) == (0, frames) and frames > 1000  # everything folded into the database file
    with engine.begin() as conn:  # the next writer starts the log over
        conn.execute(text("INSERT INTO filler VALUES (zeroblob(10))"))
    assert checkpointer.checkpoint()[1] < 10
    engine.dispose()


def test_other_engines_keep_sqlites_automatic_checkpoints(tmp_path: Path) -> None:
    engine = create_engine_for(f"sqlite:///{tmp_path / 'gate.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == 1000
    assert has_wal(engine)
    assert not has_wal(create_engine_for("sqlite://"))  # in memory: no log to fold
    engine.dispose()


def test_gate_serve_runs_it_on_sqlite_and_stops_it_with_a_last_checkpoint(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'gate.db'}")
    running = create_server(settings, "127.0.0.1:0")
    try:
        assert running.checkpointer is not None
        before = running.checkpointer.checkpoints
    finally:
        running.stop(0)
    assert running.checkpointer.checkpoints > before  # the last one, on the way out


@pytest.mark.postgres
def test_gate_serve_on_postgresql_has_no_checkpointer(tmp_path: Path, postgres_url: str) -> None:
    running = create_server(Settings(data_dir=tmp_path, database_url=postgres_url), "127.0.0.1:0")
    try:
        assert running.checkpointer is None
    finally:
        running.stop(0)
