"""scanners.normalize.merge: one finding list from Trivy and Clair, with provenance and disagreements.

The cases are the real ways the two disagree (notes/formats.md §6): Debian urgencies shifted one step up
by Clair, Alpine advisories Unknown in Clair, Ubuntu "negligible" kept by Clair and folded into LOW by
Trivy, OSV advisories named GHSA-/PYSEC- by Clair with the CVE in links, and RHSA ids in Trivy's VendorIDs.
"""

from __future__ import annotations

import pytest

from scanners.interface import FindingClass, FixState, ScannerFinding, Severity
from scanners.normalize import SEVERITY_MAX, canonical_id, merge


def f(
    vid: str,
    pkg: str = "libssl3",
    version: str = "3.0.15-1~deb12u1",
    severity: Severity = Severity.HIGH,
    *,
    aliases: tuple[str, ...] = (),
    target: str = "",
    path: str = "",
    label: str = "",
    cls: FindingClass = FindingClass.OS,
) -> ScannerFinding:
    return ScannerFinding(
        vulnerability_id=vid,
        package=pkg,
        installed_version=version,
        fixed_version="",
        fix_state=FixState.AFFECTED,
        severity=severity,
        scanner_severity=label or severity.name,
        finding_class=cls,
        aliases=aliases,
        target=target,
        package_path=path,
    )


def test_debian_urgency_shifted_up_by_clair_is_one_finding_with_two_severities() -> None:
    trivy = [f("CVE-2099-0101", severity=Severity.MEDIUM, target="debian 12", label="MEDIUM")]
    clair = [
        f("CVE-2099-0101", severity=Severity.HIGH, target="Debian GNU/Linux 12 (bookworm)", label="medium")
    ]
    (m,) = merge({"trivy": trivy, "clair": clair})
    assert m.found_by == ("trivy", "clair")
    assert m.severities == (("trivy", Severity.MEDIUM), ("clair", Severity.HIGH))
    assert m.severity is Severity.HIGH  # max by default
    assert m.disagreement and m.severities_differ and not m.missed_by
    assert m.describe_disagreement() == "trivy: MEDIUM, clair: HIGH"


@pytest.mark.parametrize(
    ("source", "expected"),
    [(SEVERITY_MAX, Severity.HIGH), ("trivy", Severity.MEDIUM), ("clair", Severity.HIGH)],
)
def test_severity_source_picks_whose_severity_counts(source: str, expected: Severity) -> None:
    trivy = [f("CVE-1", severity=Severity.MEDIUM)]
    clair = [f("CVE-1", severity=Severity.HIGH)]
    (m,) = merge({"trivy": trivy, "clair": clair}, source)
    assert m.severity is expected
    if source != SEVERITY_MAX:
        assert m.finding is (trivy if source == "trivy" else clair)[0]


def test_alpine_unknown_in_clair_keeps_trivys_known_severity() -> None:
    trivy = [f("CVE-2099-0002", "busybox", "1.37.0-r18", Severity.HIGH, target="alpine 3.22")]
    clair = [f("CVE-2099-0002", "busybox", "1.37.0-r18", Severity.UNKNOWN, target="Alpine Linux v3.22")]
    (m,) = merge({"trivy": trivy, "clair": clair})
    assert m.severity is Severity.HIGH
    assert m.describe_disagreement() == "trivy: HIGH, clair: UNKNOWN"
    # With Clair as the source its Unknown is what the policy sees (and unknown_severity_as then applies).
    assert merge({"trivy": trivy, "clair": clair}, "clair")[0].severity is Severity.UNKNOWN


def test_ubuntu_negligible_stays_its_own_step() -> None:
    trivy = [f("CVE-2099-0300", "bash", "5.2-1ubuntu1", Severity.LOW)]
    clair = [f("CVE-2099-0300", "bash", "5.2-1ubuntu1", Severity.NEGLIGIBLE, label="negligible")]
    (m,) = merge({"trivy": trivy, "clair": clair})
    assert m.severities == (("trivy", Severity.LOW), ("clair", Severity.NEGLIGIBLE))
    assert m.severity is Severity.LOW
    assert merge({"trivy": trivy, "clair": clair}, "clair")[0].severity is Severity.NEGLIGIBLE


