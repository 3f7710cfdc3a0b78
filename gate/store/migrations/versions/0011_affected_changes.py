"""Affected-images change feed: a trigger-fed log of the digests whose affected-images rows may change.

Creates `affected_changes` (one row per written row of current_scans, images, image_tags,
image_platforms or bases: the digest it concerns, or '' for a base-catalog change that concerns every
answer) and the one-row `affected_changes_meta` (how far the log has been pruned), with the triggers
that fill the log. Triggers rather than application code so that no write path — the ORM, the direct job
writes, the bulk fill, a hand-run statement — can forget to log. findings and finding_ids get none: a
job's findings never change once written, and their ingest is the hot path. gate/store/changes.py reads
and prunes the log.

On PostgreSQL each row also carries the writing transaction's id (`xid`), which is what lets a reader
tell exactly which changes its earlier snapshot did not see (see gate/store/changes.py). SQLite writers
are serialized, so the AUTOINCREMENT id alone orders commits there.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The images columns an affected-images answer reads: everything but last_seen, which every sighting
# moves and which no answer shows.
_IMAGE_COLUMNS = (
    "digest",
    "config_digest",
    "registry_host",
    "repository",
    "stage",
    "diff_ids",
    "os",
    "first_seen",
    "config_user",
    "labels",
    "annotations",
)

# (table, the column naming the digest a row concerns); bases rows concern every answer.
_DIGEST_TABLES = (
    ("current_scans", "digest"),
    ("image_tags", "digest"),
    ("image_platforms", "child_digest"),
)
_ALL_TABLES = ("current_scans", "images", "image_tags", "image_platforms", "bases")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _upgrade_postgres()
    else:
        _upgrade_sqlite()


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name in _trigger_names(postgres):
        table = name.split("__", 1)[1].rsplit("__", 1)[0]
        op.execute(f"DROP TRIGGER IF EXISTS {name}" + (f" ON {table}" if postgres else ""))
    if postgres:
        for function in (
            "affected_changes_log_digest",
            "affected_changes_log_child",
            "affected_changes_log_all",
        ):
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
    op.drop_table("affected_changes_meta")
    op.drop_table("affected_changes")


def _trigger_names(postgres: bool) -> list[str]:
    # Named affected_changes__<table>__<event> so downgrade can find each one's table.
    if postgres:
        return [
            *(f"affected_changes__{t}__write" for t in _ALL_TABLES),
            "affected_changes__images__update",
            *(f"affected_changes__{t}__truncate" for t in _ALL_TABLES),
        ]
    return [f"affected_changes__{t}__{e}" for t in _ALL_TABLES for e in ("insert", "update", "delete")]


def _create_meta() -> None:
    op.execute(
        "CREATE TABLE affected_changes_meta (id INTEGER NOT NULL PRIMARY KEY, pruned_below BIGINT NOT NULL)"
    )
    op.execute("INSERT INTO affected_changes_meta (id, pruned_below) VALUES (1, 0)")


def _upgrade_sqlite() -> None:
    # AUTOINCREMENT: ids are never reused after a prune deleted the newest rows, so a reader's mark
    # (the highest id assigned) always names the same point in the log.
    op.execute(
        "CREATE TABLE affected_changes (id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, digest TEXT NOT NULL)"
    )
    _create_meta()

    def trigger(table: str, event: str, body: str, when: str = "") -> None:
        spec = f"UPDATE OF {', '.join(_IMAGE_COLUMNS)}" if (table, event) == ("images", "update") else event
        op.execute(
            f"CREATE TRIGGER affected_changes__{table}__{event} AFTER {spec.upper()} ON {table} "
            f"FOR EACH ROW {when}BEGIN {body} END"
        )

    log = "INSERT INTO affected_changes (digest) VALUES"
    for table, column in (*_DIGEST_TABLES, ("images", "digest")):
        trigger(table, "insert", f"{log} (NEW.{column});")
        trigger(table, "delete", f"{log} (OLD.{column});")
        # A row moved to another digest changes both; the second insert is skipped in the usual case.
        moved = (
            f"INSERT INTO affected_changes (digest) SELECT OLD.{column} "
            f"WHERE OLD.{column} IS NOT NEW.{column};"
        )
        if table == "images":
            # UPDATE OF alone fires for a column merely named in SET; WHEN skips statements that
            # rewrote the columns with the values they had (a bulk writer setting every column).
            changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _IMAGE_COLUMNS)
            trigger(table, "update", f"{log} (NEW.{column}); {moved}", f"WHEN {changed} ")
        else:
            trigger(table, "update", f"{log} (NEW.{column}); {moved}")
    for event in ("insert", "update", "delete"):
        trigger("bases", event, f"{log} ('');")


def _upgrade_postgres() -> None:
    # xid: the top-level transaction that wrote the row (pg_current_xact_id is the top-level id even
    # inside a savepoint), so the row can be tested against a reader's snapshot.
    op.execute(
        "CREATE TABLE affected_changes (id BIGSERIAL PRIMARY KEY, digest TEXT NOT NULL, "
        "xid xid8 NOT NULL DEFAULT pg_current_xact_id())"
    )
    op.execute("CREATE INDEX ix_affected_changes_xid ON affected_changes (xid)")
    _create_meta()
    # One function per column name: plpgsql resolves NEW.<column> per table, so current_scans,
    # images and image_tags share the first.
    for function, column in (
        ("affected_changes_log_digest", "digest"),
        ("affected_changes_log_child", "child_digest"),
    ):
        op.execute(
            f"CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "  # noqa: S608 - names
            f"IF TG_OP <> 'DELETE' THEN INSERT INTO affected_changes (digest) VALUES (NEW.{column}); END IF; "
            f"IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.{column} IS DISTINCT FROM NEW.{column}) THEN "
            f"INSERT INTO affected_changes (digest) VALUES (OLD.{column}); END IF; "
            "RETURN NULL; END $$"
        )
    # Every answer: a base-catalog row, or a TRUNCATE of any logged table (no rows to name).
    op.execute(
        "CREATE FUNCTION affected_changes_log_all() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "INSERT INTO affected_changes (digest) VALUES (''); RETURN NULL; END $$"
    )

    def trigger(name: str, spec: str, table: str, level: str, function: str, when: str = "") -> None:
        op.execute(
            f"CREATE TRIGGER affected_changes__{table}__{name} AFTER {spec} ON {table} "
            f"FOR EACH {level} {when}EXECUTE FUNCTION {function}()"
        )

    for table, column in _DIGEST_TABLES:
        function = "affected_changes_log_child" if column == "child_digest" else "affected_changes_log_digest"
        trigger("write", "INSERT OR UPDATE OR DELETE", table, "ROW", function)
    trigger("write", "INSERT OR DELETE", "images", "ROW", "affected_changes_log_digest")
    # As on SQLite: named columns only (not last_seen), and only when a value really changed.
    changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in _IMAGE_COLUMNS)
    trigger(
        "update",
        f"UPDATE OF {', '.join(_IMAGE_COLUMNS)}",
        "images",
        "ROW",
        "affected_changes_log_digest",
        f"WHEN ({changed}) ",
    )
    trigger("write", "INSERT OR UPDATE OR DELETE", "bases", "ROW", "affected_changes_log_all")
    for table in _ALL_TABLES:
        trigger("truncate", "TRUNCATE", table, "STATEMENT", "affected_changes_log_all")
