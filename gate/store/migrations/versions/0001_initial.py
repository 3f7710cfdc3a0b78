"""Initial schema: images, tags, scan jobs, current scans, findings, finding ids, decisions.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _text(name: str) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.String(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("digest", sa.String(), nullable=False),
        _text("config_digest"),
        _text("registry_host"),
        _text("repository"),
        sa.Column("stage", sa.String(), nullable=True),
        sa.Column("diff_ids", sa.Text(), nullable=False),
        _text("os"),
        _when("first_seen"),
        _when("last_seen"),
        sa.PrimaryKeyConstraint("digest"),
    )
    op.create_index("ix_images_config_digest", "images", ["config_digest"])
    op.create_index("ix_images_stage", "images", ["stage"])

    op.create_table(
        "image_tags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(), nullable=False),
        _text("registry_host"),
        _text("repository"),
        _text("tag"),
        _when("first_seen"),
        sa.ForeignKeyConstraint(["digest"], ["images.digest"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digest", "registry_host", "repository", "tag", name="uq_image_tags_ref"),
    )
    op.create_index("ix_image_tags_ref", "image_tags", ["registry_host", "repository", "tag"])

    op.create_table(
        "scan_jobs",
        sa.Column("id", sa.String(), nullable=False),
        _text("digest"),
        _text("scanner"),
        _text("state"),
        _text("image"),
        sa.Column("target", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=False),
        _when("created_at"),
        _when("started_at", nullable=True),
        _when("finished_at", nullable=True),
        _text("scanner_version"),
        _text("db_version"),
        _when("db_updated_at", nullable=True),
        sa.Column("finding_count", sa.Integer(), nullable=False),
        sa.Column("imported", sa.Boolean(), nullable=False),
        sa.Column("active_key", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("active_key", name="uq_scan_jobs_active_key"),
    )
    op.create_index("ix_scan_jobs_digest_scanner_created", "scan_jobs", ["digest", "scanner", "created_at"])

    op.create_table(
        "current_scans",
        sa.Column("digest", sa.String(), nullable=False),
        sa.Column("scanner", sa.String(), nullable=False),
        sa.Column("job_id", sa.String(), nullable=False),
        _when("updated_at"),
        sa.ForeignKeyConstraint(["job_id"], ["scan_jobs.id"]),
        sa.PrimaryKeyConstraint("digest", "scanner"),
    )
    op.create_index("ix_current_scans_job_id", "current_scans", ["job_id"])

    op.create_table(
        "findings",
        sa.Column("job_id", sa.String(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        _text("digest"),
        _text("scanner"),
        _text("vulnerability_id"),
        sa.Column("aliases", sa.Text(), nullable=False),
        _text("package"),
        _text("installed_version"),
        _text("fixed_version"),
        _text("fix_state"),
        sa.Column("severity", sa.Integer(), nullable=False),
        _text("scanner_severity"),
        _text("finding_class"),
        _text("layer_diff_id"),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("package_path", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("primary_url", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["scan_jobs.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "seq"),
    )

    op.create_table(
        "finding_ids",
        sa.Column("vuln_id", sa.String(), nullable=False),
        sa.Column("job_id", sa.String(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("vuln_id", "job_id", "seq"),
    )

    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), nullable=False),
        _text("digest"),
        _text("from_stage"),
        _text("to_stage"),
        sa.Column("allowed", sa.Boolean(), nullable=False),
        _text("state"),
        _text("policy_digest"),
        _when("evaluated_at"),
        _when("scanned_at", nullable=True),
        sa.Column("violations", sa.Text(), nullable=False),
        sa.Column("warnings", sa.Text(), nullable=False),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_decisions_digest_evaluated", "decisions", ["digest", "evaluated_at"])


def downgrade() -> None:
    op.drop_table("decisions")
    op.drop_table("finding_ids")
    op.drop_table("findings")
    op.drop_table("current_scans")
    op.drop_table("scan_jobs")
    op.drop_table("image_tags")
    op.drop_table("images")
