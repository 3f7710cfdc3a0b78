"""Alembic environment: migrates the connection handed over by gate.store.db.migrate.

gate.store.db.migrate passes an open connection (inside a transaction it owns) in
`config.attributes["connection"]`. For developer use of the alembic CLI (e.g. `alembic -c
gate/store/migrations/alembic.ini revision --autogenerate`), a URL from the ini file or GATE_DB_URL is
used instead.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection

from gate.store.db import create_engine_for
from gate.store.tables import metadata

config = context.config


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata, literal_binds=True
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    handed_over = config.attributes.get("connection")
    if isinstance(handed_over, Connection):
        _run(handed_over)
        return
    if context.is_offline_mode():
        _run_offline()
        return
    # Developer CLI use only; the gate process always hands over a connection.
    url = os.environ.get("GATE_DB_URL") or config.get_main_option("sqlalchemy.url") or ""
    engine = create_engine_for(url)
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


_main()
