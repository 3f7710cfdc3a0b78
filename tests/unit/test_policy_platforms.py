"""evaluate_index(): one verdict for a multi-platform index — all pass, one fails, missing, the knob."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gate.domain import Finding, JobState, ScanJob, Severity, Stage, VerdictState
from gate.errors import InvalidArgument
from gate.policy import (
    EvaluationInput,
    IndexInput,
    ScannerStatus,
    default_policy,
    evaluate_index,
    load_policy,
    required_platforms,
)
from gate.policy.model import check_platform, platform_matches
from gate.provenance import lineage
from tests.unit.test_policy_engine import (
    APP_LAYERS,
    NOW,
    OSBASE,
    S2,
    P,
    compliant_image,
    finding,
    ok,
    policy_with,
)

INDEX = "sha256:" + "f" * 64
AMD, ARM = "linux/amd64", "linux/arm64"


def child_digest(platform: str) -> str:
    return "sha256:" + platform.replace("/", "").ljust(64, "0")[:64].encode().hex()[:64]


def child(
    platform: str,
    findings: tuple[Finding, ...] = (),
    scans: dict[str, ScannerStatus] | None = None,
    user: str = "1000",
) -> EvaluationInput:
    digest = child_digest(platform)
    return EvaluationInput(
        digest=digest,
        from_stage=S2,
        to_stage=P,
        scans={"trivy": ok()} if scans is None else scans,
        findings=findings,
        configured_scanners=("trivy",),
        image=replace(compliant_image(S2), digest=digest, user=user),
        tag="20250601_01",
        lineage=lineage(APP_LAYERS, (OSBASE,)),
    )


def index(*children: tuple[str, EvaluationInput], listed: tuple[str, ...] | None = None) -> IndexInput:
    return IndexInput(
        digest=INDEX,
        from_stage=S2,
        to_stage=P,
        platforms=listed if listed is not None else tuple(p for p, _ in children),
        children=dict(children),
    )


VULNS = (
    finding("CVE-2024-0001", "openssl", severity=Severity.CRITICAL),
    finding("CVE-2024-0002", "openssl", severity=Severity.HIGH),
)


def test_all_platforms_pass() -> None:
    d = evaluate_index(default_policy(), index((AMD, child(AMD)), (ARM, child(ARM))), NOW)
    assert d.allowed and d.violations == ()
    assert d.digest == INDEX and d.state is VerdictState.EVALUATED
    assert d.summary == "allowed s2→p: linux/amd64 passes (no findings); linux/arm64 passes (no findings)"
    assert ("platforms", "linux/amd64,linux/arm64") in d.details
    assert (f"platform {ARM}", f"{child_digest(ARM)} allowed") in d.details


def test_one_failing_platform_denies_the_index_and_names_it() -> None:
    d = evaluate_index(default_policy(), index((AMD, child(AMD)), (ARM, child(ARM, VULNS))), NOW)
    assert not d.allowed
    assert {v.platform for v in d.violations} == {ARM}
    assert [v.vulnerability_id for v in d.violations] == ["CVE-2024-0001", "CVE-2024-0002"]
    assert d.summary.startswith("denied s2→p: linux/arm64 has 2 violations (2 fixable ≥HIGH; cheapest fix: ")
    assert d.summary.endswith("; linux/amd64 passes (no findings)")
    assert (f"platform {ARM}", f"{child_digest(ARM)} denied") in d.details


def test_image_rules_are_judged_per_platform() -> None:
    d = evaluate_index(default_policy(), index((AMD, child(AMD)), (ARM, child(ARM, user="0"))), NOW)
    assert not d.allowed
    assert [(v.rule, v.platform) for v in d.violations] == [("root-user", ARM)]


def test_worst_state_wins_and_is_explained() -> None:
    queued = ScanJob(id="q", digest=child_digest(ARM), scanner="trivy", state=JobState.QUEUED)
    scanning = {"trivy": ScannerStatus("trivy", latest_success=None, latest_attempt=queued)}
    d = evaluate_index(default_policy(), index((AMD, child(AMD)), (ARM, child(ARM, scans=scanning))), NOW)
    assert d.state is VerdictState.SCANNING and not d.allowed
    assert [(v.rule, v.platform) for v in d.violations] == [("scan-state", ARM)]
    assert (
        d.warnings[0] == "state SCANNING reported, the worst of: linux/amd64 EVALUATED, linux/arm64 SCANNING"
    )


def test_required_platform_missing_from_the_index_is_a_violation() -> None:
    policy = policy_with(platforms=(AMD, "linux/s390x"))
    d = evaluate_index(policy, index((AMD, child(AMD)), (ARM, child(ARM, VULNS))), NOW)
    assert not d.allowed
    assert [(v.rule, v.platform) for v in d.violations] == [("platform-missing", "linux/s390x")]
    assert "linux/amd64, linux/arm64" in d.violations[0].message
    assert d.summary == (
        "denied s2→p: linux/s390x is missing from the index; linux/amd64 passes (no findings); "
        "not required by the policy: linux/arm64"
    )


def test_platforms_knob_judges_only_the_listed_platforms() -> None:
    policy = policy_with(platforms=(AMD,))
    # The arm64 image is not required, so its input is not even needed.
    d = evaluate_index(policy, index((AMD, child(AMD)), listed=(AMD, ARM)), NOW)
    assert d.allowed
    assert (
        d.summary == "allowed s2→p: linux/amd64 passes (no findings); not required by the policy: linux/arm64"
    )
    assert ("required_platforms", AMD) in d.details


def test_a_required_platform_without_input_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="linux/arm64"):
        evaluate_index(default_policy(), index((AMD, child(AMD)), listed=(AMD, ARM)), NOW)


def test_warnings_shared_by_every_platform_are_said_once() -> None:
    untagged = {p: replace(child(p), tag="", image=replace(child(p).image, tags=())) for p in (AMD, ARM)}  # type: ignore[arg-type]
    d = evaluate_index(policy_with(tag_pattern=""), index(*untagged.items()), NOW)
    assert d.allowed
    assert d.warnings and not any(w.startswith(("linux/amd64:", "linux/arm64:")) for w in d.warnings)


@pytest.mark.parametrize(
    ("required", "platform", "matches"),
    [
        (AMD, AMD, True),
        (ARM, "linux/arm64/v8", True),
        ("linux/arm/v7", "linux/arm/v7", True),
        ("linux/arm/v7", "linux/arm/v6", False),
        ("linux/arm/v7", "linux/arm", False),
        (AMD, ARM, False),
        ("linux/arm", "linux/arm64", False),
    ],
)
def test_platform_matching(required: str, platform: str, matches: bool) -> None:
    assert platform_matches(required, platform) is matches


def test_required_platforms_default_to_every_listed_one() -> None:
    t = default_policy().transition(Stage.S2, Stage.P)
    assert required_platforms(t, (ARM, AMD)) == ((ARM, AMD), ())
    knob = replace(t, platforms=("linux/arm64", "windows/amd64"))
    assert required_platforms(knob, ("linux/arm64/v8", AMD)) == (("linux/arm64/v8",), ("windows/amd64",))


@pytest.mark.parametrize("bad", ["linux", "Linux/AMD64", "linux/amd64/v1/x", "", "linux/"])
def test_bad_platform_names(bad: str) -> None:
    with pytest.raises(ValueError, match="os/arch"):
        check_platform(bad)


POLICY = """\
version: 1
transitions:
  d->t: {max_fixable_severity: CRITICAL, max_unfixable_severity: CRITICAL, max_scan_age: 30d}
  t->s1: {max_fixable_severity: CRITICAL, max_unfixable_severity: CRITICAL, max_scan_age: 30d}
  s1->s2: {max_fixable_severity: CRITICAL, max_unfixable_severity: CRITICAL, max_scan_age: 30d}
  s2->p:
    max_fixable_severity: MEDIUM
    max_unfixable_severity: HIGH
    max_scan_age: 7d
{extra}"""


def test_loader_reads_platforms_and_they_change_the_digest() -> None:
    plain = load_policy(POLICY.replace("{extra}", ""))
    knob = load_policy(POLICY.replace("{extra}", "    platforms: [linux/amd64, linux/arm64, linux/amd64]\n"))
    t = knob.transition(S2, P)
    assert t.platforms == (AMD, ARM)
    assert plain.transition(S2, P).platforms is None
    assert knob.digest != plain.digest
    # A policy without the key keeps the digest it had before the key existed.
    assert "platforms" not in plain.canonical()["transitions"]["s2->p"]  # type: ignore[index]


@pytest.mark.parametrize(
    ("extra", "line", "fragment"),
    [
        ("    platforms: []\n", 10, "at least one platform"),
        ("    platforms: linux/amd64\n", 10, "expected a list of platforms"),
        ("    platforms: [linux/amd64, amd64]\n", 10, "bad platform 'amd64'"),
    ],
)
def test_loader_refuses_bad_platforms(extra: str, line: int, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        load_policy(POLICY.replace("{extra}", extra), source="p.yaml")
    assert f"p.yaml:{line}: transitions.s2->p.platforms" in err.value.message
    assert fragment in err.value.message
