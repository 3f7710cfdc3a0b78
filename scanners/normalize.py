"""Pure helpers that put scanner vocabulary into gate's: severity labels, ids, dedupe keys, merging.

`merge` turns several scanners' findings into one list with per-finding provenance.

Nothing here does I/O or knows a report format; adapters call these after pulling fields out of their own
JSON, so the severity map lives in exactly one place. `merge` works on anything shaped like a finding
(`Mergeable`), so gate's policy can merge its stored findings without this package importing gate.

Why scanners disagree (../shared/notes/formats.md §6): their inputs differ. Clair shifts Debian urgencies
one step up, says Unknown for Alpine where Trivy uses NVD, keeps Ubuntu "negligible" as NEGLIGIBLE where
Trivy says LOW, and names OSV advisories GHSA-/PYSEC- with the CVE only in links. `merge` keeps those
differences visible instead of averaging them away.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from scanners.interface import FindingClass, Severity

# Trivy's scale has five steps and no NEGLIGIBLE (it folds Ubuntu "negligible" into LOW itself), so only
# these labels map; anything else is a label we do not understand and must not guess upwards or downwards.
_TRIVY_SEVERITIES: dict[str, Severity] = {
    "UNKNOWN": Severity.UNKNOWN,
    "LOW": Severity.LOW,
    "MEDIUM": Severity.MEDIUM,
    "HIGH": Severity.HIGH,
    "CRITICAL": Severity.CRITICAL,
}


def trivy_severity(label: str) -> Severity:
    """Map a Trivy severity label (case-insensitive) to `Severity`; unrecognized labels are UNKNOWN."""
    return _TRIVY_SEVERITIES.get(label.strip().upper(), Severity.UNKNOWN)


def _is_cve(identifier: str) -> bool:
    return identifier.upper().startswith("CVE-")


def canonical_id(finding: Mergeable) -> str:
    """The id two scanners are most likely to agree on: the CVE when the finding or an alias has one.

    Scanners name the same advisory differently (Trivy puts RHSA/DSA ids in VendorIDs, Clair's OSV
    findings are GHSA-/PYSEC- named), but both carry the CVE when one exists. CVE ids are upper-cased
    because that is their canonical spelling; other ids are kept as given.
    """
    for candidate in (finding.vulnerability_id, *finding.aliases):
        if _is_cve(candidate):
            return candidate.strip().upper()
    return finding.vulnerability_id.strip()


def dedupe_key(finding: Mergeable) -> tuple[str, ...]:
    """Key identifying one problem in one place: (canonical id, package, installed version, path or target).

    A CVE legitimately repeats across binary packages built from one source (libssl3, libcrypto3) and
    across targets, so those stay distinct; only true repeats of the same package copy share a key.
    """
    location = finding.package_path or finding.target
    return (canonical_id(finding), finding.package, finding.installed_version, location)


# ---- merging findings across scanners -----------------------------------------------------------------

SEVERITY_MAX = "max"
"""The `severity_source` that takes the highest severity any scanner claims (the default)."""


class Mergeable(Protocol):
    """What `merge` reads of a finding: both scanners' `ScannerFinding` and gate's stored findings fit."""

    @property
    def vulnerability_id(self) -> str: ...  # noqa: D102 - attribute stubs of a structural type
    @property
    def aliases(self) -> tuple[str, ...]: ...  # noqa: D102
    @property
    def package(self) -> str: ...  # noqa: D102
    @property
    def installed_version(self) -> str: ...  # noqa: D102
    @property
    def package_path(self) -> str: ...  # noqa: D102
    @property
    def target(self) -> str: ...  # noqa: D102
    @property
    def severity(self) -> Severity: ...  # noqa: D102
    @property
    def finding_class(self) -> FindingClass: ...  # noqa: D102


F = TypeVar("F", bound=Mergeable)


@dataclass(frozen=True)
class Claim(Generic[F]):
    """One scanner's report of a merged finding: which scanner, and the finding as it reported it."""

    scanner: str
    finding: F

    @property
    def severity(self) -> Severity:
        """The severity this scanner claims."""
        return self.finding.severity


@dataclass(frozen=True)
class MergedFinding(Generic[F]):
    """One problem in one package copy as every scanner that saw it reported it, with the severity to use.

    `finding` is the representative report (the chosen severity source's, else the one named by the
    canonical id); `severity` is what thresholds compare, chosen by `severity_source`. `scanners` are the
    scanners whose results were merged (those that ran), so "found by one scanner only" is decidable.
    """

    canonical_id: str
    aliases: tuple[str, ...]
    severity: Severity
    finding: F
    claims: tuple[Claim[F], ...]
    scanners: tuple[str, ...]

    @property
    def found_by(self) -> tuple[str, ...]:
        """The scanners that reported this finding, in merge order."""
        return tuple(c.scanner for c in self.claims)

    @property
    def missed_by(self) -> tuple[str, ...]:
        """Scanners that ran and did not report it (never for secrets: only Trivy looks for those)."""
        if self.finding.finding_class is FindingClass.SECRET:
            return ()
        return tuple(s for s in self.scanners if s not in self.found_by)

    @property
    def severities(self) -> tuple[tuple[str, Severity], ...]:
        """(scanner, severity) per reporting scanner."""
        return tuple((c.scanner, c.severity) for c in self.claims)

    @property
    def severities_differ(self) -> bool:
        """True when the reporting scanners claim different severities."""
        return len({c.severity for c in self.claims}) > 1

    @property
    def disagreement(self) -> bool:
        """The scanners disagree: one of those that ran missed it, or their severities differ."""
        return bool(self.missed_by) or self.severities_differ

    def describe_disagreement(self) -> str:
        """E.g. "trivy: HIGH, clair: CRITICAL" or "trivy: HIGH, clair: not found"; "" when they agree."""
        if not self.disagreement:
            return ""
        parts = [f"{scanner}: {severity.name}" for scanner, severity in self.severities]
        parts += [f"{scanner}: not found" for scanner in self.missed_by]
        return ", ".join(parts)


