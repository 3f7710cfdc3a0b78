"""Persistent state of gate: SQLModel tables, engines and migrations, and the SqlRepository.

Only this package imports sqlmodel/sqlalchemy; everything it hands out is a gate.domain value.
"""

from gate.store.db import create_engine_for, migrate
from gate.store.repository import SqlRepository

__all__ = ["SqlRepository", "create_engine_for", "migrate"]
