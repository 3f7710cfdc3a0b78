"""SQLModel table definitions: the database schema of gate, and nothing else.

Rows defined here never leave gate/store; gate/store/repository.py converts them to gate.domain
dataclasses inside the session. The Alembic migrations in gate/store/migrations/versions create exactly
this schema (tests compare the two), so a change here needs a new migration.

Conventions:
- Datetime fields are `datetime` and so map to SQLModel's UTCDateTime: aware UTC in, aware UTC out, on
  SQLite (which has no time zones) as well as PostgreSQL.
- Lists and records (diff_ids, aliases, scan targets, violations) are JSON in TEXT columns: they are
  only ever read whole, and TEXT behaves the same on both backends.
- Strings default to "" rather than NULL so "absent" has one spelling.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

__all__ = [
    "POSTGRES_ONLY",
    "AffectedChangeRow",
    "AffectedChangesMetaRow",
    "AlertRow",
    "ApiTokenRow",
    "AuditHeadRow",
    "AuditRecordRow",
    "BaseRow",
    "CurrentScanRow",
    "DecisionRow",
    "FindingIdRow",
    "FindingRow",
    "ImageChainRow",
    "ImagePlatformRow",
    "ImageRow",
    "ImageTagRow",
    "InputGenerationRow",
    "PromotionRow",
    "RescanFlagRow",
    "ScanJobRow",
    "VulnExceptionRow",
    "metadata",
    "table_of",
]

metadata = SQLModel.metadata


def table_of(model: type[SQLModel]) -> Table:
    """The Core Table behind a table=True model, for bulk statements that bypass the ORM."""
    table = getattr(model, "__table__", None)
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not a table model")
    return table


class ImageRow(SQLModel, table=True):
    """One image, keyed by manifest digest (or by config digest for a docker-archive without one)."""

    __tablename__ = "images"

    digest: str = Field(primary_key=True)
    # A docker-archive image is first stored under its config digest; looking up by config digest lets
    # the same image be found again once a registry manifest digest is known.
    config_digest: str = Field(default="", index=True)
    # Where the image was last seen; the stage is parsed from the repository path at that time.
    # ("registry" is reserved by SQLAlchemy's declarative base, hence registry_host.)
    registry_host: str = ""
    repository: str = ""
    stage: str | None = Field(default=None, index=True)
    diff_ids: str = Field(default="[]", sa_type=Text)
    os: str = ""
    first_seen: datetime
    last_seen: datetime
    # Facts from the image config and manifest that policy rules read (root user, required labels,
    # the self-declared base). "user" is reserved in PostgreSQL, hence config_user.
    config_user: str = ""
    labels: str = Field(default="[]", sa_type=Text)  # JSON list of [key, value]
    annotations: str = Field(default="[]", sa_type=Text)  # JSON list of [key, value]


class ImageChainRow(SQLModel, table=True):
    """The OCI ChainID of every layer prefix of an image: (digest, depth) → chain_id.

    Depth counts layers (1 = the first layer alone). A base with n layers and ChainID c has as
    descendants exactly the images with a row (depth n, chain_id c), so "what is built on B?" and
    "which catalogued bases does image I start with?" are both one indexed lookup, whatever the number
    of images. Derived from images.diff_ids and written with it.
    """

    __tablename__ = "image_chains"
    __table_args__ = (Index("ix_image_chains_chain_depth", "chain_id", "depth"),)

    digest: str = Field(primary_key=True, foreign_key="images.digest", ondelete="CASCADE")
    depth: int = Field(primary_key=True)
    chain_id: str


class ImagePlatformRow(SQLModel, table=True):
    """One platform of an image index: (index digest, os/arch[/variant]) → the platform's image digest.

    Both ends are rows of `images`: the index row carries the name (repository, tags, stage), each
    platform image its own config, layer chains and findings. `position` keeps the index's order.
    """

    __tablename__ = "image_platforms"
    __table_args__ = (
        # "Which indexes contain this platform image?" without a scan of the table.
        Index("ix_image_platforms_child", "child_digest"),
    )

    index_digest: str = Field(primary_key=True, foreign_key="images.digest", ondelete="CASCADE")
    platform: str = Field(primary_key=True)
    child_digest: str = Field(foreign_key="images.digest", ondelete="CASCADE")
    position: int = 0


class BaseRow(SQLModel, table=True):
    """A catalogued base image, identified by its layer chain; name and digest are each unique."""

    __tablename__ = "bases"
    __table_args__ = (
        UniqueConstraint("name", name="uq_bases_name"),
        # Candidate bases of an image: bases whose (chain_id, layers) is one of the image's prefixes.
        Index("ix_bases_chain_id", "chain_id"),
    )

    digest: str = Field(primary_key=True)
    name: str
    tier: str
    reference: str = Field(default="", sa_type=Text)
    diff_ids: str = Field(default="[]", sa_type=Text)  # JSON list
    layers: int  # len(diff_ids): the depth at which descendants carry this chain_id
    chain_id: str
    status: str
    superseded_by: str = ""  # successor digest (a base in this table) once deprecated
    deprecated_at: datetime | None = None
    grace_until: datetime | None = None
    registered_at: datetime


class ImageTagRow(SQLModel, table=True):
    """A tag under which an image was seen in one registry repository."""

    __tablename__ = "image_tags"
    __table_args__ = (
        UniqueConstraint("digest", "registry_host", "repository", "tag", name="uq_image_tags_ref"),
        # Resolving "registry/repository:tag" to a digest without asking the registry.
        Index("ix_image_tags_ref", "registry_host", "repository", "tag"),
    )

    id: int | None = Field(default=None, primary_key=True)
    digest: str = Field(foreign_key="images.digest", ondelete="CASCADE")
    registry_host: str = ""
    repository: str = ""
    tag: str
    first_seen: datetime


class ScanJobRow(SQLModel, table=True):
    """One scan of one digest by one scanner, queued, running or finished.

    `active_key` is "digest|scanner" while the job is QUEUED or RUNNING and NULL once it is terminal.
    Its UNIQUE constraint is the single-flight guarantee: a second active job for the same digest and
    scanner cannot be inserted by any process (NULLs never collide, on SQLite or PostgreSQL).
    """

    __tablename__ = "scan_jobs"
    __table_args__ = (
        # latest_jobs: the jobs of one digest, newest first.
        Index("ix_scan_jobs_digest_scanner_created", "digest", "scanner", "created_at"),
        UniqueConstraint("active_key", name="uq_scan_jobs_active_key"),
    )

    id: str = Field(primary_key=True)  # uuid4 hex
    digest: str
    scanner: str
    state: str
    image: str = ""
    # ScanTarget as JSON (kind, location, insecure, ca_file). Credentials are never stored: a resumed
    # job gets them again from configuration.
    target: str | None = Field(default=None, sa_type=Text)
    error: str = Field(default="", sa_type=Text)
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    scanner_version: str = ""
    db_version: str = ""
    db_updated_at: datetime | None = None
    finding_count: int = 0
    imported: bool = False
    active_key: str | None = None
    platform: str = ""  # os/arch[/variant] when the job scans one platform of a submitted index


class RescanFlagRow(SQLModel, table=True):
    """A manifest digest to scan again, and why (e.g. Clair's notifier reported a new vulnerability).

    One row per digest; a newer flag replaces the reason and time. No foreign key to images: Clair may
    notify about a manifest gate no longer (or never) stored, and the flag must not fail for that.
    """

    __tablename__ = "rescan_flags"

    digest: str = Field(primary_key=True)
    reason: str = Field(default="", sa_type=Text)
    flagged_at: datetime


class AuditRecordRow(SQLModel, table=True):
    """One audit record (gate/audit.py): append-only, hash-chained to the record before it.

    `seq` is assigned by the appender under the head lock, never by the database, so it is gap-free
    and part of the hashed content; a gap or a reused number is evidence of tampering.
    """

    __tablename__ = "audit_records"
    __table_args__ = (Index("ix_audit_records_subject_seq", "subject", "seq"),)

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    kind: str = Field(index=True)
    actor: str = Field(sa_type=Text)
    at: datetime
    subject: str = ""
    inputs_digest: str = ""
    result: str = ""
    policy_digest: str = ""
    details: str = Field(default="[]", sa_type=Text)  # JSON list of [key, value]
    prev_hash: str
    hash: str


class AuditHeadRow(SQLModel, table=True):
    """The single row (id 1) naming how many audit records exist and the last one's hash.

    Moved in the same transaction as each append; it is also the row appenders lock on PostgreSQL.
    A truncated tail shows as records missing below the head's count.
    """

    __tablename__ = "audit_head"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    count: int = 0
    hash: str
    updated_at: datetime | None = None


class CurrentScanRow(SQLModel, table=True):
    """Per digest and scanner, the latest SUCCEEDED job: "current findings" are that job's findings.

    Updated in the same transaction that stores the findings, so readers see either the old scan or
    the new one, never a mixture.
    """

    __tablename__ = "current_scans"

    digest: str = Field(primary_key=True)
    scanner: str = Field(primary_key=True)
    job_id: str = Field(foreign_key="scan_jobs.id", index=True)
    updated_at: datetime


class FindingRow(SQLModel, table=True):
    """One finding of one job; (job_id, seq) is its identity.

    A per-job sequence number instead of a database-generated id lets a whole scan be bulk inserted
    (findings and their finding_ids) without reading generated keys back.
    """

    __tablename__ = "findings"
    # No index beyond the primary key: every query reaches findings by job_id (through current_scans),
    # a job's findings are sorted in memory cheaply, and each extra index slows bulk ingest.

    job_id: str = Field(primary_key=True, foreign_key="scan_jobs.id", ondelete="CASCADE")
    seq: int = Field(primary_key=True)
    digest: str
    scanner: str
    vulnerability_id: str
    aliases: str = Field(default="[]", sa_type=Text)
    package: str = ""
    installed_version: str = ""
    fixed_version: str = ""
    fix_state: str = ""
    severity: int = 0  # scanners.interface.Severity value, so ORDER BY and >= work in SQL
    scanner_severity: str = ""
    finding_class: str = ""
    layer_diff_id: str = ""
    target: str = Field(default="", sa_type=Text)
    package_path: str = Field(default="", sa_type=Text)
    title: str = Field(default="", sa_type=Text)
    primary_url: str = Field(default="", sa_type=Text)


class FindingIdRow(SQLModel, table=True):
    """Every identifier of a finding (its id and each alias), upper-cased, for "who has CVE-X?".

    Upper-casing makes `cve-2024-1` and `CVE-2024-1` the same query; the finding itself keeps the
    scanner's spelling. The primary key leads with vuln_id so the one index serves both "findings
    with this id" and "does this finding have this id".

    Deliberately no foreign key to findings: these rows are derived, written only together with
    their findings in one transaction (SqlRepository._store_scan), and the per-row FK check cost
    about 40% of PostgreSQL ingest time. Whatever deletes findings must delete these too.
    """

    __tablename__ = "finding_ids"

    vuln_id: str = Field(primary_key=True)
    job_id: str = Field(primary_key=True)
    seq: int = Field(primary_key=True)


class DecisionRow(SQLModel, table=True):
    """One promotion decision as it was answered (the audit log proper lives in gate/audit.py)."""

    __tablename__ = "decisions"
    __table_args__ = (Index("ix_decisions_digest_evaluated", "digest", "evaluated_at"),)

    id: int | None = Field(default=None, primary_key=True)
    digest: str
    from_stage: str
    to_stage: str
    allowed: bool
    state: str
    policy_digest: str = ""
    evaluated_at: datetime
    scanned_at: datetime | None = None
    violations: str = Field(default="[]", sa_type=Text)  # JSON list of Violation fields
    warnings: str = Field(default="[]", sa_type=Text)  # JSON list of strings
    details: str = Field(default="[]", sa_type=Text)  # JSON list of [key, value]
    summary: str = Field(default="", sa_type=Text)


class PromotionRow(SQLModel, table=True):
    """One promotion recorded in the ledger (gate/promotion.py); never updated, never deleted.

    "Which digests are in stage S" is the latest row per digest with to_stage S, hence the index
    leading with (to_stage, digest). decision_id points at the decision that allowed it.
    """

    __tablename__ = "promotions"
    __table_args__ = (Index("ix_promotions_stage_digest_at", "to_stage", "digest", "promoted_at"),)

    id: str = Field(primary_key=True)
    digest: str = Field(index=True)
    from_stage: str
    to_stage: str
    target: str = Field(default="", sa_type=Text)
    policy_digest: str = ""
    findings_digest: str = ""
    decision_id: int = Field(foreign_key="decisions.id")
    actor: str = ""
    promoted_at: datetime
    expires_at: datetime
    breakglass: bool = False
    breakglass_reason: str = Field(default="", sa_type=Text)


class VulnExceptionRow(SQLModel, table=True):
    """One exception (gate/store/exceptions.py): a vulnerability accepted in a scope until `expires_at`.

    Never deleted: a revoked or expired exception stays as the record of what was accepted, by whom.
    Verdicts read the unrevoked ones, hence the index on revoked_at.
    """

    __tablename__ = "vuln_exceptions"

    id: str = Field(primary_key=True)
    vulnerability_id: str = Field(index=True)
    scope_kind: str  # digest | repo | base | transition
    scope_value: str = Field(sa_type=Text)
    expires_at: datetime
    owner: str = ""
    ticket: str = ""
    reason: str = Field(default="", sa_type=Text)
    approver: str = ""
    requested_by: str = ""
    justification: str = ""
    created_at: datetime
    revoked_at: datetime | None = Field(default=None, index=True)
    revoked_by: str = ""


class AlertRow(SQLModel, table=True):
    """One alert (gate/alerts.py), kept so no alert is ever sent twice, across rescans and restarts.

    `dedupe_key` is unique: "vuln|<digest>|<vulnerability id>" for a promoted digest that started
    failing p's policy (one alert per digest + vulnerability, ever), "breakglass|<id>" for each
    breakglass use. `sent_at` stays NULL until the webhook accepted it; delivery is retried until then.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("dedupe_key", name="uq_alerts_dedupe_key"),
        # The delivery loop reads the unsent ones, oldest first.
        Index("ix_alerts_sent_created", "sent_at", "created_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str
    kind: str  # "vulnerability" | "breakglass"
    digest: str
    vulnerability_id: str = ""
    payload: str = Field(default="{}", sa_type=Text)  # the JSON body POSTed to the webhook
    created_at: datetime
    sent_at: datetime | None = None
    attempts: int = 0
    last_error: str = Field(default="", sa_type=Text)


class ApiTokenRow(SQLModel, table=True):
    """One API token (gate/store/tokens.py): its SHA-256 only, never the token; revoked rows stay.

    `name` is the key (the principal is `token:<name>`, so a name is never reused); `token_hash` is
    unique because callers are found by it. `roles` is a comma-separated list of gate.tokens.Role values.
    """

    __tablename__ = "api_tokens"
    __table_args__ = (UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),)

    name: str = Field(primary_key=True)
    token_hash: str
    roles: str
    created_at: datetime
    created_by: str = ""
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


class InputGenerationRow(SQLModel, table=True):
    """A counter bumped, in the same transaction, by every write that can change a verdict's inputs.

    `key` is "*" for inputs every verdict reads (the base catalog, exceptions) or an image digest for
    that image's own inputs (its record, scan jobs, findings, rescan flag). A cached verdict remembers
    the counters it was computed under and is used only while they are unchanged, so a write by any
    replica invalidates it at once (gate/verdicts.py).
    """

    __tablename__ = "input_generations"

    key: str = Field(primary_key=True)
    value: int = 0


class AffectedChangeRow(SQLModel, table=True):
    """One logged write that may change "affected images" answers: the digest it concerns, or '' for all.

    Written only by the triggers of migration 0011 (on current_scans, images, image_tags,
    image_platforms and bases), read and pruned by gate/store/changes.py. On SQLite the id is
    AUTOINCREMENT, so ids are never reused after a prune. On PostgreSQL the table has one more
    column, `xid` (the writing transaction, xid8, indexed), which this model cannot declare since
    SQLite has no such thing: see POSTGRES_ONLY.
    """

    __tablename__ = "affected_changes"
    __table_args__ = {"sqlite_autoincrement": True}

    # BIGSERIAL on PostgreSQL; on SQLite exactly INTEGER, which AUTOINCREMENT requires.
    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger().with_variant(Integer(), "sqlite")
    )
    digest: str = Field(sa_type=Text)


