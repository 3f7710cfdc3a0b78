"""Pure helpers that put scanner vocabulary into gate's: severity labels and a dedupe key.

Nothing here does I/O or knows a report format; adapters call these after pulling fields out of their own
JSON, so the severity map lives in exactly one place. Cross-scanner merging builds on `dedupe_key` later.
"""

from __future__ import annotations

from scanners.interface import ScannerFinding, Severity

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


def canonical_id(finding: ScannerFinding) -> str:
    """The id two scanners are most likely to agree on: the CVE when the finding or an alias has one.

    Scanners name the same advisory differently (Trivy puts RHSA/DSA ids in VendorIDs, Clair's OSV
    findings are GHSA-/PYSEC- named), but both carry the CVE when one exists. CVE ids are upper-cased
    because that is their canonical spelling; other ids are kept as given.
    """
    for candidate in (finding.vulnerability_id, *finding.aliases):
        if _is_cve(candidate):
            return candidate.strip().upper()
    return finding.vulnerability_id.strip()


def dedupe_key(finding: ScannerFinding) -> tuple[str, ...]:
    """Key identifying one problem in one place: (canonical id, package, installed version, path or target).

    A CVE legitimately repeats across binary packages built from one source (libssl3, libcrypto3) and
    across targets, so those stay distinct; only true repeats of the same package copy share a key.
    """
    location = finding.package_path or finding.target
    return (canonical_id(finding), finding.package, finding.installed_version, location)
