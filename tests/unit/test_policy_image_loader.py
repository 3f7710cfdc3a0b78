"""load_policy(): provenance, naming and hygiene keys — values, line-numbered errors, digests, defaults."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gate.domain import Stage
from gate.errors import InvalidArgument
from gate.policy import PolicyError, TransitionPolicy, default_policy, load_policy
from gate.policy.model import stage_path_regex
from tests.unit.test_policy_loader import BASE


def with_keys(*lines: str) -> str:
    """BASE with extra keys in s2->p, starting on line 20."""
    extra = "".join(f"    {line}\n" for line in lines)
    return BASE.replace("    max_scan_age: 7d\n", "    max_scan_age: 7d\n" + extra)


def s2p(text: str) -> TransitionPolicy:
    return load_policy(text).transition(Stage.S2, Stage.P)


def test_keys_are_optional_and_off_by_default() -> None:
    t = s2p(BASE)
    assert t.require_base_tier == ""
    assert t.forbid_base_tiers == ()
    assert t.tag_pattern == ""
    assert t.forbid_latest is False
    assert t.stage_path is False
    assert t.forbid_root_user is False
    assert t.require_labels == ()


def test_all_keys_load() -> None:
    t = s2p(
        with_keys(
            "require_base_tier: prod-osbase",
            "forbid_base_tiers: [dev-osbase, compile-osbase, dev-osbase]",
            r"tag_pattern: '^\d{8}_\d{2}$'",
            "forbid_latest: true",
            "stage_path: '{stage}/{name}'",
            "forbid_root_user: true",
            "require_labels: [maintainer, team]",
        )
    )
    assert t.require_base_tier == "prod-osbase"
    assert t.forbid_base_tiers == ("dev-osbase", "compile-osbase")  # repeats dropped, order kept
    assert t.tag_pattern == r"^\d{8}_\d{2}$"
    assert t.forbid_latest is True
    assert t.stage_path == "{stage}/{name}"
    assert t.forbid_root_user is True
    assert t.require_labels == ("maintainer", "team")


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False), ("yes", True)])
def test_stage_path_bool(value: str, expected: bool) -> None:
    assert s2p(with_keys(f"stage_path: {value}")).stage_path is expected


def test_custom_tiers_and_empty_lists_are_fine() -> None:
    t = s2p(with_keys("require_base_tier: golden-os", "forbid_base_tiers: []", "require_labels: []"))
    assert t.require_base_tier == "golden-os"
    assert t.forbid_base_tiers == ()
    assert t.require_labels == ()


# (extra lines in s2->p, line, path, words)
ERRORS = [
    (["require_base_tier: [prod-osbase]"], 20, "require_base_tier", "expected a tier name, got a list"),
    (["require_base_tier: 'prod osbase'"], 20, "require_base_tier", "bad tier 'prod osbase'"),
    (["require_base_tier: ''"], 20, "require_base_tier", "bad tier ''"),
    (["forbid_base_tiers: dev-osbase"], 20, "forbid_base_tiers", "expected a list of tier names"),
    (["forbid_base_tiers: [dev-osbase, 3]"], 20, "forbid_base_tiers[1]", "expected a tier name, got int '3'"),
    (
        ["require_base_tier: prod-osbase", "forbid_base_tiers: [prod-osbase]"],
        21,
        "forbid_base_tiers",
        "prod-osbase is required by require_base_tier and forbidden here",
    ),
    (["tag_pattern: '[0-9'"], 20, "tag_pattern", "bad regular expression '[0-9'"),
    (["tag_pattern: ''"], 20, "tag_pattern", "empty pattern"),
    (["tag_pattern: 5"], 20, "tag_pattern", "expected a regular expression, got int '5'"),
    (["forbid_latest: 'yes'"], 20, "forbid_latest", "expected true or false"),
    (["forbid_root_user: 1"], 20, "forbid_root_user", "expected true or false"),
    (["stage_path: '{name}'"], 20, "stage_path", "must contain {stage}"),
    (["stage_path: '{stage}/{app}'"], 20, "stage_path", "unknown placeholder {app}"),
    (["stage_path: '{stage}/{name'"], 20, "stage_path", "unbalanced brace"),
    (["stage_path: 3"], 20, "stage_path", "expected true, false or a template"),
    (["require_labels: maintainer"], 20, "require_labels", "expected a list of label names"),
    (["require_labels: [maintainer, ' ']"], 20, "require_labels[1]", "label name is empty"),
    (["forbid_root: true"], 20, "forbid_root", "did you mean 'forbid_root_user'?"),
]


@pytest.mark.parametrize(("lines", "line", "key", "words"), ERRORS)
def test_errors_name_line_and_field(lines: list[str], line: int, key: str, words: str) -> None:
    with pytest.raises(PolicyError) as e:
        load_policy(with_keys(*lines), source="policy.yaml")
    err = e.value
    assert (err.line, err.path) == (line, f"transitions.s2->p.{key}"), str(err)
    assert words in err.problem, str(err)


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("require_base_tier", "bad tier", "bad tier"),
        ("forbid_base_tiers", ("ok", ""), "bad tier"),
        ("tag_pattern", "(", "bad regular expression"),
        ("stage_path", "{name}", "must contain {stage}"),
        ("require_labels", ("",), "label name is empty"),
    ],
)
def test_hand_built_transitions_are_checked_too(field: str, value: object, words: str) -> None:
    t = default_policy().transition(Stage.S2, Stage.P)
    with pytest.raises(InvalidArgument, match=words) as e:
        replace(t, **{field: value})  # type: ignore[arg-type]
    assert e.value.field == f"transitions.s2->p.{field}"


def test_required_and_forbidden_contradiction_by_hand() -> None:
    t = default_policy().transition(Stage.S2, Stage.P)
    with pytest.raises(InvalidArgument, match="both required and forbidden"):
        replace(t, forbid_base_tiers=("prod-osbase",))


# --- digest ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "lines",
    [
        ["require_base_tier: prod-osbase"],
        ["forbid_base_tiers: [dev-osbase]"],
        ["tag_pattern: 'v.*'"],
        ["forbid_latest: true"],
        ["stage_path: true"],
        ["stage_path: '{stage}/{name}'"],
        ["forbid_root_user: true"],
        ["require_labels: [maintainer]"],
    ],
)
def test_each_key_changes_the_digest(lines: list[str]) -> None:
    assert load_policy(with_keys(*lines)).digest != load_policy(BASE).digest


def test_digest_ignores_list_order_repeats_and_written_defaults() -> None:
    a = load_policy(with_keys("forbid_base_tiers: [dev-osbase, compile-osbase]", "require_labels: [a, b]"))
    b = load_policy(
        with_keys("forbid_base_tiers: [compile-osbase, dev-osbase, dev-osbase]", "require_labels: [b, a]")
    )
    assert a.digest == b.digest
    defaults = with_keys(
        "forbid_latest: false", "stage_path: false", "forbid_root_user: false", "forbid_base_tiers: []"
    )
    assert load_policy(defaults).digest == load_policy(BASE).digest


def test_stage_path_true_and_template_differ() -> None:
    assert (
        load_policy(with_keys("stage_path: true")).digest
        != load_policy(with_keys("stage_path: '{stage}/{name}'")).digest
    )


# --- the built-in values -----------------------------------------------------------------------------


def test_builtin_provenance_naming_and_hygiene() -> None:
    policy = default_policy()
    by_key = {t.key: t for t in policy.transitions}
    assert by_key["s2->p"].require_base_tier == "prod-osbase"
    assert all(by_key[k].require_base_tier == "" for k in ("d->t", "t->s1", "s1->s2"))
    for key in ("t->s1", "s1->s2", "s2->p"):
        assert set(by_key[key].forbid_base_tiers) == {"dev-osbase", "compile-osbase"}
        assert by_key[key].tag_pattern == r"^\d{8}_\d{2}$"
    assert by_key["d->t"].forbid_base_tiers == ()
    assert by_key["d->t"].tag_pattern == ""
    assert all(t.forbid_latest and t.stage_path is True for t in policy.transitions)
    assert [k for k, t in by_key.items() if t.forbid_root_user] == ["s2->p"]
    assert all(t.require_labels == () for t in policy.transitions)


def test_stage_path_regex() -> None:
    rx = stage_path_regex("a.b/{stage}/{name}", Stage.S2)
    assert rx.fullmatch("a.b/s2/x/y")
    assert not rx.fullmatch("aXb/s2/x")  # literal text is literal, not a regex
    assert not rx.fullmatch("a.b/s2/")
