"""Exceptions: a vulnerability accepted in a scope (digest, repo, base, transition) until an expiry.

Revision ID: 0007
Revises: 0006
Create Date: 2025-03-03
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "vuln_exceptions",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("vulnerability_id", sa.String(), nullable=False),
        sa.Column("scope_kind", sa.String(), nullable=False),
        sa.Column("scope_value", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("owner", sa.String(), nullable=False),
        sa.Column("ticket", sa.String(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("approver", sa.String(), nullable=False),
        sa.Column("requested_by", sa.String(), nullable=False),
        sa.Column("justification", sa.String(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_vuln_exceptions_vulnerability_id", "vuln_exceptions", ["vulnerability_id"])
    op.create_index("ix_vuln_exceptions_revoked_at", "vuln_exceptions", ["revoked_at"])


def downgrade() -> None:
    op.drop_index("ix_vuln_exceptions_revoked_at", "vuln_exceptions")
    op.drop_index("ix_vuln_exceptions_vulnerability_id", "vuln_exceptions")
    op.drop_table("vuln_exceptions")