class AffectedChangesMetaRow(SQLModel, table=True):
    """The single row (id 1) saying how far affected_changes has been pruned (gate/store/changes.py).

    `pruned_below`: rows below it may be gone — on SQLite an id, on PostgreSQL a transaction id (an
    xid8's 64-bit value, held as BIGINT so both backends share this model). Never lowered.
    """

    __tablename__ = "affected_changes_meta"

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    pruned_below: int = Field(default=0, sa_type=BigInteger)


class AffectedAnswerRow(SQLModel, table=True):
    """A stored FindAffectedImagesPages answer over every stage (gate/server/affected_answers.py).

    `vuln_id` is the upper-cased search key; `body` the encoded rows and their groups in `format`;
    `mark` the change-feed mark (gate/store/changes.py) of the snapshot the rows were read in. A reader
    patches the images changed since `mark`, so a stored answer is never wrong, only more or less
    work to bring up to date. Written whole, one statement, so body and mark always belong together.
    """

    __tablename__ = "affected_answers"

    vuln_id: str = Field(primary_key=True, sa_type=Text)
    format: str = Field(sa_type=Text)
    mark: str = Field(sa_type=Text)
    row_count: int
    body: bytes = Field(sa_type=LargeBinary)


POSTGRES_ONLY: frozenset[tuple[str, str]] = frozenset(
    {("affected_changes", "xid"), ("affected_changes", "ix_affected_changes_xid")}
)
"""(table, column or index) that migrations create on PostgreSQL only, which no model can declare.

Schema comparisons with this metadata (the tests) leave exactly these out.
"""
