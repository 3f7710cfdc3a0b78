"""Use cases for vulnerability exceptions: add, list (expired, unused), revoke, OpenVEX import/export.

Like gate/service.py this speaks only domain types and Protocols (gate.ports). Verdicts read the
exceptions through GateService; which exception applies is decided by the pure policy
(gate/policy/exceptions.py). Every change is reported to the AuditSink as exception.add,
exception.revoke or exception.import, and fails when the audit record cannot be written.

Expiry: an `--expires` date without a time means "through that whole day, UTC" (the exception stops at
the next midnight). It must lie in the future and no further away than the smallest
`max_exception_days` of the transitions the scope can apply to (built-in 90).

The approver must not be the requester. With authentication on, the requester is the authenticated
principal (gate.tokens.Principal, e.g. `token:alice`) and the approver must name a different principal
(`token:alice`, `alice` and `alice@host` all name alice), so the rule binds. With authentication off
the requester is the caller's claimed actor (gRPC metadata gate-actor), and the check only stops honest
mistakes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from gate import openvex, provenance
from gate.domain import AuditEvent, ImageRecord, ScopeKind, Stage, VulnException
from gate.errors import InvalidArgument, NotFound
from gate.policy import Policy
from gate.policy.exceptions import parse_scope, scope_matches
from gate.ports import AuditSink, Clock, ExceptionStore, NullAudit, Repository
from gate.tokens import Principal

__all__ = ["ExceptionService", "ExceptionStatus", "ImportResult", "parse_expiry"]

_VULN_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._:-]{2,99}$")


def parse_expiry(text: str, field: str = "expires") -> datetime:
    """`2025-06-30` (through that day, UTC) or an RFC 3339 time such as `2025-06-30T12:00:00Z`."""
    cleaned = text.strip()
    if not cleaned:
        raise InvalidArgument("an expiry is required (e.g. 2025-06-30)", field)
    try:
        if len(cleaned) == 10:
            return datetime.combine(date.fromisoformat(cleaned) + timedelta(days=1), time(), UTC)
        when = datetime.fromisoformat(cleaned.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArgument(
            f"{text!r} is not a date (YYYY-MM-DD) or an RFC 3339 time (YYYY-MM-DDTHH:MM:SSZ)", field
        ) from None
    if when.tzinfo is None:
        raise InvalidArgument(f"{text!r} has no time zone; add Z or an offset", field)
    return when.astimezone(UTC)


@dataclass(frozen=True)
class ExceptionStatus:
    """An exception as listed: its state at `now`, and the stored images it currently covers."""

    exception: VulnException
    state: str  # active | expired | revoked
    matching_digests: tuple[str, ...]  # stored images with a current finding it covers

    @property
    def unused(self) -> bool:
        """Active but covering no current finding of any stored image: removable."""
        return self.state == "active" and not self.matching_digests


@dataclass(frozen=True)
class ImportResult:
    """What an OpenVEX import added, and what it left out (with why)."""

    added: tuple[VulnException, ...]
    ignored: tuple[str, ...]


def _same_person(approver: str, actor: str) -> bool:
    if isinstance(actor, Principal):
        # An authenticated requester is a principal; the approver must name a different one. "token:x",
        # "x" and "x@host" all name principal x, so none of them lets x approve x's own request.
        named = approver.strip().lower()
        kind, sep, subject = named.partition(":")
        if sep and kind in ("token", "cert"):
            named = subject
        requester = actor.subject.lower().split("@", 1)[0]
        return bool(named) and named.split("@", 1)[0] == requester
    # "alice" approving a request claimed by "alice@build-host" is still alice approving herself.
    a, b = approver.strip().lower(), actor.strip().lower()
    return bool(a and b) and (a == b or a == b.split("@", 1)[0] or a.split("@", 1)[0] == b.split("@", 1)[0])


class ExceptionService:
    """Exceptions over a store, judged against the stored images and the policy's limits."""

    def __init__(
        self,
        store: ExceptionStore,
        repo: Repository,
        policy: Policy,
        clock: Clock,
        audit: AuditSink | None = None,
    ) -> None:
        self._store = store
        self._repo = repo
        self._policy = policy
        self._clock = clock
        self._audit: AuditSink = audit if audit is not None else NullAudit()

    # -- creation -------------------------------------------------------------------------------------

    def _limit_days(self, scope_kind: ScopeKind, scope_value: str) -> tuple[int, str]:
        """The longest allowed run and the transition(s) that set it."""
        if scope_kind is ScopeKind.TRANSITION:
            src, dst = (Stage(s) for s in scope_value.split("->"))
            t = self._policy.transition(src, dst)
            return t.max_exception_days, t.key
        # Other scopes apply on every step, so the strictest step bounds them.
        t = min(self._policy.transitions, key=lambda t: t.max_exception_days)
        return t.max_exception_days, t.key

    def _validate(
        self,
        vulnerability_id: str,
        expires_at: datetime,
        owner: str,
        ticket: str,
        reason: str,
        approver: str,
        actor: str,
        now: datetime,
        scope_kind: ScopeKind,
        scope_value: str,
    ) -> None:
        if not _VULN_ID_RE.match(vulnerability_id):
            raise InvalidArgument(
                f"{vulnerability_id!r} is not a vulnerability id (e.g. CVE-2024-3094, GHSA-xxxx-xxxx-xxxx)",
                "vulnerability_id",
            )
        for name, value in (("owner", owner), ("ticket", ticket), ("reason", reason), ("approver", approver)):
            if not value.strip():
                raise InvalidArgument(
                    "is required: every exception names its owner, ticket, reason and approver", name
                )
        if expires_at <= now:
            raise InvalidArgument(
                f"{expires_at.isoformat(timespec='seconds')} is in the past "
                f"(now {now.isoformat(timespec='seconds')}); an exception must expire in the future",
                "expires",
            )
        days, where = self._limit_days(scope_kind, scope_value)
        if expires_at - now > timedelta(days=days):
            latest = (now + timedelta(days=days)).isoformat(timespec="seconds")
            raise InvalidArgument(
                f"{expires_at.isoformat(timespec='seconds')} is more than {days} days away; the policy's "
                f"max_exception_days for {where} allows at most {latest}",
                "expires",
            )
        if _same_person(approver, actor):
            raise InvalidArgument(
                f"{approver!r} requested this exception and cannot also approve it; name another approver",
                "approver",
            )

    def add(
        self,
        vulnerability_id: str,
        scope: str,
        expires: str,
        *,
        owner: str,
        ticket: str,
        reason: str,
        approver: str,
        actor: str,
        justification: str = "",
    ) -> VulnException:
        """Create an exception after checking scope, expiry, required fields and the approver."""
        now = self._clock.now()
        parsed = parse_scope(scope)
        expires_at = parse_expiry(expires)
        vid = vulnerability_id.strip()
        self._validate(
            vid, expires_at, owner, ticket, reason, approver, actor, now, parsed.kind, parsed.value
        )
        if parsed.kind is ScopeKind.BASE and self._repo.get_base(parsed.value) is None:
            raise NotFound(f"{parsed.value!r} is not a registered base (name or digest)", "scope")
        if justification and justification not in openvex.JUSTIFICATIONS:
            raise InvalidArgument(f"expected one of {', '.join(openvex.JUSTIFICATIONS)}", "justification")
        exc = VulnException(
            id=_new_id(),
            vulnerability_id=vid,
            scope=parsed,
            expires_at=expires_at,
            owner=owner.strip(),
            ticket=ticket.strip(),
            reason=reason.strip(),
            approver=approver.strip(),
            requested_by=actor,
            created_at=now,
            justification=justification,
        )
        (stored,) = self._store.add_exceptions([exc])
        self._record("exception.add", actor, now, stored.id, [stored], "added")
        return stored

    def _record(
        self, kind: str, actor: str, now: datetime, subject: str, items: Sequence[VulnException], result: str
    ) -> None:
        self._audit.record(
            AuditEvent(
                kind=kind,
                actor=actor,
                at=now,
                subject=subject,
                inputs_digest=_digest([_canonical(e) for e in items]),
                result=result,
                policy_digest=self._policy.digest,
                details=tuple(
                    (
                        e.id,
                        f"{e.vulnerability_id} {e.scope} until {e.expires_at.isoformat(timespec='seconds')}",
                    )
                    for e in items
                ),
            )
        )

    # -- listing --------------------------------------------------------------------------------------

    def for_verdicts(self) -> tuple[VulnException, ...]:
        """Every exception, for the policy: it decides at `now` which apply (revoked/expired do not)."""
        return tuple(self._store.list_exceptions())

    def list(
        self, *, expired: bool = False, unused: bool = False, include_revoked: bool = False
    ) -> list[ExceptionStatus]:
        """Exceptions with their state and the stored images they cover.

        `expired` keeps only expired (unrevoked) ones; `unused` only active ones no current finding of
        any stored image matches — removable. Both together keep either kind: everything to clean up.
        """
        now = self._clock.now()
        out: list[ExceptionStatus] = []
        for exc in self._store.list_exceptions(include_revoked=include_revoked):
            state = (
                "revoked"
                if exc.revoked_at is not None and exc.revoked_at <= now
                else ("active" if exc.active_at(now) else "expired")
            )
            status = ExceptionStatus(exc, state, self._matching_digests(exc) if state == "active" else ())
            wanted = (expired and state == "expired") or (unused and status.unused)
            if (expired or unused) and not wanted:
                continue
            out.append(status)
        return out

    def _matching_digests(self, exc: VulnException) -> tuple[str, ...]:
        """Stored images with a current finding the exception covers (id or alias, and scope)."""
        found: dict[str, None] = {}
        index_children: set[str] = set()
        if exc.scope.kind is ScopeKind.DIGEST:
            record = self._repo.get_image(exc.scope.value)
            index_children = {d for _, d in record.platforms} if record else set()
        # A base scope matches on the lineage chain, which the whole catalog indexed once per call gives
        # exactly as a per-image catalog query would (gate/service.py layer_attribution does the same).
        catalog: provenance.BaseIndex | None = None
        for row in self._repo.affected_images(exc.vulnerability_id, None):
            image = row.image
            if image.digest in found:
                continue
            lin = None
            if exc.scope.kind is ScopeKind.BASE:
                if catalog is None:
                    catalog = provenance.BaseIndex(self._repo.list_bases())
                lin = provenance.lineage(image.diff_ids, catalog, image.annotations)
            src = dst = None
            if exc.scope.kind is ScopeKind.TRANSITION:
                src, dst = (Stage(s) for s in exc.scope.value.split("->"))
                # An image gate places in another stage is not on its way through this step.
                if image.stage is not None and image.stage is not src:
                    continue
            digests = (image.digest, exc.scope.value) if image.digest in index_children else (image.digest,)
            if scope_matches(
                exc.scope, digests=digests, image=image, lineage=lin, from_stage=src, to_stage=dst
            ):
                found[image.digest] = None
        return tuple(found)

    # -- revocation -----------------------------------------------------------------------------------

    def revoke(self, exception_id: str, actor: str) -> VulnException:
        """Revoke an exception now: verdicts from now on count its findings again."""
        if not exception_id.strip():
            raise InvalidArgument("an exception id is required", "id")
        now = self._clock.now()
        exc = self._store.revoke_exception(exception_id.strip(), actor, now)
        self._record("exception.revoke", actor, now, exc.id, [exc], "revoked")
        return exc

    # -- OpenVEX --------------------------------------------------------------------------------------

    def export_vex(self, author: str) -> tuple[bytes, tuple[str, ...]]:
        """The active exceptions as an OpenVEX v0.2.0 document, and the ids left out (no product)."""
        now = self._clock.now()
        items: list[tuple[VulnException, list[tuple[str, ImageRecord | None]]]] = []
        skipped: list[str] = []
        for exc in self._store.active_exceptions(now):
            digests = list(self._matching_digests(exc))
            if exc.scope.kind is ScopeKind.DIGEST and exc.scope.value not in digests:
                digests.insert(0, exc.scope.value)  # the named image, even before it has the finding
            if not digests:
                skipped.append(exc.id)
            items.append((exc, [(d, self._repo.get_image(d)) for d in digests]))
        doc = openvex.build_document(items, author or "gate", now)
        return json.dumps(doc, indent=2).encode() + b"\n", tuple(skipped)

    def import_vex(
        self,
        data: bytes,
        expires: str,
        *,
        owner: str,
        ticket: str,
        approver: str,
        actor: str,
    ) -> ImportResult:
        """Turn each not_affected statement into digest-scoped exceptions expiring at `expires`."""
        now = self._clock.now()
        expires_at = parse_expiry(expires)
        parsed = openvex.parse_document(data)
        made: list[VulnException] = []
        for claim in parsed.claims:
            reason = (
                claim.impact_statement
                or f"OpenVEX: not_affected ({claim.justification or 'no justification'})"
            )
            self._validate(
                claim.vulnerability_id,
                expires_at,
                owner or "vex-import",
                ticket or "vex-import",
                reason,
                approver,
                actor,
                now,
                ScopeKind.DIGEST,
                claim.digest,
            )
            made.append(
                VulnException(
                    id=_new_id(),
                    vulnerability_id=claim.vulnerability_id,
                    scope=parse_scope(f"digest:{claim.digest}"),
                    expires_at=expires_at,
                    owner=owner.strip() or "vex-import",
                    ticket=ticket.strip() or "vex-import",
                    reason=reason,
                    approver=approver.strip(),
                    requested_by=actor,
                    created_at=now,
                    justification=claim.justification
                    if claim.justification in openvex.JUSTIFICATIONS
                    else "",
                )
            )
        stored = tuple(self._store.add_exceptions(made)) if made else ()
        if stored:
            self._record("exception.import", actor, now, f"{len(stored)} exceptions", stored, "imported")
        return ImportResult(stored, parsed.ignored)


def _new_id() -> str:
    return f"ex-{uuid.uuid4().hex[:12]}"


def _canonical(exc: VulnException) -> dict[str, object]:
    out = dataclasses.asdict(exc)
    out["scope"] = str(exc.scope)
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in out.items()}


def _digest(items: Iterable[object]) -> str:
    text = json.dumps(list(items), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
