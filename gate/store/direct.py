"""Direct DBAPI connections for the two statements on every CheckPromotion: the counter read and the journal.

A hot CheckPromotion runs one read (the input generations that validate a precomputed verdict) and one
small write transaction (its decision and audit record). Through SQLAlchemy's pool and Connection each
of them cost several times what the database itself takes: pool checkout and check-in, reset-on-return,
event dispatch, and on PostgreSQL a pre-ping round trip per checkout (profiled: ~0.25 ms of a 0.35 ms
servicer call on SQLite). Here a few connections are opened through the engine — so its connect-time
set-up (SQLite's WAL, busy timeout and foreign keys; PostgreSQL's connect timeout) still applies — then
detached from its pool and kept for these statements alone.

What the pool's pre-ping gave, a restarted PostgreSQL costing one retry rather than an error, is kept
where it is safe: `run` retries once on a fresh connection when a PostgreSQL connection that sat idle
fails on a read, or on the *first* statement of a write (nothing was sent that could have been
applied). Any other driver failure closes the connection and surfaces as gate.errors.Unavailable. An
in-memory SQLite database (one shared connection, tests) is used through the engine's pool as before,
since it cannot be opened twice.
"""

from __future__ import annotations

import contextlib
import select
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

from sqlalchemy import Engine
from sqlalchemy.pool import StaticPool

from gate.errors import Unavailable

__all__ = [
    "DirectConnections",
    "FirstStatement",
    "pg_exec",
    "pg_pipeline",
    "placeholders",
    "read_time",
    "sqlite_time",
]

T = TypeVar("T")


def placeholders(count: int, postgres: bool) -> str:
    """`count` positional placeholders in the driver's spelling, comma-separated: for `IN (...)`."""
    return ", ".join(["%s" if postgres else "?"] * count)


def sqlite_time(utc: datetime) -> str:
    """SQLAlchemy's SQLite DateTime text for an aware UTC time: "YYYY-MM-DD HH:MM:SS.ffffff"."""
    # isoformat gives the same text for four-digit years at a fraction of strftime's cost.
    if utc.year >= 1000:
        return utc.isoformat(" ", "microseconds")[:26]
    return utc.strftime("%Y-%m-%d %H:%M:%S.%f")


def read_time(value: Any) -> datetime | None:
    """A time column as SQLModel's UTCDateTime reads it, from a plain DBAPI row: aware UTC or None.

    SQLite's text is UTC without an offset; psycopg gives an aware datetime in the session's zone.
    """
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    when: datetime = value
    return when.replace(tzinfo=UTC) if when.utcoffset() is None else when.astimezone(UTC)


def pg_exec(conn: Any, sql: bytes, params: Sequence[bytes | None] = ()) -> Any:
    """Run one statement through the libpq connection under a psycopg connection; return its PGresult.

    `sql` uses PostgreSQL's own $1, $2… placeholders and `params` are text-format values (None is NULL),
    so nothing is adapted in Python. For the statements on every CheckPromotion: psycopg's cursor spends
    ~80 µs of CPU (with the GIL held) on a statement that libpq sends and reads in ~20, and releases the
    GIL while it waits for the server. A failed statement raises the error psycopg would have raised
    for it (an IntegrityError for a unique violation…); a lost connection raises OperationalError, so
    DirectConnections treats both exactly as it treats psycopg's own.
    """
    pgconn = conn.pgconn
    # Statements without values (DDL, one-offs) are not worth a name on the server.
    name = _prepared(conn, sql) if params else None
    values = list(params)
    result = pgconn.exec_params(sql, values) if name is None else pgconn.exec_prepared(name, values)
    if result.status in (_PG_TUPLES_OK, _PG_COMMAND_OK):
        return result
    _raise_for(conn, result)


