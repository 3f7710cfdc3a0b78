"""The one way the stores open sessions: reads on the engine, writes in a transaction on its writer.

Every store class (repository, exceptions, tokens) inherits this, so database errors are translated
the same way everywhere and SQLite writes always begin IMMEDIATE.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import Engine
from sqlmodel import Session

from gate.store.db import database_errors, write_engine


class SessionScope:
    """Base for stores: `_read()` and `_write()` session context managers over one engine."""

    def __init__(self, engine: Engine) -> None:
        """Use an engine from gate.store.db.create_engine_for whose schema is migrated."""
        self._engine = engine
        self._writer = write_engine(engine)

    @contextlib.contextmanager
    def _read(self) -> Iterator[Session]:
        with database_errors(), Session(self._engine) as session:
            yield session

    @contextlib.contextmanager
    def _write(self) -> Iterator[Session]:
        # database_errors is outermost so that failures at COMMIT are translated too.
        with database_errors(), Session(self._writer) as session, session.begin():
            yield session
