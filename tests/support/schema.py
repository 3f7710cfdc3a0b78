"""The migrated schema compared with gate/store/tables.py, as the schema tests check it."""

from __future__ import annotations

import warnings
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.exc import SAWarning

from gate.store.tables import POSTGRES_ONLY, metadata


def _declared(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    # Leave out what migrations create on PostgreSQL only (no model can declare it): a column or an
    # index, named with its table.
    table = getattr(obj, "table", None)
    return table is None or (table.name, name) not in POSTGRES_ONLY


def schema_diff(connection: Connection) -> list[Any]:
    """Alembic's differences between the database behind `connection` and the models (types too)."""
    context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": _declared})
    with warnings.catch_warnings():
        # SQLAlchemy has no xid8 type; the column it cannot read is one POSTGRES_ONLY leaves out.
        warnings.filterwarnings("ignore", "Did not recognize type 'xid8'", SAWarning)
        return list(compare_metadata(context, metadata))
