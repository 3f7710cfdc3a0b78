"""Alembic migration environment for gate's store (run through gate.store.db.migrate)."""
