"""Engines and schema migration for the store: SQLite by default, PostgreSQL (psycopg 3) at scale.

`create_engine_for(url)` builds an Engine with the per-backend settings gate relies on;
`migrate(engine_or_url)` brings the schema to the newest Alembic revision and is safe to call at every
start, from several processes at once.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, exc, make_url, text
from sqlalchemy.engine import URL
from sqlalchemy.pool import StaticPool

from gate.errors import Unavailable
from gate.store.inputs_signal import InputsSignal, connection_factory, install_triggers, register, signal_of

__all__ = [
    "IMMEDIATE",
    "create_engine_for",
    "database_errors",
    "has_wal",
    "is_sqlite",
    "migrate",
    "normalize_url",
    "write_engine",
]

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Execution option naming a connection that will write: on SQLite its transaction starts with
# BEGIN IMMEDIATE (see _sqlite_begin). Other backends ignore it.
IMMEDIATE = "gate_begin_immediate"

# Arbitrary but fixed key for pg_advisory_xact_lock: serializes concurrent `migrate` calls.
_MIGRATE_LOCK_KEY = 0x6A7465_0001

_DEFAULT_BUSY_TIMEOUT = 5.0
# What the WAL file is truncated to after a checkpoint has emptied it (a burst may grow it further).
_WAL_SIZE_LIMIT = 64 * 1024 * 1024


def normalize_url(url: str) -> URL:
    """Parse a database URL, steering every PostgreSQL spelling to the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
        # psycopg 3 is the only PostgreSQL driver gate ships; a bare postgresql:// would pick psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def is_sqlite(engine: Engine | Connection) -> bool:
    """True when the engine or connection talks to SQLite."""
    return engine.dialect.name == "sqlite"


