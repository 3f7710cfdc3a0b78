"""Turns a scanner's ScanResult into gate's stored Finding values (pure).

Findings are deduplicated on the scanner-independent key from scanners.normalize so one CVE reported
twice for the same package and path (Trivy repeats them across targets) is stored once.
"""

from __future__ import annotations

from gate.domain import Finding
from scanners.interface import ScannerFinding, ScanResult, bulk_constructor
from scanners.normalize import dedupe_key

# A report converts tens of thousands of findings; every field is given below, so this builds the same
# value as Finding(...) without the frozen __init__'s per-field cost.
_new_finding = bulk_constructor(Finding)


def to_finding(scanner: str, item: ScannerFinding) -> Finding:
    """Convert one scanner finding into a stored finding."""
    return _new_finding(
        vulnerability_id=item.vulnerability_id,
        package=item.package,
        installed_version=item.installed_version,
        fixed_version=item.fixed_version,
        fix_state=item.fix_state,
        severity=item.severity,
        scanner_severity=item.scanner_severity,
        finding_class=item.finding_class,
        scanner=scanner,
        aliases=item.aliases,
        layer_diff_id=item.layer_diff_id,
        target=item.target,
        package_path=item.package_path,
        title=item.title,
        primary_url=item.primary_url,
    )


def findings_of(result: ScanResult) -> tuple[Finding, ...]:
    """All findings of a result, deduplicated, in the scanner's order."""
    seen: set[tuple[str, ...]] = set()
    out: list[Finding] = []
    for item in result.findings:
        key = dedupe_key(item)
        if key in seen:
            continue
        seen.add(key)
        out.append(to_finding(result.scanner, item))
    return tuple(out)
