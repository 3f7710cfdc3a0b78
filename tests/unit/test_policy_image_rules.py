"""evaluate(): provenance (base tiers, base status), naming (tag, latest, stage path), hygiene (root user,
labels) and the attribution of findings to the base whose layers brought them in."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from gate.domain import (
    BaseImage,
    BaseStatus,
    Decision,
    Finding,
    FindingClass,
    FixState,
    ImageRecord,
    JobState,
    ScanJob,
    Severity,
    Stage,
)
from gate.policy import EvaluationInput, Policy, ScannerStatus, default_policy, evaluate
from gate.policy.image_rules import expected_stage_path, is_root_user
from gate.provenance import ANNOTATION_BASE_DIGEST, Lineage, chain_id, lineage

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DIGEST = "sha256:" + "a" * 64
D, T, S1, S2, P = Stage.D, Stage.T, Stage.S1, Stage.S2, Stage.P
TAG = "20250601_01"


def layer(n: int) -> str:
    return "sha256:" + hashlib.sha256(f"layer-{n}".encode()).hexdigest()


def make_base(name: str, tier: str, layers: range, **extra: object) -> BaseImage:
    diff_ids = tuple(layer(n) for n in layers)
    return BaseImage(
        name=name,
        tier=tier,
        digest="sha256:" + hashlib.sha256(name.encode()).hexdigest(),
        diff_ids=diff_ids,
        chain_id=chain_id(diff_ids),
        **extra,  # type: ignore[arg-type]
    )


OSBASE = make_base("osbase-20200102_01", "prod-osbase", range(2))
RUNTIME = make_base("jre-17", "runtime", range(4))
DEVBASE = make_base("dev-20200102_01", "dev-osbase", range(100, 102))
COMPILE = make_base("gcc-14", "compile-osbase", range(200, 202))
APP = tuple(layer(n) for n in range(6))  # osbase 0-1, runtime 2-3, app 4-5


def on(*layers_of: range, own: int = 2) -> tuple[str, ...]:
    """Diff_ids of an image made of the given base layer ranges plus `own` app layers."""
    return tuple(layer(n) for r in layers_of for n in r) + tuple(layer(900 + i) for i in range(own))


def image(
    from_stage: Stage = S2,
    diff_ids: tuple[str, ...] = APP,
    repository: str | None = None,
    tags: tuple[str, ...] = (TAG,),
    user: str = "1000",
    labels: tuple[tuple[str, str], ...] = (),
) -> ImageRecord:
    return ImageRecord(
        digest=DIGEST,
        repository=f"{from_stage.value}/app" if repository is None else repository,
        tags=tags,
        diff_ids=diff_ids,
        user=user,
        labels=labels,
    )


def ok_scans() -> dict[str, ScannerStatus]:
    j = ScanJob(id="1", digest=DIGEST, scanner="trivy", state=JobState.SUCCEEDED, finished_at=NOW)
    return {"trivy": ScannerStatus("trivy", j, j)}


_DEFAULT = object()


def run(
    img: ImageRecord | object | None = _DEFAULT,
    lin: Lineage | object | None = _DEFAULT,
    tag: str = TAG,
    from_stage: Stage = S2,
    to_stage: Stage = P,
    findings: tuple[Finding, ...] = (),
    policy: Policy | None = None,
    bases: tuple[BaseImage, ...] = (OSBASE, RUNTIME),
    now: datetime = NOW,
) -> Decision:
    the_image = image(from_stage) if img is _DEFAULT else img
    assert the_image is None or isinstance(the_image, ImageRecord)
    if lin is _DEFAULT:
        the_lineage: Lineage | None = lineage(the_image.diff_ids if the_image else (), bases)
    else:
        assert lin is None or isinstance(lin, Lineage)
        the_lineage = lin
    inp = EvaluationInput(
        digest=DIGEST,
        from_stage=from_stage,
        to_stage=to_stage,
        scans=ok_scans(),
        findings=findings,
        configured_scanners=("trivy",),
        image=the_image,
        tag=tag,
        lineage=the_lineage,
    )
    return evaluate(policy or default_policy(), inp, now)


def rules(d: Decision) -> list[str]:
    return [v.rule for v in d.violations]


def policy_with(from_stage: Stage = S2, to_stage: Stage = P, **changes: object) -> Policy:
    ts = [
        replace(t, **changes) if (t.from_stage, t.to_stage) == (from_stage, to_stage) else t  # type: ignore[arg-type]
        for t in default_policy().transitions
    ]
    return Policy(ts, source="test")


def finding(
    layer_diff_id: str, vid: str = "CVE-2024-0001", severity: Severity = Severity.CRITICAL
) -> Finding:
    return Finding(
        vulnerability_id=vid,
        package="openssl",
        installed_version="3.0.1",
        fixed_version="3.0.2",
        fix_state=FixState.FIXED,
        severity=severity,
        scanner_severity=severity.name,
        finding_class=FindingClass.OS,
        scanner="trivy",
        layer_diff_id=layer_diff_id,
    )


# --- the compliant baseline ------------------------------------------------------------------------


@pytest.mark.parametrize(("a", "b"), [(D, T), (T, S1), (S1, S2), (S2, P)])
def test_compliant_app_passes_every_transition(a: Stage, b: Stage) -> None:
    d = run(from_stage=a, to_stage=b)
    assert d.allowed, d.violations
    assert d.warnings == ()
    assert ("lineage", "runtime jre-17 > prod-osbase osbase-20200102_01") in d.details


# --- require_base_tier / NO_APPROVED_BASE -----------------------------------------------------------


@pytest.mark.parametrize(
    ("diff_ids", "bases", "expected"),
    [
        (APP, (OSBASE, RUNTIME), []),
        (on(range(2)), (OSBASE,), []),  # directly on the osbase
        (on(range(50, 52)), (OSBASE, RUNTIME), ["NO_APPROVED_BASE"]),  # uncatalogued base
        ((), (OSBASE,), ["NO_APPROVED_BASE"]),  # an image without layers has no lineage
        # A runtime whose osbase is not catalogued: a base, but not the required tier.
        (APP, (RUNTIME,), ["require-base-tier"]),
    ],
)
def test_require_base_tier(
    diff_ids: tuple[str, ...], bases: tuple[BaseImage, ...], expected: list[str]
) -> None:
    d = run(img=image(diff_ids=diff_ids), bases=bases)
    assert rules(d) == expected


def test_no_approved_base_message_names_the_tier() -> None:
    d = run(img=image(diff_ids=on(range(50, 52))))
    v = d.violations[0]
    assert v.rule == "NO_APPROVED_BASE"
    assert "s2→p requires a prod-osbase base" in v.message
    assert "no catalogued base matches" in v.message
    assert "build on an approved prod-osbase" in d.summary


def test_require_base_tier_names_the_tiers_present() -> None:
    d = run(img=image(diff_ids=APP), bases=(RUNTIME,))
    assert "tiers: runtime" in d.violations[0].message
    assert "runtime jre-17" in d.violations[0].message


def test_lineage_none_denies_only_where_a_tier_is_required() -> None:
    assert rules(run(lin=None)) == ["NO_APPROVED_BASE"]
    assert "base catalog was not consulted" in run(lin=None).violations[0].message
    # s1->s2 forbids tiers but requires none: without a catalog there is nothing to judge.
    assert run(lin=None, from_stage=S1, to_stage=S2).allowed
    assert run(lin=None, policy=policy_with(require_base_tier="")).allowed


def test_custom_tier_names() -> None:
    golden = make_base("golden-7", "golden-os", range(2))
    policy = policy_with(require_base_tier="golden-os", forbid_base_tiers=("prod-osbase",))
    assert run(bases=(golden,), policy=policy).allowed
    d = run(bases=(OSBASE,), policy=policy)
    assert rules(d) == ["require-base-tier", "forbid-base-tier"]


def test_annotation_alone_never_satisfies_the_tier() -> None:
    own = on(range(50, 52))
    lin = lineage(own, (OSBASE,), {ANNOTATION_BASE_DIGEST: OSBASE.digest})
    d = run(img=image(diff_ids=own), lin=lin)
    assert rules(d) == ["NO_APPROVED_BASE"]
    assert any("stale or false" in w for w in d.warnings)  # the lineage warning reaches the Decision


# --- forbid_base_tiers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "base", "denied"),
    [
        (D, T, DEVBASE, False),  # dev images move freely to t
        (T, S1, DEVBASE, True),  # from s1 on: never on a dev or compile base
        (T, S1, COMPILE, True),
        (S1, S2, DEVBASE, True),
        (S1, S2, COMPILE, True),
        (S2, P, DEVBASE, True),
        (T, S1, OSBASE, False),
    ],
)
def test_forbid_base_tiers_builtin(a: Stage, b: Stage, base: BaseImage, denied: bool) -> None:
    diff_ids = on(range(100, 102) if base is DEVBASE else range(200, 202) if base is COMPILE else range(2))
    d = run(img=image(a, diff_ids=diff_ids), from_stage=a, to_stage=b, bases=(base,))
    assert ("forbid-base-tier" in rules(d)) is denied


def test_forbid_base_tier_message_and_attribution() -> None:
    d = run(img=image(diff_ids=on(range(100, 102))), bases=(DEVBASE,), from_stage=S1, to_stage=S2)
    v = d.violations[0]
    assert v.rule == "forbid-base-tier"
    assert "dev-osbase dev-20200102_01" in v.message
    assert "s1→s2 forbids bases of tier dev-osbase, compile-osbase" in v.message
    assert v.introduced_by == "dev-osbase dev-20200102_01"


def test_forbidden_tier_deep_in_the_chain() -> None:
    # A runtime built on a dev base: the dev base is in the chain even though it is not the nearest.
    runtime_on_dev = make_base("jre-dev", "runtime", range(100, 104))
    dev = make_base("dev", "dev-osbase", range(100, 102))
    diff_ids = on(range(100, 104))
    d = run(img=image(S1, diff_ids=diff_ids), bases=(runtime_on_dev, dev), from_stage=S1, to_stage=S2)
    assert rules(d) == ["forbid-base-tier"]


# --- base status ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "grace", "expected", "warned"),
    [
        (BaseStatus.APPROVED, None, [], False),
        (BaseStatus.REVOKED, None, ["base-revoked"], False),
        (BaseStatus.DEPRECATED, NOW + timedelta(days=3), [], True),  # inside the grace period
        (BaseStatus.DEPRECATED, NOW, [], True),  # the deadline itself is still inside
        (BaseStatus.DEPRECATED, NOW - timedelta(seconds=1), ["base-deprecated"], False),
        (BaseStatus.DEPRECATED, None, ["base-deprecated"], False),  # no grace period at all
    ],
)
def test_base_status(status: BaseStatus, grace: datetime | None, expected: list[str], warned: bool) -> None:
    base = replace(OSBASE, status=status, grace_until=grace, superseded_by_name="osbase-20200115_02")
    d = run(bases=(base, RUNTIME))
    assert rules(d) == expected
    assert any("deprecated: rebuild on osbase-20200115_02 before" in w for w in d.warnings) is warned


@pytest.mark.parametrize(("a", "b"), [(D, T), (T, S1), (S1, S2), (S2, P)])
def test_revoked_base_denies_on_every_transition(a: Stage, b: Stage) -> None:
    revoked = replace(OSBASE, status=BaseStatus.REVOKED)
    d = run(img=image(a), from_stage=a, to_stage=b, bases=(revoked, RUNTIME))
    assert rules(d) == ["base-revoked"]
    assert d.violations[0].introduced_by == "prod-osbase osbase-20200102_01"


def test_deprecated_message_names_successor_and_deadline() -> None:
    grace = NOW - timedelta(days=1)
    base = replace(
        OSBASE,
        status=BaseStatus.DEPRECATED,
        grace_until=grace,
        superseded_by="sha256:" + "c" * 64,
        superseded_by_name="osbase-20200115_02",
    )
    d = run(bases=(base, RUNTIME))
    v = d.violations[0]
    assert "prod-osbase osbase-20200102_01" in v.message
    assert grace.isoformat(timespec="seconds") in v.message
    assert v.message.endswith("rebuild on osbase-20200115_02")
    assert "cheapest fix: rebuild on osbase-20200115_02" in d.summary


@pytest.mark.parametrize(
    ("superseded_by", "name", "expected"),
    [
        ("sha256:" + "c" * 64, "", "rebuild on sha256:" + "c" * 64),  # successor known only by digest
        ("", "", "rebuild on a current prod-osbase base"),  # deprecated without a successor
    ],
)
def test_deprecated_without_successor_name(superseded_by: str, name: str, expected: str) -> None:
    base = replace(OSBASE, status=BaseStatus.DEPRECATED, superseded_by=superseded_by, superseded_by_name=name)
    d = run(bases=(base, RUNTIME))
    assert d.violations[0].message.endswith(expected)


def test_warning_inside_grace_says_how_long() -> None:
    base = replace(OSBASE, status=BaseStatus.DEPRECATED, grace_until=NOW + timedelta(days=2, hours=3))
    d = run(bases=(base, RUNTIME))
    assert d.allowed
    assert any("(2d3h left)" in w for w in d.warnings)


def test_revoked_required_tier_is_reported_once_by_status() -> None:
    revoked = replace(OSBASE, status=BaseStatus.REVOKED)
    assert rules(run(bases=(revoked,), img=image(diff_ids=on(range(2))))) == ["base-revoked"]


# --- tags -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "tag", "expected"),
    [
        (S2, P, "20250601_01", []),
        (S2, P, "latest", ["tag-latest"]),  # latest: one violation, not a pattern one too
        (D, T, "latest", ["tag-latest"]),  # latest never moves, even at the bottom
        (D, T, "feature-x", []),  # dev tags are free-form
        (T, S1, "feature-x", ["tag-pattern"]),
        (S1, S2, "2025060101", ["tag-pattern"]),
        (S2, P, "20250601_1", ["tag-pattern"]),
        (S2, P, "20250601_01-rc", ["tag-pattern"]),  # the whole tag must match
        (S2, P, "Latest", ["tag-pattern"]),  # tags are case-sensitive: only `latest` is latest
    ],
)
def test_tag_rules(a: Stage, b: Stage, tag: str, expected: list[str]) -> None:
    assert rules(run(img=image(a), tag=tag, from_stage=a, to_stage=b)) == expected


def test_tag_messages() -> None:
    latest = run(tag="latest").violations[0].message
    assert "tag 'latest' cannot be promoted" in latest
    pattern = run(tag="v1").violations[0].message
    assert "'v1' does not match ^\\d{8}_\\d{2}$" in pattern


def test_custom_tag_pattern_and_latest_off() -> None:
    policy = policy_with(tag_pattern=r"v\d+\.\d+\.\d+", forbid_latest=False)
    assert run(tag="v1.2.3", policy=policy).allowed
    assert rules(run(tag="latest", policy=policy)) == ["tag-pattern"]
    assert run(tag="latest", policy=policy_with(tag_pattern="", forbid_latest=False)).allowed


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ((TAG,), []),
        (("latest", TAG), []),  # one conforming stored tag suffices; the digest is what moves
        (("latest",), ["tag-pattern"]),
        (("main", "dev"), ["tag-pattern"]),
    ],
)
def test_digest_request_judges_stored_tags(tags: tuple[str, ...], expected: list[str]) -> None:
    assert rules(run(img=image(tags=tags), tag="")) == expected


def test_digest_only_request_warns_instead_of_denying() -> None:
    d = run(img=image(repository="", tags=()), tag="")
    assert d.allowed
    digest_only = [w for w in d.warnings if w.startswith("cannot check naming: image known only by digest")]
    assert len(digest_only) == 1  # tag and path rules share one warning


def test_no_image_record_and_no_tag_warns() -> None:
    policy = policy_with(require_labels=("maintainer",))
    d = run(img=None, lin=lineage(APP, (OSBASE, RUNTIME)), tag="", policy=policy)
    assert any("cannot check labels" in w for w in d.warnings)

    # Without a record neither the name nor the config can be judged: warnings, not violations (an
    # image gate has no record of is NOT_SCANNED anyway, which the scan-state rule handles).
    d = run(img=None, lin=lineage(APP, (OSBASE, RUNTIME)), tag="")
    assert d.allowed, d.violations
    assert any(w.startswith("cannot check naming") for w in d.warnings)
    assert any("cannot check the config user" in w for w in d.warnings)


# --- stage path -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "repository", "ok", "expected"),
    [
        (True, "s2/payments", True, ""),
        (True, "team/s2/payments", True, ""),
        (True, "payments", False, "s2/payments"),
        (True, "team/payments", False, "team/s2/payments"),
        (True, "s1/payments", False, "s2/payments"),  # the wrong stage is replaced
        (True, "team/payments/s2", False, "team/payments/s2/s2"),  # the last component is the name
        ("{stage}/{name}", "s2/payments", True, ""),
        ("{stage}/{name}", "s2/team/payments", True, ""),
        ("{stage}/{name}", "team/s2/payments", False, "s2/payments"),
        ("apps/{stage}/{name}", "apps/s2/pay", True, ""),
        ("apps/{stage}/{name}", "apps/s1/pay", False, "apps/s2/pay"),
        ("{name}-{stage}", "pay-s2", True, ""),
    ],
)
def test_stage_path(template: bool | str, repository: str, ok: bool, expected: str) -> None:
    d = run(img=image(repository=repository), policy=policy_with(stage_path=template))
    assert d.allowed is ok
    if not ok:
        assert rules(d) == ["stage-path"]
        assert f"must come from {expected!r}" in d.violations[0].message
        assert expected_stage_path(repository, template, S2) == expected


def test_stage_path_uses_the_from_stage() -> None:
    assert rules(run(img=image(repository="p/app"))) == ["stage-path"]
    assert run(img=image(T, repository="t/app"), from_stage=T, to_stage=S1).allowed


def test_stage_path_off() -> None:
    assert run(img=image(repository="payments"), policy=policy_with(stage_path=False)).allowed


# --- root user --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "root"),
    [
        ("", True),
        ("root", True),
        ("0", True),
        ("0:0", True),
        ("root:root", True),
        ("0:1000", True),  # uid 0 with any group is root
        (" root ", True),
        ("000", True),
        ("1000", False),
        ("1000:0", False),  # group 0 alone is not root
        ("app", False),
        ("nobody:nogroup", False),
        ("rootless", False),
    ],
)
def test_root_user_variants(user: str, root: bool) -> None:
    assert is_root_user(user) is root
    d = run(img=image(user=user))
    assert rules(d) == (["root-user"] if root else [])


def test_root_user_message() -> None:
    assert "runs as root (no USER set)" in run(img=image(user="")).violations[0].message
    assert "runs as user '0:0'" in run(img=image(user="0:0")).violations[0].message


def test_root_user_only_where_configured() -> None:
    assert run(img=image(S1, user="root"), from_stage=S1, to_stage=S2).allowed


def test_a_catalogued_base_is_exempt_from_root_user() -> None:
    # Promoting the osbase itself: its chain equals a catalogued base's.
    d = run(img=image(diff_ids=OSBASE.diff_ids, user=""), bases=(OSBASE,))
    assert d.allowed, d.violations
    # One app layer on top is no longer the base.
    assert rules(run(img=image(diff_ids=on(range(2), own=1), user=""), bases=(OSBASE,))) == ["root-user"]


def test_without_lineage_no_base_exemption() -> None:
    policy = policy_with(require_base_tier="")
    assert rules(run(img=image(diff_ids=OSBASE.diff_ids, user=""), lin=None, policy=policy)) == ["root-user"]


# --- labels -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "missing"),
    [
        ((("maintainer", "team-a"), ("team", "pay")), ""),
        ((("team", "pay"),), "label maintainer"),
        ((("maintainer", "  "), ("team", "pay")), "label maintainer"),  # blank counts as missing
        ((), "labels maintainer, team"),
    ],
)
def test_require_labels(labels: tuple[tuple[str, str], ...], missing: str) -> None:
    policy = policy_with(require_labels=("maintainer", "team"))
    d = run(img=image(labels=labels), policy=policy)
    if not missing:
        assert d.allowed
        return
    assert rules(d) == ["require-labels"]
    assert f"missing {missing} (s2→p requires maintainer, team)" in d.violations[0].message


def test_labels_builtin_none() -> None:
    assert all(t.require_labels == () for t in default_policy().transitions)


# --- attribution ------------------------------------------------------------------------------------


def test_finding_from_a_deprecated_base_says_rebuild_on_successor() -> None:
    base = replace(
        OSBASE,
        status=BaseStatus.DEPRECATED,
        grace_until=NOW + timedelta(days=1),
        superseded_by_name="osbase-20200115_02",
    )
    d = run(findings=(finding(APP[0], vid="CVE-X"),), bases=(base, RUNTIME))
    v = d.violations[0]
    assert v.rule == "fixable-severity"
    assert v.introduced_by == "prod-osbase osbase-20200102_01"
    assert v.message.endswith(
        "CVE-X in openssl 3.0.1 came from prod-osbase osbase-20200102_01; rebuild on osbase-20200115_02"
    )
    assert "cheapest fix: rebuild on osbase-20200115_02, upgrade openssl to 3.0.2" in d.summary


@pytest.mark.parametrize(
    ("index", "introduced"),
    [
        (0, "prod-osbase osbase-20200102_01"),
        (3, "runtime jre-17"),
        (4, ""),  # the app's own layer: nothing extra
        (None, ""),  # no layer known
    ],
)
def test_attribution_by_layer(index: int | None, introduced: str) -> None:
    diff_id = APP[index] if index is not None else ""
    v = run(findings=(finding(diff_id),)).violations[0]
    assert v.introduced_by == introduced
    assert ("came from" in v.message) is bool(introduced)
    assert "rebuild on" not in v.message  # approved, not superseded


def test_attribution_of_a_superseded_but_approved_base() -> None:
    base = replace(OSBASE, superseded_by_name="osbase-20200115_02")
    v = run(findings=(finding(APP[0]),), bases=(base, RUNTIME)).violations[0]
    assert v.message.endswith("; rebuild on osbase-20200115_02")


def test_no_attribution_without_lineage() -> None:
    policy = policy_with(require_base_tier="")
    v = run(findings=(finding(APP[0]),), lin=None, policy=policy).violations[0]
    assert v.introduced_by == ""
    assert "came from" not in v.message


def test_attribution_without_image_record_uses_the_chain() -> None:
    policy = policy_with(forbid_root_user=False, stage_path=False)
    d = run(img=None, lin=lineage(APP, (OSBASE, RUNTIME)), findings=(finding(APP[2]),), policy=policy)
    assert d.violations[0].introduced_by == "runtime jre-17"


# --- ordering and summary ---------------------------------------------------------------------------


def test_image_violations_follow_scan_state_and_precede_findings() -> None:
    d = run(
        img=image(repository="app", user="root", diff_ids=on(range(50, 52))),
        tag="latest",
        findings=(finding(""),),
    )
    assert rules(d) == ["NO_APPROVED_BASE", "root-user", "tag-latest", "stage-path", "fixable-severity"]
    assert d.summary.startswith(
        "denied s2→p: 5 violations — 1 NO_APPROVED_BASE, 1 root-user, 1 tag-latest, 1 stage-path, "
        "1 fixable ≥HIGH; cheapest fix: build on an approved prod-osbase, set a non-root USER, "
        "upgrade openssl to 3.0.2"
    )
