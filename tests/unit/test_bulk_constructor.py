"""scanners.interface.bulk_constructor: the same values as the dataclass's own __init__, or its errors."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import pytest

from gate.domain import Finding
from gate.scanning.convert import findings_of, to_finding
from scanners.interface import FindingClass, FixState, ScannerFinding, ScanResult, Severity, bulk_constructor

FULL = {
    "vulnerability_id": "CVE-2024-1",
    "package": "openssl",
    "installed_version": "1",
    "fixed_version": "2",
    "fix_state": FixState.FIXED,
    "severity": Severity.HIGH,
    "scanner_severity": "HIGH",
    "finding_class": FindingClass.OS,
    "aliases": ("RHSA-1",),
    "severity_source": "redhat",
    "layer_digest": "sha256:a",
    "layer_diff_id": "sha256:b",
    "target": "rhel",
    "package_path": "",
    "package_id": "openssl@1",
    "purl": "pkg:rpm/openssl@1",
    "title": "t",
    "primary_url": "https://x",
    "cvss_score": 7.5,
}


def test_every_field_named_gives_an_equal_frozen_value() -> None:
    build = bulk_constructor(ScannerFinding)
    made = build(**FULL)  # type: ignore[arg-type]
    assert type(made) is ScannerFinding
    assert made == ScannerFinding(**FULL)  # type: ignore[arg-type]
    assert hash(made) == hash(ScannerFinding(**FULL))  # type: ignore[arg-type]
    assert dataclasses.asdict(made) == FULL
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.package = "other"  # type: ignore[misc]


def test_other_calls_behave_as_the_real_init() -> None:
    build = bulk_constructor(ScannerFinding)
    partial = {k: v for k, v in FULL.items() if k not in ("purl", "cvss_score")}
    assert build(**partial) == ScannerFinding(**partial)  # type: ignore[arg-type]  # defaults filled
    with pytest.raises(TypeError, match="unexpected keyword argument 'nonsense'"):
        build(**{**FULL, "nonsense": 1})  # type: ignore[arg-type]
    missing = {k: v for k, v in FULL.items() if k != "package"}
    with pytest.raises(TypeError, match="package"):
        build(**missing)  # type: ignore[arg-type]


def test_classes_it_cannot_copy_get_their_own_init() -> None:
    @dataclass(frozen=True)
    class Checked:
        n: int

        def __post_init__(self) -> None:
            if self.n < 0:
                raise ValueError("negative")

    @dataclass
    class Mutable:
        n: int
        items: list[int] = field(default_factory=list)

    @dataclass(frozen=True, slots=True)
    class Slotted:
        n: int

    assert bulk_constructor(Checked) is Checked
    assert bulk_constructor(Mutable) is Mutable
    assert bulk_constructor(Slotted) is Slotted


def test_convert_builds_the_same_finding_as_the_dataclass() -> None:
    item = ScannerFinding(**FULL)  # type: ignore[arg-type]
    expected = Finding(
        vulnerability_id="CVE-2024-1",
        package="openssl",
        installed_version="1",
        fixed_version="2",
        fix_state=FixState.FIXED,
        severity=Severity.HIGH,
        scanner_severity="HIGH",
        finding_class=FindingClass.OS,
        scanner="trivy",
        aliases=("RHSA-1",),
        layer_diff_id="sha256:b",
        target="rhel",
        package_path="",
        title="t",
        primary_url="https://x",
    )
    assert to_finding("trivy", item) == expected
    twice = ScanResult(scanner="trivy", scanner_version="1", findings=(item, item))
    assert findings_of(twice) == (expected,)
