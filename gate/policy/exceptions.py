"""Exceptions in the policy: which exception waives which finding, pure and with `now` passed in.

An exception names a vulnerability and a scope. It covers a finding when the id it names is the
finding's id or any of its aliases (so an exception for a CVE covers the GHSA the same problem is
published under, and the other way round), and when its scope contains what is being evaluated:

- `digest:D`      the image being evaluated is D (or, for a platform of an index, the index is D);
- `repo:R`        the image's repository is R, written with or without the registry host;
- `base:B`        B (a base digest or name) is in the image's lineage chain: every descendant;
- `transition:s2->p` the promotion being evaluated is exactly that step.

Only an exception active at `now` (not revoked, not expired) waives; an expired one that would have
matched is named in a warning, so the owner sees why the verdict changed back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from gate.domain import (
    AppliedException,
    ExceptionScope,
    Finding,
    ImageRecord,
    ScopeKind,
    Stage,
    Violation,
    VulnException,
)
from gate.errors import InvalidArgument
from gate.provenance import Lineage

__all__ = [
    "DEFAULT_MAX_EXCEPTION_DAYS",
    "ExceptionMatch",
    "covers_vulnerability",
    "expired_warning",
    "match_exception",
    "parse_scope",
    "scope_matches",
]

DEFAULT_MAX_EXCEPTION_DAYS = 90
"""The longest an exception may run when the policy says nothing else (per transition)."""


def parse_scope(text: str, field: str = "scope") -> ExceptionScope:
    """Parse `digest:D`, `repo:R`, `base:B` or `transition:A->B`; raise InvalidArgument saying why.

    The value is normalized (a repository loses a trailing tag or digest, a transition is checked to
    be a forward step) so equal scopes compare equal however they were typed.
    """
    kind_text, sep, value = text.strip().partition(":")
    kinds = ", ".join(f"{k.value}:…" for k in ScopeKind)
    try:
        kind = ScopeKind(kind_text.strip().lower())
    except ValueError:
        raise InvalidArgument(f"bad scope {text!r} (expected one of {kinds})", field) from None
    value = value.strip()
    if not sep or not value:
        raise InvalidArgument(f"scope {text!r} names no {kind.value}", field)
    if kind is ScopeKind.DIGEST:
        if not value.startswith("sha256:") or len(value) != 71 or not _is_hex(value[7:]):
            raise InvalidArgument(f"{value!r} is not a sha256 digest (digest:sha256:<64 hex>)", field)
    elif kind is ScopeKind.REPO:
        value = _bare_repository(value)
    elif kind is ScopeKind.TRANSITION:
        src, arrow, dst = value.partition("->")
        if not arrow:
            raise InvalidArgument(f"bad transition {value!r} (expected FROM->TO, e.g. s2->p)", field)
        a, b = Stage.parse(src, field), Stage.parse(dst, field)
        if b.rank <= a.rank:
            raise InvalidArgument(f"{value!r} is not a forward promotion", field)
        value = f"{a.value}->{b.value}"
    return ExceptionScope(kind, value)


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _bare_repository(name: str) -> str:
    """`host/path/name` without `@digest` or `:tag` (a colon before the last slash is a port)."""
    name = name.split("@", 1)[0]
    head, slash, last = name.rpartition("/")
    if ":" in last:
        last = last.split(":", 1)[0]
    return f"{head}{slash}{last}".rstrip("/")


def covers_vulnerability(exc: VulnException, finding: Finding) -> bool:
    """The exception names the finding's id or one of its aliases (case does not matter)."""
    wanted = exc.vulnerability_id.strip().upper()
    return wanted in {finding.vulnerability_id.upper(), *(a.upper() for a in finding.aliases)}


def scope_matches(
    scope: ExceptionScope,
    *,
    digests: Sequence[str],
    image: ImageRecord | None,
    lineage: Lineage | None,
    from_stage: Stage | None,
    to_stage: Stage | None,
) -> bool:
    """Whether the scope contains this evaluation.

    `digests` are the image's own digest and, for a platform of an index, the index's. A repo or base
    scope cannot match an image gate knows nothing about (no record, no lineage): an exception never
    widens to the unknown. `from_stage`/`to_stage` None means "any step" (used to report which stored
    images an exception covers outside a verdict).
    """
    if scope.kind is ScopeKind.DIGEST:
        return scope.value in digests
    if scope.kind is ScopeKind.REPO:
        if image is None or not image.repository:
            return False
        names = {image.repository, f"{image.registry}/{image.repository}" if image.registry else ""}
        return scope.value in names - {""}
    if scope.kind is ScopeKind.BASE:
        if lineage is None:
            return False
        return any(scope.value in {b.digest, b.name, b.reference} - {""} for b in lineage.chain)
    if from_stage is None or to_stage is None:
        return True
    return scope.value == f"{from_stage.value}->{to_stage.value}"


@dataclass(frozen=True)
class ExceptionMatch:
    """The outcome for one violating finding: the exception that waives it, or expired ones that would."""

    applied: AppliedException | None
    expired: tuple[VulnException, ...]


def match_exception(
    exceptions: Iterable[VulnException],
    finding: Finding,
    violation: Violation,
    *,
    digests: Sequence[str],
    image: ImageRecord | None,
    lineage: Lineage | None,
    from_stage: Stage,
    to_stage: Stage,
    now: datetime,
) -> ExceptionMatch:
    """Find the exception that waives `violation` (about `finding`) at `now`, if any.

    Of several active matches the one expiring last is named, so the Decision shows how long the waiver
    holds. Revoked exceptions are ignored entirely; expired ones are returned so the caller can warn.
    """
    active: list[VulnException] = []
    expired: list[VulnException] = []
    for exc in exceptions:
        if not covers_vulnerability(exc, finding):
            continue
        if exc.revoked_at is not None and exc.revoked_at <= now:
            continue
        if not scope_matches(
            exc.scope,
            digests=digests,
            image=image,
            lineage=lineage,
            from_stage=from_stage,
            to_stage=to_stage,
        ):
            continue
        (active if exc.active_at(now) else expired).append(exc)
    if not active:
        return ExceptionMatch(None, tuple(expired))
    best = max(active, key=lambda e: (e.expires_at, e.id))
    applied = AppliedException(
        exception_id=best.id,
        vulnerability_id=best.vulnerability_id,
        finding_id=finding.vulnerability_id,
        package=finding.package,
        installed_version=finding.installed_version,
        scope=best.scope,
        expires_at=best.expires_at,
        owner=best.owner,
        ticket=best.ticket,
        reason=best.reason,
        rule=violation.rule,
        platform=violation.platform,
    )
    return ExceptionMatch(applied, ())


def expired_warning(exc: VulnException, finding: Finding) -> str:
    """The warning for an expired exception that would have waived a violating finding."""
    named = exc.vulnerability_id
    also = f" (as {finding.vulnerability_id})" if named.upper() != finding.vulnerability_id.upper() else ""
    return (
        f"exception {exc.id} for {named}{also} in {finding.package} expired on "
        f"{exc.expires_at.isoformat(timespec='seconds')} ({exc.scope}); the finding counts again — renew "
        f"it (owner {exc.owner or 'unknown'}, ticket {exc.ticket or 'none'}) or fix the finding"
    )
