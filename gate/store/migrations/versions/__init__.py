"""Alembic revisions, oldest first; each file is one schema step and is never edited once released."""
