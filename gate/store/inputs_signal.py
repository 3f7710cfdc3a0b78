"""A SQLite store's inputs epoch: a counter in shared memory that moves after every input write commits.

A kept verdict is confirmed by reading its input generations (gate/store/generations.py) — on SQLite
an in-process read, but one whose statement steps hand the GIL to another thread and back, and under
8 concurrent checks that hand-off cost more than the read (perf: half of the server's CPU in the
kernel, waking threads; skipping the read took 1,520 → 1,890 checks/s in one process). The epoch lets
a repeat skip it while nothing has been written.

The counter is 8 bytes in a file beside the database (`<db>.gate-inputs`), mapped shared by every
process that opens the database through gate.store.db (the workers of `gate serve --workers`, the CLI).
Every connection of such an engine carries TEMP triggers on `input_generations` that mark the
connection when a statement writes a counter; the connection's `commit()` then adds one to the epoch,
under a lock, AFTER SQLite has committed. Reading it is a memory load: no system call, no GIL hand-off.

Why that is exact (gate/verdicts.py relies on it): a reader notes the epoch E, THEN reads the
generations and finds them unchanged. Any input write that committed before that read is in it; any
that commits after it adds one to the epoch after its commit. The epoch only grows (increments are
serialized, so none is lost and it never goes back to E). So while the epoch still reads E, no input
write has finished since the read, and the generations read then still hold. A write is finished when
its epoch moves, before the RPC that made it returns: a check asked after that sees the new epoch.

What this does not cover, and how it is bounded: a process killed between SQLite's commit and its
increment (microseconds) leaves a write unsignalled. Readers therefore trust an epoch for at most
`VerdictCache`'s trust window (1 s) after the read that confirmed it, then read again. Writes that
bypass gate altogether (another tool editing the file) never bumped generations either.

An input-generation write outside a transaction would commit before any `commit()` could signal it,
so the trigger refuses it (no gate path does one). PostgreSQL has no shared file among replicas on
other hosts: it has no epoch, and its concurrent reads share statements instead
(gate/store/shared_reads.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import sqlite3
import struct
import threading
import weakref
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine

__all__ = ["InputsSignal", "connection_factory", "install_triggers", "register", "signal_of"]

_SIZE = 8
_COUNTER = struct.Struct("<Q")
_FUNCTION = "gate_inputs_written"

_SIGNALS: weakref.WeakKeyDictionary[Engine, InputsSignal] = weakref.WeakKeyDictionary()


class InputsSignal:
    """The epoch of one SQLite database file, shared by every process that maps `path`."""

    def __init__(self, path: str) -> None:
        """Open (creating it at 0) the counter file `path` and map it shared."""
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        # flock orders every open of the file: other processes, and other engines of this one, each
        # with its own open (a forked child would share this one; gate's workers are new processes).
        # This lock orders the threads that share this open, which flock does not.
        self._lock = threading.Lock()
        try:
            with self._locked():
                if os.fstat(self._fd).st_size < _SIZE:
                    os.ftruncate(self._fd, _SIZE)  # zero-filled: epoch 0
            self._map = mmap.mmap(self._fd, _SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(self._fd)
            raise
        # The engine that holds this signal is never told it is done with it: the map and the file
        # are released when the signal is collected, or by close().
        self._release = weakref.finalize(self, _release, self._map, self._fd)

    def current(self) -> int:
        """The epoch now: a memory load, safe from any thread and process.

        A load racing an increment may see a mix of the two values' bytes. Any value but E makes a
        reader read the generations again (safe); a mix equal to E is the value before the increment,
        as if the load came first (it did not finish after it).
        """
        return int(_COUNTER.unpack_from(self._map, 0)[0])

    def bump(self) -> int:
        """Add one to the epoch (after an input write committed); the new value."""
        with self._locked():
            value = _COUNTER.unpack_from(self._map, 0)[0] + 1
            _COUNTER.pack_into(self._map, 0, value)
        return int(value)

    def close(self) -> None:
        """Unmap and close the file (the epoch stays in it for every other process); idempotent."""
        self._release()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)


def _release(mapped: mmap.mmap, fd: int) -> None:
    mapped.close()
    os.close(fd)


class _SignallingConnection(sqlite3.Connection):
    """A sqlite3 connection that moves its database's epoch after committing an input write."""

    signal: InputsSignal  # set on the per-engine subclass connection_factory makes
    _inputs_written = False

    def commit(self) -> None:
        """Commit; if the transaction wrote input generations, then move the epoch."""
        super().commit()
        if self._inputs_written:
            self._inputs_written = False
            self.signal.bump()

    def rollback(self) -> None:
        """Roll back; whatever the transaction wrote is gone, so there is nothing to signal."""
        super().rollback()
        self._inputs_written = False

    def _written(self) -> int:
        # Called by the TEMP triggers, inside the writing statement.
        if not self.in_transaction:
            # Autocommit: SQLite commits when the statement ends, and no commit() would follow.
            raise sqlite3.OperationalError("input generations are written only inside a transaction")
        self._inputs_written = True
        return 0


def connection_factory(signal: InputsSignal) -> type[sqlite3.Connection]:
    """The sqlite3 connection class (sqlite3.connect's `factory`) whose commits signal `signal`."""
    return type("GateSqliteConnection", (_SignallingConnection,), {"signal": signal})


def install_triggers(dbapi_connection: Any) -> bool:
    """Mark `dbapi_connection` on every write to input_generations; False if it cannot be marked.

    Only a connection made by connection_factory can be, and only once the table exists (a
    connection opened before the migration that creates it is disposed after migrating, see
    gate.store.db.migrate).
    """
    if not isinstance(dbapi_connection, _SignallingConnection):
        return False
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'input_generations'")
        if cursor.fetchone() is None:
            return False
        dbapi_connection.create_function(_FUNCTION, 0, dbapi_connection._written)
        for when in ("INSERT", "UPDATE", "DELETE"):
            cursor.execute(
                f"CREATE TEMP TRIGGER IF NOT EXISTS gate_inputs_{when.lower()} "
                f"AFTER {when} ON main.input_generations BEGIN SELECT {_FUNCTION}(); END"
            )
        return True
    finally:
        cursor.close()


def register(engine: Engine, signal: InputsSignal) -> None:
    """Remember `signal` as `engine`'s (gate.store.db does, for SQLite files)."""
    _SIGNALS[engine] = signal


def signal_of(engine: Engine) -> InputsSignal | None:
    """The epoch of `engine`'s database, or None (PostgreSQL, in-memory SQLite)."""
    return _SIGNALS.get(engine)
