"""Stored affected-images answers: ready FindAffectedImagesPages answers shared by processes and restarts.

Creates `affected_answers`: for one vulnerability id (the upper-cased search key), the whole answer over
every stage as the encoded rows a server sends, with the change-feed mark (migration 0011) of the
snapshot it was read in and the format it was encoded in. A server that has not read the answer itself
(just started, another worker, another replica) starts from this and patches the images changed since
the mark, instead of reading thousands of rows for a common CVE (gate/server/affected_answers.py).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "affected_answers",
        sa.Column("vuln_id", sa.Text(), primary_key=True),
        sa.Column("format", sa.Text(), nullable=False),
        sa.Column("mark", sa.Text(), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Kept out of line but uncompressed: a body is read whole on a server's first call for the
        # id, where pglz's decompression of megabytes would be most of the read.
        op.execute("ALTER TABLE affected_answers ALTER COLUMN body SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.drop_table("affected_answers")