def create_engine_for(
    url: str, *, busy_timeout: float = _DEFAULT_BUSY_TIMEOUT, background_checkpoint: bool = False
) -> Engine:
    """Create an Engine for a SQLite or PostgreSQL URL.

    SQLite: the parent directory is created, WAL journaling lets readers run beside the one writer,
    `busy_timeout` (seconds) is how long a writer waits for the lock before "database is locked",
    foreign keys are enforced, and connections may move between threads. Write transactions begin
    IMMEDIATE (on connections with the `IMMEDIATE` execution option) so two writers queue on the lock
    instead of failing on a stale read snapshot.

    With `background_checkpoint` (SQLite files only), connections never checkpoint the WAL inside a
    commit: the caller runs gate.store.checkpoint.WalCheckpointer instead (`gate serve` does).

    PostgreSQL: `postgresql://` is rewritten to psycopg 3; connections are pinged before use so a
    restarted server costs one retry, not an error.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, busy_timeout, background_checkpoint)
    if parsed.get_backend_name() == "postgresql":
        return create_engine(
            parsed,
            pool_pre_ping=True,
            # Fail fast on an unreachable host rather than hanging a request for the OS default.
            # jit=off: gate's statements are short OLTP look-ups; on a large store PostgreSQL's JIT
            # kicked in on inflated row estimates and spent ~2 s compiling a 100 ms query.
            connect_args={"connect_timeout": max(1, round(busy_timeout)), "options": "-c jit=off"},
        )
    raise ValueError(f"unsupported database URL {parsed.render_as_string(hide_password=True)!r}")


def _sqlite_engine(parsed: URL, busy_timeout: float, background_checkpoint: bool) -> Engine:
    database = parsed.database or ""
    memory = database in ("", ":memory:") or parsed.query.get("mode") == "memory"
    kwargs: dict[str, Any] = {"connect_args": {"check_same_thread": False}}
    if memory:
        # Each connection to :memory: is a separate database; one shared connection keeps one.
        kwargs["poolclass"] = StaticPool
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    signal: InputsSignal | None = None
    if not memory and not database.startswith("file:"):
        # The inputs epoch (gate/store/inputs_signal.py): connections that move it after committing
        # an input write, so kept verdicts can skip reading their counters while nothing changed.
        # Beside the file itself, as SQLite keeps its -wal and -shm: processes that name one database
        # by different paths (a symlink, another working directory) must share one epoch.
        path = f"{os.path.realpath(Path(database).expanduser())}.gate-inputs"
        try:
            signal = InputsSignal(path)
        except OSError as e:
            # Where the epoch cannot be kept, SQLite could not keep its -wal and -shm files either.
            raise Unavailable(f"database unavailable: cannot open {path}: {e.strerror or e}") from e
        kwargs["connect_args"]["factory"] = connection_factory(signal)
    engine = create_engine(parsed, **kwargs)
    if signal is not None:
        register(engine, signal)
    timeout_ms = int(busy_timeout * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module (which would BEGIN lazily and never
        # IMMEDIATE); _sqlite_begin emits BEGIN itself.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {timeout_ms}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if not memory:
                _enable_wal(cursor, busy_timeout)
                # NORMAL is durable across application crashes in WAL mode and much faster than FULL.
                cursor.execute("PRAGMA synchronous = NORMAL")
                if background_checkpoint:
                    # Checkpoints (with their fsync) run on WalCheckpointer's thread, not in commits.
                    cursor.execute("PRAGMA wal_autocheckpoint = 0")
                    cursor.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
        finally:
            cursor.close()
        if signal is not None:
            install_triggers(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _sqlite_begin(conn: Connection) -> None:
        # A deferred transaction that reads and then writes fails at once with SQLITE_BUSY if another
        # writer committed in between; IMMEDIATE takes the write lock up front and honours busy_timeout.
        if conn.get_execution_options().get(IMMEDIATE):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")

    return engine


def _enable_wal(cursor: Any, busy_timeout: float) -> None:
    # WAL is a property of the file, set once by whichever connection gets there first. Switching a
    # fresh file to WAL needs an exclusive lock; while another connection holds the write lock SQLite
    # fails the switch with "database is locked" at once, without calling the busy handler, and even
    # a reader blocks asking for WAL again. Several processes (or `migrate` threads) opening a new
    # database together hit both. So: skip the switch when the file is already WAL, and otherwise
    # retry it for up to busy_timeout.
    deadline = time.monotonic() + busy_timeout
    delay = 0.001
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def has_wal(engine: Engine) -> bool:
    """True for a file-backed SQLite engine (WAL mode; see gate.store.checkpoint), False otherwise."""
    return is_sqlite(engine) and not isinstance(engine.pool, StaticPool)


def write_engine(engine: Engine) -> Engine:
    """The same engine (same pool) whose transactions are write transactions."""
    return engine.execution_options(**{IMMEDIATE: True})


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """Translate "the database cannot be reached or is busy" into gate.errors.Unavailable.

    Connection failures, lost connections, pool exhaustion and SQLite's "database is locked" all
    surface as OperationalError/InterfaceError or pool errors. Integrity and programming errors are
    bugs and propagate unchanged.
    """
    try:
        yield
    except (exc.OperationalError, exc.InterfaceError) as e:
        raise Unavailable(f"database unavailable: {_first_line(e.orig)}") from e
    except (exc.TimeoutError, exc.DisconnectionError) as e:
        raise Unavailable(f"database unavailable: {_first_line(e)}") from e
    except exc.DBAPIError as e:
        if e.connection_invalidated:
            raise Unavailable(f"database unavailable: {_first_line(e.orig)}") from e
        raise


def _first_line(error: BaseException | None) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _alembic_config(connection: Connection) -> Config:
    # Configured in code: no alembic.ini is looked up in the working directory.
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def script_heads() -> tuple[str, ...]:
    """The head revision(s) of the migration scripts shipped with gate (exactly one when healthy)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return tuple(ScriptDirectory.from_config(config).get_heads())


def migrate(engine_or_url: Engine | str) -> None:
    """Upgrade the schema to the newest revision; a no-op when it is already there.

    The whole upgrade runs in one transaction. On PostgreSQL it first takes a transaction-scoped
    advisory lock, so concurrent starters queue and the later ones find the schema already at head;
    on SQLite the transaction begins IMMEDIATE, which serializes them the same way.
    Raises Unavailable when the database cannot be reached.
    """
    engine = create_engine_for(engine_or_url) if isinstance(engine_or_url, str) else engine_or_url
    try:
        with database_errors(), write_engine(engine).connect() as connection, connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATE_LOCK_KEY})
            command.upgrade(_alembic_config(connection), "head")
        if signal_of(engine) is not None:
            # Connections opened before input_generations existed carry no triggers to signal its
            # writes (gate/store/inputs_signal.py): new ones, opened from here on, do.
            engine.dispose()
    finally:
        if isinstance(engine_or_url, str):
            engine.dispose()