def test_ghsa_named_clair_finding_meets_trivys_cve_through_its_links() -> None:
    trivy = [f("CVE-2099-0201", "requests", "2.0.0", Severity.HIGH, cls=FindingClass.LANG,
               path="usr/lib/python3.12/site-packages/requests-2.0.0.dist-info/METADATA")]  # fmt: skip
    clair = [f("GHSA-9x9x-2v7q-c4m8", "requests", "2.0.0", Severity.HIGH, cls=FindingClass.LANG,
               aliases=("CVE-2099-0201",), path="python:usr/lib/python3.12/site-packages")]  # fmt: skip
    (m,) = merge({"trivy": trivy, "clair": clair})
    assert m.canonical_id == "CVE-2099-0201"
    assert m.aliases == ("GHSA-9x9x-2v7q-c4m8",)
    assert m.found_by == ("trivy", "clair")
    assert not m.disagreement
    assert m.finding is trivy[0]  # the report named by the canonical id represents the finding


def test_ghsa_first_then_cve_still_canonicalizes_to_the_cve() -> None:
    clair = [f("GHSA-9x9x-2v7q-c4m8", "requests", "2.0.0", aliases=("CVE-2099-0201",))]
    trivy = [f("CVE-2099-0201", "requests", "2.0.0")]
    (m,) = merge({"clair": clair, "trivy": trivy})
    assert m.canonical_id == "CVE-2099-0201" == canonical_id(clair[0])
    assert m.finding is trivy[0]


def test_ghsa_without_a_cve_stays_separate_from_other_advisories() -> None:
    trivy = [f("CVE-2099-0201", "requests", "2.0.0")]
    clair = [f("GHSA-aaaa-bbbb-cccc", "requests", "2.0.0")]
    merged = merge({"trivy": trivy, "clair": clair})
    assert [(m.canonical_id, m.found_by, m.missed_by) for m in merged] == [
        ("CVE-2099-0201", ("trivy",), ("clair",)),
        ("GHSA-aaaa-bbbb-cccc", ("clair",), ("trivy",)),
    ]
    assert merged[0].describe_disagreement() == "trivy: HIGH, clair: not found"


def test_rhsa_named_by_old_clair_meets_trivys_vendor_id() -> None:
    trivy = [f("CVE-2099-0400", "openssl-libs", "1:1.0.2k-16.el7", aliases=("RHSA-2099:0001",))]
    clair = [f("RHSA-2099:0001", "openssl-libs", "1:1.0.2k-16.el7", Severity.CRITICAL)]
    (m,) = merge({"trivy": trivy, "clair": clair})
    assert m.canonical_id == "CVE-2099-0400"
    assert m.found_by == ("trivy", "clair")
    assert m.describe_disagreement() == "trivy: HIGH, clair: CRITICAL"


def test_same_cve_in_two_binary_packages_stays_two_findings() -> None:
    trivy = [f("CVE-1", "libssl3", "3.5.0-r0"), f("CVE-1", "libcrypto3", "3.5.0-r0")]
    clair = [f("CVE-1", "libcrypto3", "3.5.0-r0"), f("CVE-1", "libssl3", "3.5.0-r0")]
    merged = merge({"trivy": trivy, "clair": clair})
    assert [(m.finding.package, m.found_by) for m in merged] == [
        ("libssl3", ("trivy", "clair")),
        ("libcrypto3", ("trivy", "clair")),
    ]


def test_repeats_within_one_scanner_collapse_to_the_most_severe() -> None:
    trivy = [f("CVE-1", severity=Severity.LOW, target="t"), f("CVE-1", severity=Severity.HIGH, target="t")]
    (m,) = merge({"trivy": trivy})
    assert m.severity is Severity.HIGH
    assert not m.disagreement  # one scanner cannot disagree with itself


def test_copies_at_two_paths_pair_by_location() -> None:
    a, b = "app/a/node_modules/x/package.json", "app/b/node_modules/x/package.json"
    trivy = [f("CVE-1", "x", "1.0", path=a, cls=FindingClass.LANG), f("CVE-1", "x", "1.0", path=b,
             cls=FindingClass.LANG, severity=Severity.LOW)]  # fmt: skip
    clair = [f("CVE-1", "x", "1.0", path=b, cls=FindingClass.LANG, severity=Severity.LOW)]
    merged = merge({"trivy": trivy, "clair": clair})
    assert [(m.finding.package_path, m.found_by) for m in merged] == [
        (a, ("trivy",)),
        (b, ("trivy", "clair")),
    ]


def test_a_scanner_that_found_nothing_makes_every_finding_a_disagreement_but_not_secrets() -> None:
    trivy = [f("CVE-1"), f("github-pat", "", "", Severity.CRITICAL, cls=FindingClass.SECRET, path="app/.env")]
    merged = merge({"trivy": trivy, "clair": []})
    assert [m.missed_by for m in merged] == [("clair",), ()]


def test_preferred_scanner_missing_falls_back_to_the_others() -> None:
    (m,) = merge({"trivy": [f("CVE-1", severity=Severity.CRITICAL)], "clair": []}, "clair")
    assert m.severity is Severity.CRITICAL
