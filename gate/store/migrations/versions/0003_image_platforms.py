"""Multi-platform images: the index → platform image table, and the platform a scan job covers.

Creates `image_platforms` (index digest, platform → platform image digest, position) and adds
`scan_jobs.platform`. Existing rows need no backfill: indexes stored before this revision were stored as
their linux/amd64 image and keep meaning exactly that until they are scanned again.

Revision ID: 0003
Revises: 0002
Create Date: 2025-02-15
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "image_platforms",
        sa.Column("index_digest", sa.String(), nullable=False),
        sa.Column("platform", sa.String(), nullable=False),
        sa.Column("child_digest", sa.String(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["index_digest"], ["images.digest"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["child_digest"], ["images.digest"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("index_digest", "platform"),
    )
    op.create_index("ix_image_platforms_child", "image_platforms", ["child_digest"])
    # server_default fills existing jobs (SQLite cannot add a NOT NULL column without one).
    with op.batch_alter_table("scan_jobs") as batch:
        batch.add_column(sa.Column("platform", sa.String(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("scan_jobs") as batch:
        batch.drop_column("platform")
    op.drop_index("ix_image_platforms_child", table_name="image_platforms")
    op.drop_table("image_platforms")
