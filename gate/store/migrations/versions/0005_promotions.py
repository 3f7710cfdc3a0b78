"""Promotion ledger: one row per recorded promotion (gate/promotion.py), pointing at its decision.

Revision ID: 0005
Revises: 0004
Create Date: 2025-03-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "promotions",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("digest", sa.String(), nullable=False),
        sa.Column("from_stage", sa.String(), nullable=False),
        sa.Column("to_stage", sa.String(), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("policy_digest", sa.String(), nullable=False),
        sa.Column("findings_digest", sa.String(), nullable=False),
        sa.Column("decision_id", sa.Integer(), nullable=False),
        sa.Column("actor", sa.String(), nullable=False),
        sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("breakglass", sa.Boolean(), nullable=False),
        sa.Column("breakglass_reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["decision_id"], ["decisions.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_promotions_digest", "promotions", ["digest"])
    op.create_index("ix_promotions_stage_digest_at", "promotions", ["to_stage", "digest", "promoted_at"])


def downgrade() -> None:
    op.drop_index("ix_promotions_stage_digest_at", table_name="promotions")
    op.drop_index("ix_promotions_digest", table_name="promotions")
    op.drop_table("promotions")
