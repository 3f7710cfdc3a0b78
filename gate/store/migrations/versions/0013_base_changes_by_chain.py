"""Base-catalog changes name the layer chain they touch, not every answer.

Migration 0011 logged any write to `bases` as digest '' in `affected_changes`: every affected-images
answer had to be read whole after a base was added, renamed or removed, though a base changes the
attribution ("introduced_by", tier) of exactly the images built on it. From here a written base row logs
`chain:<its ChainID>` (the old and the new row's, when an update moves it), and gate/store/changes.py
expands that, in the reader's snapshot, to the images whose `image_chains` hold that ChainID — the
images whose lineage contains the base. An update that changes nothing attribution reads (status,
deprecation, successor, grace, reference) logs nothing. A base without a ChainID (none is stored so, but
a hand-written row could be) and a TRUNCATE still log '' (every answer).

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What a lineage's attribution reads of a base (gate/provenance.py: its chain, its layers, and
# "<tier> <name>" ordered by (tier, name, digest)).
_ATTRIBUTED = ("digest", "name", "tier", "diff_ids", "layers", "chain_id")


def _logged(row: str) -> str:
    # The log entry for one base row: its chain, or every answer when it has none.
    return f"CASE WHEN {row}.chain_id = '' THEN '' ELSE 'chain:' || {row}.chain_id END"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        _upgrade_postgres()
    else:
        _upgrade_sqlite()


def downgrade() -> None:
    # Back to 0011's triggers: any written base row concerns every answer.
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER affected_changes__bases__update ON bases")
        op.execute("DROP TRIGGER affected_changes__bases__write ON bases")
        op.execute("DROP FUNCTION affected_changes_log_base()")
        op.execute(
            "CREATE TRIGGER affected_changes__bases__write AFTER INSERT OR UPDATE OR DELETE ON bases "
            "FOR EACH ROW EXECUTE FUNCTION affected_changes_log_all()"
        )
        return
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER affected_changes__bases__{event}")
        op.execute(
            f"CREATE TRIGGER affected_changes__bases__{event} AFTER {event.upper()} ON bases "  # noqa: S608 - names
            "FOR EACH ROW BEGIN INSERT INTO affected_changes (digest) VALUES (''); END"
        )


def _upgrade_sqlite() -> None:
    log = "INSERT INTO affected_changes (digest)"
    changed = " OR ".join(f"OLD.{c} IS NOT NEW.{c}" for c in _ATTRIBUTED)
    bodies = {
        "insert": ("", f"{log} VALUES ({_logged('NEW')});"),
        "delete": ("", f"{log} VALUES ({_logged('OLD')});"),
        # The new chain, and the old one too when the row moved to another chain.
        "update": (
            f"WHEN {changed} ",
            f"{log} VALUES ({_logged('NEW')}); "
            f"{log} SELECT {_logged('OLD')} WHERE OLD.chain_id IS NOT NEW.chain_id;",
        ),
    }
    for event, (when, body) in bodies.items():
        op.execute(f"DROP TRIGGER affected_changes__bases__{event}")
        op.execute(
            f"CREATE TRIGGER affected_changes__bases__{event} AFTER {event.upper()} ON bases "
            f"FOR EACH ROW {when}BEGIN {body} END"
        )


def _upgrade_postgres() -> None:
    op.execute(
        "CREATE FUNCTION affected_changes_log_base() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "  # noqa: S608 - names
        f"IF TG_OP <> 'DELETE' THEN INSERT INTO affected_changes (digest) VALUES ({_logged('NEW')}); END IF; "
        "IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.chain_id IS DISTINCT FROM NEW.chain_id) THEN "
        f"INSERT INTO affected_changes (digest) VALUES ({_logged('OLD')}); END IF; "
        "RETURN NULL; END $$"
    )
    op.execute("DROP TRIGGER affected_changes__bases__write ON bases")
    changed = " OR ".join(f"OLD.{c} IS DISTINCT FROM NEW.{c}" for c in _ATTRIBUTED)
    op.execute(
        "CREATE TRIGGER affected_changes__bases__write AFTER INSERT OR DELETE ON bases "
        "FOR EACH ROW EXECUTE FUNCTION affected_changes_log_base()"
    )
    op.execute(
        f"CREATE TRIGGER affected_changes__bases__update AFTER UPDATE OF {', '.join(_ATTRIBUTED)} ON bases "
        f"FOR EACH ROW WHEN ({changed}) EXECUTE FUNCTION affected_changes_log_base()"
    )