def pg_pipeline(conn: Any, statements: Sequence[tuple[bytes, Sequence[bytes | None] | None]]) -> list[Any]:
    """Send `statements` (each SQL with $n placeholders and its text-format values) as one libpq pipeline.

    One round trip for all of them: the results come back in order, one PGresult each. A statement
    that fails makes the server skip the rest until the pipeline's end (in a transaction block, which
    is then aborted: the caller rolls back); its error is raised once every result has been read, as
    `pg_exec` raises it. A lost connection raises OperationalError at once (the connection is then
    unusable and is discarded by DirectConnections).
    """
    pgconn = conn.pgconn
    names = [_prepared(conn, sql) if params else None for sql, params in statements]
    pgconn.enter_pipeline_mode()
    for (sql, params), name in zip(statements, names, strict=True):
        if name is None:
            pgconn.send_query_params(sql, None if params is None else list(params))
        else:
            pgconn.send_query_prepared(name, list(params or ()))  # params is non-empty here
    pgconn.pipeline_sync()
    # psycopg keeps its connections non-blocking: send what libpq buffered, waiting (without the GIL)
    # for the socket as needed.
    while pgconn.flush():
        _wait_for(pgconn.socket, select.POLLIN | select.POLLOUT)
    results: list[Any] = []
    failed: Any = None
    while True:
        while pgconn.is_busy():
            _wait_for(pgconn.socket, select.POLLIN)
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:  # the end of one statement's results
            continue
        status = result.status
        if status == _PG_PIPELINE_SYNC:
            break
        if status == _PG_FATAL_ERROR and failed is None:
            failed = result
        results.append(result)
    pgconn.exit_pipeline_mode()
    if failed is not None:
        raise _pg_errors().error_from_result(failed, conn.info.encoding)
    return results


PREPARED_PER_CONNECTION = 32
"""The most statements pg_exec and pg_pipeline prepare on one connection; later ones are sent unnamed."""

# Each connection's prepared statements: SQL text -> statement name. Keyed by the libpq connection, so a
# connection opened again (after a failure) starts with none; weakly, so a closed one is forgotten.
_PREPARED: weakref.WeakKeyDictionary[Any, dict[bytes, bytes]] = weakref.WeakKeyDictionary()


def _prepared(conn: Any, sql: bytes) -> bytes | None:
    # The name `sql` is prepared under on this connection, preparing it the first time (one round trip,
    # once per statement and connection). Parsing and planning an INSERT of 11 parameters on every
    # call cost the server more than the loopback round trip did: a journal append took ~0.65 ms with
    # unnamed statements and ~0.53 ms with prepared ones (measured side by side). The statements are
    # gate's own, few and fixed, but the journal's multi-row INSERTs vary with the group's size:
    # past PREPARED_PER_CONNECTION the rest go unnamed, as before, rather than pile up on the server.
    pgconn = conn.pgconn
    names = _PREPARED.setdefault(pgconn, {})
    name = names.get(sql)
    if name is not None or len(names) >= PREPARED_PER_CONNECTION:
        return name
    name = f"gate_{len(names)}".encode()
    result = pgconn.prepare(name, sql)
    if result.status != _PG_COMMAND_OK:
        _raise_for(conn, result)
    names[sql] = name
    return name


def _raise_for(conn: Any, result: Any) -> NoReturn:
    # A failed statement's own error, as psycopg would raise it (IntegrityError for a unique violation…);
    # a lost connection is OperationalError, which DirectConnections retries on a fresh one.
    pgconn = conn.pgconn
    if pgconn.status != _PG_CONNECTION_OK:
        message = pgconn.error_message or b"the connection to the server was lost"
        raise _pg_errors().OperationalError(message.decode("utf-8", "replace").strip())
    raise _pg_errors().error_from_result(result, conn.info.encoding)


def _wait_for(fd: int, events: int) -> None:
    # poll, not select: a busy server's descriptors pass select's limit of 1,024. Blocks without the
    # GIL; an error or hang-up returns too, and libpq's next call reports it.
    poller = select.poll()
    poller.register(fd, events)
    poller.poll()


