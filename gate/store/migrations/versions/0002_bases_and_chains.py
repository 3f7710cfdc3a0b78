"""Base-image catalog: image config facts, per-prefix layer chains, and the bases table.

Adds to `images` the config User, labels and manifest annotations; creates `image_chains` (the OCI
ChainID of every layer prefix of every image) and backfills it from the diff_ids already stored; creates
`bases`.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Rows per INSERT while backfilling image_chains; bounds memory on large stores.
_BATCH = 5000


def _chain_ids(diff_ids: Sequence[str]) -> list[str]:
    # The OCI image-spec ChainID, spelled out here rather than imported: a migration must keep doing
    # exactly what it did when it was written, whatever later happens to gate.provenance.
    out: list[str] = []
    for diff_id in diff_ids:
        if out:
            diff_id = "sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest()
        out.append(diff_id)
    return out


def _chain_rows(connection: sa.Connection) -> Iterator[dict[str, Any]]:
    result = connection.execute(sa.text("SELECT digest, diff_ids FROM images ORDER BY digest"))
    for digest, diff_ids in result:
        for depth, chain_id in enumerate(_chain_ids(json.loads(diff_ids or "[]")), start=1):
            yield {"digest": digest, "depth": depth, "chain_id": chain_id}


def upgrade() -> None:
    # server_default fills the existing rows (SQLite cannot add a NOT NULL column without one); new
    # rows always get explicit values from the application.
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("config_user", sa.String(), nullable=False, server_default=""))
        batch.add_column(sa.Column("labels", sa.Text(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("annotations", sa.Text(), nullable=False, server_default="[]"))

    chains = op.create_table(
        "image_chains",
        sa.Column("digest", sa.String(), nullable=False),
        sa.Column("depth", sa.Integer(), nullable=False),
        sa.Column("chain_id", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(["digest"], ["images.digest"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("digest", "depth"),
    )
    op.create_index("ix_image_chains_chain_depth", "image_chains", ["chain_id", "depth"])

    op.create_table(
        "bases",
        sa.Column("digest", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=False),
        sa.Column("tier", sa.String(), nullable=False),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("diff_ids", sa.Text(), nullable=False),
        sa.Column("layers", sa.Integer(), nullable=False),
        sa.Column("chain_id", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False),
        sa.Column("superseded_by", sa.String(), nullable=False),
        sa.Column("deprecated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("grace_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
        sa.UniqueConstraint("name", name="uq_bases_name"),
    )
    op.create_index("ix_bases_chain_id", "bases", ["chain_id"])

    batch_rows: list[dict[str, Any]] = []
    for row in _chain_rows(op.get_bind()):
        batch_rows.append(row)
        if len(batch_rows) >= _BATCH:
            op.bulk_insert(chains, batch_rows)
            batch_rows = []
    if batch_rows:
        op.bulk_insert(chains, batch_rows)


def downgrade() -> None:
    op.drop_table("bases")
    op.drop_table("image_chains")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("annotations")
        batch.drop_column("labels")
        batch.drop_column("config_user")