def _ids(finding: Mergeable) -> frozenset[str]:
    return frozenset(i.strip().upper() for i in (finding.vulnerability_id, *finding.aliases) if i.strip())


def _bucket(finding: Mergeable) -> tuple[str, str, str]:
    # Scanners describe *where* differently (Trivy's target "alpine 3.22" vs Clair's "Alpine Linux v3.22";
    # a dist-info METADATA file vs its site-packages directory), so across scanners a package copy is
    # matched on name and version; the location only breaks ties between copies at different paths.
    kind = "secret" if finding.finding_class is FindingClass.SECRET else "package"
    return (kind, finding.package.strip().lower(), finding.installed_version.strip())


def _location(finding: Mergeable) -> str:
    return finding.package_path or finding.target


def _match_rank(entry_ids: frozenset[str], entry_canonical: str, finding: Mergeable) -> int:
    """How well `finding` names the same advisory as an entry: 0 same canonical id, 1 shared alias, 2 none."""
    if canonical_id(finding) == entry_canonical:
        return 0
    return 1 if entry_ids & _ids(finding) else 2


@dataclass
class _Entry(Generic[F]):
    canonical: str
    ids: set[str]  # upper-cased, for matching
    location: str
    claims: list[Claim[F]]
    spellings: dict[str, str]  # upper-cased id -> as first reported (GHSA ids are lower-case inside)


def _choose_severity(claims: Sequence[Claim[F]], severity_source: str) -> Severity:
    if severity_source != SEVERITY_MAX:
        chosen = [c.severity for c in claims if c.scanner == severity_source]
        if chosen:
            return chosen[0]
        # The preferred scanner did not report it: the finding still counts, at what the others say.
    return max(c.severity for c in claims)


def merge(
    findings_by_scanner: Mapping[str, Sequence[F]], severity_source: str = SEVERITY_MAX
) -> tuple[MergedFinding[F], ...]:
    """Merge each scanner's findings into one list with per-finding provenance.

    `findings_by_scanner` maps every scanner whose result is merged to its findings (an empty sequence
    for a scanner that ran and found nothing, so its silence counts as "not found"). Within a scanner,
    repeats of `dedupe_key` collapse (keeping the most severe). Across scanners, two findings are the
    same when they concern the same package name and installed version and name the same advisory:
    the same canonical id first, else any shared id or alias (GHSA ↔ CVE from Clair's links, RHSA ↔ CVE
    from Trivy's VendorIDs); copies at different paths pair with the copy at the same location when
    there is one. Each finding of a scanner is matched at most once.

    `severity_source` is "max" (the highest severity claimed) or a scanner name (its severity when it
    reported the finding, else the highest of the others — a finding is never dropped). Output order:
    first-seen, scanners in mapping order.
    """
    scanners = tuple(findings_by_scanner)
    buckets: dict[tuple[str, str, str], list[_Entry[F]]] = {}
    order: list[_Entry[F]] = []
    for scanner, findings in findings_by_scanner.items():
        own: dict[tuple[str, ...], Claim[F]] = {}
        for f in findings:
            key = dedupe_key(f)
            kept = own.get(key)
            if kept is None or f.severity > kept.severity:
                own[key] = Claim(scanner, f)
        for claim in own.values():
            f = claim.finding
            entries = buckets.setdefault(_bucket(f), [])
            candidates = [
                (_match_rank(frozenset(e.ids), e.canonical, f), _location(f) != e.location, i)
                for i, e in enumerate(entries)
                if all(c.scanner != scanner for c in e.claims)
            ]
            best = min((c for c in candidates if c[0] < 2), default=None)
            if best is None:
                entry: _Entry[F] = _Entry(canonical_id(f), set(_ids(f)), _location(f), [claim], {})
                _spell(entry, f)
                entries.append(entry)
                order.append(entry)
                continue
            entry = entries[best[2]]
            entry.claims.append(claim)
            entry.ids |= _ids(f)
            _spell(entry, f)
            if not _is_cve(entry.canonical):
                entry.canonical = canonical_id(f)
    return tuple(_merged(e, scanners, severity_source) for e in order)


def _spell(entry: _Entry[F], finding: Mergeable) -> None:
    for name in (finding.vulnerability_id, *finding.aliases):
        if name.strip():
            entry.spellings.setdefault(name.strip().upper(), name.strip())


def _merged(entry: _Entry[F], scanners: tuple[str, ...], severity_source: str) -> MergedFinding[F]:
    claims = tuple(entry.claims)
    preferred = [c for c in claims if c.scanner == severity_source]
    named = [c for c in claims if c.finding.vulnerability_id.strip().upper() == entry.canonical.upper()]
    representative = (preferred or named or list(claims))[0].finding
    aliases = tuple(sorted(entry.spellings[i] for i in entry.ids if i != entry.canonical.upper()))
    return MergedFinding(
        canonical_id=entry.canonical,
        aliases=aliases,
        severity=_choose_severity(claims, severity_source),
        finding=representative,
        claims=claims,
        scanners=scanners,
    )