# libpq's ExecStatus and ConnStatus values (psycopg.pq's enums) as plain ints, so this module imports
# nothing from psycopg unless PostgreSQL is used.
_PG_COMMAND_OK = 1
_PG_TUPLES_OK = 2
_PG_CONNECTION_OK = 0
_PG_FATAL_ERROR = 7
_PG_PIPELINE_SYNC = 10


def _pg_errors() -> Any:
    # Imported here: only PostgreSQL stores reach it, and they import psycopg anyway.
    import psycopg.errors

    return psycopg.errors


class FirstStatement(Exception):
    """Raised by `DirectConnections.run` work to say its first statement failed (safe to retry)."""

    def __init__(self, cause: BaseException) -> None:
        """Wrap the driver error the first statement raised."""
        super().__init__(str(cause))
        self.cause = cause


class DirectConnections:
    """A small set of DBAPI connections opened through `engine` and then owned here, not by its pool.

    `run(work)` lends one connection to `work(conn)` (the driver's own connection object: sqlite3 or
    psycopg). SQLite connections are in autocommit mode (the engine's connect hook takes transaction
    control away from the sqlite3 module), so `work` emits BEGIN IMMEDIATE / COMMIT itself; PostgreSQL
    connections are in autocommit mode when `autocommit` is set (single-statement reads), else `work`
    commits. At most `max_idle` connections are kept between calls; more are opened under concurrency
    and closed when returned. `on_open(conn)`, when given, runs once on each connection opened here,
    before any work (session settings; not on the one shared connection of an in-memory database,
    which is borrowed per call); its failure is a driver failure like any other.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        autocommit: bool,
        max_idle: int = 4,
        on_open: Callable[[Any], None] | None = None,
    ) -> None:
        """Lend connections of `engine`; PostgreSQL ones in autocommit mode when `autocommit`."""
        self._engine = engine
        self._on_open = on_open
        self._postgres = engine.dialect.name == "postgresql"
        self._autocommit = autocommit
        self._max_idle = max(0, max_idle)
        # One shared in-memory connection cannot be detached from its pool: borrow it per call.
        self._shared = isinstance(engine.pool, StaticPool)
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self._closed = False
        dbapi = engine.dialect.dbapi
        assert dbapi is not None
        self._errors: tuple[type[BaseException], ...] = (dbapi.OperationalError, dbapi.InterfaceError)

    @property
    def postgres(self) -> bool:
        """True when the connections are psycopg's (placeholders %(name)s), False for sqlite3 (:name)."""
        return self._postgres

    def run(self, work: Callable[[Any], T], *, idempotent: bool = False) -> T:
        """Call `work(connection)` on a lent connection and return its result.

        Driver failures (connection lost, database locked past the busy timeout) become Unavailable and
        the connection is closed. A failure on a connection that had been idle is retried once on a
        fresh one when it cannot have applied anything: `work` is `idempotent` (a read), or it raised
        FirstStatement. Other exceptions propagate after the connection is rolled back and returned.
        """
        if self._shared:
            return self._run_shared(work)
        conn, result = self._first(work, idempotent)
        self._give_back(conn, rollback=False)
        return result

    def _first(self, work: Callable[[Any], T], idempotent: bool) -> tuple[Any, T]:
        """`work(conn)` on a lent connection, retried once as `run` says; the connection stays lent."""
        for attempt in (0, 1):
            # The retry takes a new connection: another idle one may have gone stale the same way (a
            # server restart or terminated sessions leave every idle connection dead at once).
            conn, reused = self._take(fresh=attempt > 0)
            try:
                return conn, work(conn)
            except FirstStatement as e:
                self._discard(conn)
                if self._retry(reused, attempt):
                    continue
                raise _unavailable(e.cause) from e.cause
            except self._errors as e:
                self._discard(conn)
                if idempotent and self._retry(reused, attempt):
                    continue
                raise _unavailable(e) from e
            except BaseException:
                self._give_back(conn, rollback=True)
                raise
        raise AssertionError("unreachable")  # the second attempt always returns or raises

    @contextlib.contextmanager
    def lend(self, first: Callable[[Any], T]) -> Iterator[tuple[Any, T]]:
        """Lend a connection for a streamed read: `first(conn)` runs, then the block reads on.

        For reads whose rows are handed on while more statements follow on the same connection (a
        cursor read in batches between other queries), which `run` cannot express. `first` is retried
        like an idempotent `run` (a PostgreSQL connection that went stale while idle); nothing after it
        is, since rows may already have left. A driver failure in the block closes the connection and
        surfaces as Unavailable; on exit, however the block ends (a consumer that stops early too), the
        connection is rolled back, which also ends a read transaction `first` began, and returned.
        """
        if self._shared:
            fairy = self._engine.raw_connection()
            try:
                shared = fairy.driver_connection
                try:
                    yield shared, first(shared)
                except self._errors as e:
                    raise _unavailable(e) from e
                finally:
                    _rollback_quietly(shared)
            finally:
                fairy.close()
            return
        conn, result = self._first(first, idempotent=True)
        try:
            yield conn, result
        except self._errors as e:
            self._discard(conn)
            raise _unavailable(e) from e
        except BaseException:
            self._give_back(conn, rollback=True)
            raise
        self._give_back(conn, rollback=True)

    def _retry(self, reused: bool, attempt: int) -> bool:
        # Only a PostgreSQL connection goes stale while idle (server restarted, idle timeout); a SQLite
        # failure (locked past the busy timeout) would only be waited out twice.
        return self._postgres and reused and attempt == 0

    def close(self) -> None:
        """Close every idle connection; connections lent out are closed when returned."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            _close_quietly(conn)

    def _run_shared(self, work: Callable[[Any], T]) -> T:
        fairy = self._engine.raw_connection()
        try:
            try:
                return work(fairy.driver_connection)
            except FirstStatement as e:
                raise _unavailable(e.cause) from e.cause
            except self._errors as e:
                raise _unavailable(e) from e
            except BaseException:
                _rollback_quietly(fairy.driver_connection)
                raise
        finally:
            fairy.close()

    def _take(self, *, fresh: bool = False) -> tuple[Any, bool]:
        with self._lock:
            if self._closed:
                raise Unavailable("database unavailable: the store is closed")
            if self._idle and not fresh:
                return self._idle.pop(), True
        try:
            fairy = self._engine.raw_connection()
        except Exception as e:
            orig = getattr(e, "orig", None) or e
            raise _unavailable(orig) from e
        conn: Any = fairy.driver_connection
        assert conn is not None  # a live checkout always has its driver connection
        # Detached: the pool forgets it (no reset-on-return, no pre-ping); closing it is ours to do.
        fairy.detach()
        if self._postgres and self._autocommit:
            conn.autocommit = True
        if self._on_open is not None:
            try:
                self._on_open(conn)
            except self._errors as e:
                _close_quietly(conn)
                raise _unavailable(e) from e
            except BaseException:
                _close_quietly(conn)
                raise
        return conn, False

    def _give_back(self, conn: Any, *, rollback: bool) -> None:
        if rollback and not _rollback_quietly(conn):
            _close_quietly(conn)
            return
        with self._lock:
            if not self._closed and len(self._idle) < self._max_idle:
                self._idle.append(conn)
                return
        _close_quietly(conn)

    def _discard(self, conn: Any) -> None:
        _rollback_quietly(conn)
        _close_quietly(conn)


def _unavailable(error: BaseException) -> Unavailable:
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return Unavailable(f"database unavailable: {first}")


def _rollback_quietly(conn: Any) -> bool:
    # Ends whatever transaction `work` left open. sqlite3's rollback() asks SQLite itself whether a
    # transaction is open, so it also ends one begun by an explicit BEGIN IMMEDIATE.
    try:
        conn.rollback()
        return True
    except Exception:
        return False


def _close_quietly(conn: Any) -> None:
    # A connection that cannot even close is already gone.
    with contextlib.suppress(Exception):
        conn.close()
