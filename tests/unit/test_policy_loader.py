"""load_policy(): the YAML format, line-numbered errors with field paths, digests, the shipped defaults."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from gate.domain import Severity, Stage, VerdictState
from gate.errors import InvalidArgument
from gate.policy import (
    OnState,
    PolicyError,
    default_policy,
    format_duration,
    load_policy,
    load_policy_file,
    parse_duration,
)
from gate.policy.loader import PolicyErrors

# Line numbers in the error tests below refer to this text: keep its layout.
BASE = """\
version: 1
transitions:
  d->t:
    max_fixable_severity: CRITICAL
    max_unfixable_severity: CRITICAL
    allow_secrets: true
    max_scan_age: 30d
  t->s1:
    max_fixable_severity: HIGH
    max_unfixable_severity: CRITICAL
    max_scan_age: 30d
  s1->s2:
    max_fixable_severity: HIGH
    max_unfixable_severity: CRITICAL
    max_scan_age: 14d
  s2->p:
    max_fixable_severity: MEDIUM
    max_unfixable_severity: HIGH
    max_scan_age: 7d
    on_state:
      STALE: warn
"""


def test_base_loads_with_defaults_filled() -> None:
    policy = load_policy(BASE)
    t = policy.transition(Stage.S2, Stage.P)
    assert t.max_fixable_severity is Severity.MEDIUM
    assert t.max_unfixable_severity is Severity.HIGH
    assert t.max_scan_age == timedelta(days=7)
    assert t.allow_secrets is False
    assert t.require_scanners is None
    assert t.unknown_severity_as is Severity.MEDIUM
    assert t.verdict_for(VerdictState.STALE) is OnState.WARN
    assert t.verdict_for(VerdictState.FAILED) is OnState.DENY  # unlisted states fail closed
    assert policy.transition(Stage.D, Stage.T).allow_secrets is True


def test_none_threshold_and_options() -> None:
    text = BASE.replace("max_fixable_severity: MEDIUM", "max_fixable_severity: none").replace(
        "    on_state:\n",
        "    require_scanners: [trivy, clair, trivy]\n    unknown_severity_as: high\n    on_state:\n",
    )
    t = load_policy(text).transition(Stage.S2, Stage.P)
    assert t.max_fixable_severity is None
    assert t.require_scanners == ("trivy", "clair")
    assert t.unknown_severity_as is Severity.HIGH
    assert load_policy(text).required_scanners(t, ("grype",)) == ("trivy", "clair")


def test_listed_skip_loads() -> None:
    text = (
        BASE
        + "  d->s1:\n    max_fixable_severity: HIGH\n    max_unfixable_severity: HIGH\n    max_scan_age: 1d\n"
    )
    policy = load_policy(text)
    assert policy.transition(Stage.D, Stage.S1).max_scan_age == timedelta(days=1)
    with pytest.raises(InvalidArgument) as e:
        policy.transition(Stage.D, Stage.S2)
    assert e.value.field == "to_stage"


def test_merge_keys_let_transitions_share_settings() -> None:
    text = """\
version: 1
common: &common
  max_unfixable_severity: CRITICAL
  max_scan_age: 14d
transitions:
  d->t: {<<: *common, max_fixable_severity: CRITICAL}
  t->s1: {<<: *common, max_fixable_severity: HIGH}
  s1->s2: {<<: *common, max_fixable_severity: HIGH}
  s2->p: {<<: *common, max_fixable_severity: MEDIUM, max_scan_age: 7d}
"""
    # A top-level helper key is still an unknown key: anchors must live inside known structure.
    with pytest.raises(PolicyError, match=r"<policy>:2: common: unknown key"):
        load_policy(text)
    inline = text.replace("common: &common\n  max_unfixable_severity: CRITICAL\n  max_scan_age: 14d\n", "")
    inline = inline.replace(
        "d->t: {<<: *common,", "d->t: &common {max_unfixable_severity: CRITICAL, max_scan_age: 14d,"
    )
    policy = load_policy(inline)
    assert policy.transition(Stage.S1, Stage.S2).max_scan_age == timedelta(days=14)
    assert policy.transition(Stage.S2, Stage.P).max_scan_age == timedelta(days=7)


# (text transformation, line, path, words in the message)
ERRORS = [
    (
        lambda s: s.replace("max_fixable_severity: MEDIUM", "max_fixable_severity: HIGHEST"),
        17,
        "transitions.s2->p.max_fixable_severity",
        "unknown severity 'HIGHEST' (expected NONE, NEGLIGIBLE, LOW, MEDIUM, HIGH, CRITICAL)",
    ),
    (
        lambda s: s.replace("max_fixable_severity: MEDIUM", "max_fixable_severity: UNKNOWN"),
        17,
        "transitions.s2->p.max_fixable_severity",
        "unknown severity 'UNKNOWN'",
    ),
    (
        lambda s: s.replace("max_fixable_severity: MEDIUM", "max_fixable_severity: 3"),
        17,
        "transitions.s2->p.max_fixable_severity",
        "expected a severity name, got int '3'",
    ),
    (
        lambda s: s.replace("    max_scan_age: 7d", "    max_scan_age: 7d\n    unknown_severity_as: NONE"),
        20,
        "transitions.s2->p.unknown_severity_as",
        "unknown severity 'NONE'",
    ),
    (
        lambda s: s.replace("max_scan_age: 7d", "max_scan_age: 7 days"),
        19,
        "transitions.s2->p.max_scan_age",
        "bad duration '7 days'",
    ),
    (
        lambda s: s.replace("max_scan_age: 7d", "max_scan_age: 0h"),
        19,
        "transitions.s2->p.max_scan_age",
        "longer than zero",
    ),
    (
        lambda s: s.replace("max_scan_age: 7d", "max_scan_age: 7"),
        19,
        "transitions.s2->p.max_scan_age",
        "expected a duration",
    ),
    (
        lambda s: s.replace("STALE: warn", "STALE: maybe"),
        21,
        "transitions.s2->p.on_state.STALE",
        "bad verdict 'maybe' (expected deny, warn, allow)",
    ),
    (
        lambda s: s.replace("STALE: warn", "STALE: no"),
        21,
        "transitions.s2->p.on_state.STALE",
        "bad verdict",
    ),
    (
        lambda s: s.replace("STALE: warn", "EVALUATED: warn"),
        21,
        "transitions.s2->p.on_state.EVALUATED",
        "unknown state (expected one of NOT_SCANNED, SCANNING, FAILED, STALE, RESCAN_REQUIRED)",
    ),
    (
        lambda s: s.replace("    max_scan_age: 7d", "    max_scan_age: 7d\n    max_fixable: LOW"),
        20,
        "transitions.s2->p.max_fixable",
        "unknown key (expected one of",
    ),
    (
        lambda s: s.replace("    max_scan_age: 7d", "    max_scan_age: 7d\n    max_fixable: LOW"),
        20,
        "transitions.s2->p.max_fixable",
        "did you mean 'max_fixable_severity'?",
    ),
    (lambda s: s + "rules: []\n", 22, "rules", "unknown key"),
    (
        lambda s: s.replace("allow_secrets: true", "allow_secrets: 'true'"),
        6,
        "transitions.d->t.allow_secrets",
        "expected true or false",
    ),
    (
        lambda s: s.replace("    max_scan_age: 14d\n", ""),
        12,
        "transitions.s1->s2",
        "missing required key max_scan_age",
    ),
    (lambda s: s.replace("  t->s1:", "  t->x1:"), 8, "transitions.t->x1", "unknown stage 'x1'"),
    (lambda s: s.replace("  t->s1:", "  t-s1:"), 8, "transitions.t-s1", "expected a transition FROM->TO"),
    (lambda s: s.replace("  t->s1:", "  s1->t:"), 8, "transitions.s1->t", "goes backward"),
    (lambda s: s.replace("  t->s1:", "  s1->s1:"), 8, "transitions.s1->s1", "not a promotion"),
    (lambda s: s.replace("  t->s1:", "  d->t:"), 8, "transitions.d->t", "duplicate key"),
    (lambda s: s.replace("  t->s1:", "  d -> t:"), 8, "transitions.d -> t", "same transition as 'd->t'"),
    (
        lambda s: s.replace("  t->s1:", "  t->s2:"),
        3,
        "transitions",
        "missing t->s1 (every one-step promotion needs a rule",
    ),
    (lambda s: s.replace("version: 1", "version: 2"), 1, "version", "unsupported version '2'"),
    (lambda s: s.replace("version: 1\n", ""), 1, "", "missing required key version"),
    (
        lambda s: s.replace("    on_state:\n", "    require_scanners: []\n    on_state:\n"),
        20,
        "transitions.s2->p.require_scanners",
        "must name at least one scanner",
    ),
    (
        lambda s: s.replace("    on_state:\n", "    require_scanners: trivy\n    on_state:\n"),
        20,
        "transitions.s2->p.require_scanners",
        "expected a list of scanner names",
    ),
    (
        lambda s: s.replace(s[s.index("  d->t:") : s.index("  t->s1:")], "  d->t: 5\n"),
        3,
        "transitions.d->t",
        "expected a mapping, got int '5'",
    ),
    (lambda s: s.replace("STALE: warn", "STALE: [warn"), 22, "", "invalid YAML"),
]


@pytest.mark.parametrize(("edit", "line", "path", "words"), ERRORS)
def test_errors_name_source_line_and_path(edit, line: int, path: str, words: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PolicyError) as e:
        load_policy(edit(BASE), source="policy.yaml")
    err = e.value
    assert isinstance(err, InvalidArgument)
    # One mistake is one problem: no echo (a misspelt required key is not also "missing").
    assert not isinstance(err, PolicyErrors) and err.problems == (err,), str(err)
    assert (err.line, err.path) == (line, path), str(err)
    assert words in err.problem, str(err)
    prefix = f"policy.yaml:{line}: {path}: " if path else f"policy.yaml:{line}: "
    assert str(err).startswith(prefix)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", "policy is empty"),
        ("# only a comment\n", "policy is empty"),
        ("- a\n- b\n", "expected a mapping with version and transitions at the top, got a list"),
        ("just text\n", "got str 'just text'"),
        ("a: 1\n---\nb: 2\n", "invalid YAML"),
    ],
)
def test_degenerate_documents(text: str, words: str) -> None:
    with pytest.raises(PolicyError, match=words) as e:
        load_policy(text, source="p.yaml")
    assert str(e.value).startswith("p.yaml:")


# -- several problems at once -----------------------------------------------------------------------

# BASE with a webhook section and `version` moved to the end, so the version problem is found first
# but sits on the last line: the report must follow the file, not the order of the checks.
MULTI_BASE = BASE.replace("version: 1\n", "") + "webhook:\n  namespaces:\n    prod: p\n" + "version: 1\n"
# Independent mistakes in different sections, each (old, new) applied once.
MISTAKES = (
    ("max_unfixable_severity: CRITICAL", "max_unfixable_severity: SEVERE"),  # d->t: a bad severity
    ("max_scan_age: 14d", "max_scan_age: 14 days"),  # s1->s2: a bad duration
    ("    on_state:\n", "    on_states:\n"),  # s2->p: an unknown key with a "did you mean"
    ("prod: p", "prod: x"),  # webhook: an unknown stage
    ("version: 1", "version: 2"),  # top level: an unsupported version
)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.splitlines(), 1) if needle in ln)


def _single(old: str, new: str) -> str:
    """The message of one mistake alone (the ERRORS tests pin these texts)."""
    with pytest.raises(PolicyError) as e:
        load_policy(MULTI_BASE.replace(old, new, 1), source="policy.yaml")
    assert not isinstance(e.value, PolicyErrors)
    return str(e.value)


def test_every_independent_problem_is_reported_in_line_order() -> None:
    text = MULTI_BASE
    for old, new in MISTAKES:
        text = text.replace(old, new, 1)
    with pytest.raises(PolicyErrors) as e:
        load_policy(text, source="policy.yaml")
    err = e.value
    assert isinstance(err, InvalidArgument)  # still INVALID_ARGUMENT over gRPC, exit 2 in the CLI
    lines = str(err).splitlines()
    assert lines[0] == "policy.yaml: 5 problems:"
    # Each problem keeps exactly the message it has alone, and the list follows the file.
    assert lines[1:] == sorted(
        (_single(old, new) for old, new in MISTAKES), key=lambda m: int(m.split(":")[1])
    )
    assert [(p.line, p.path) for p in err.problems] == [
        (_line_of(text, "SEVERE"), "transitions.d->t.max_unfixable_severity"),
        (_line_of(text, "14 days"), "transitions.s1->s2.max_scan_age"),
        (_line_of(text, "on_states"), "transitions.s2->p.on_states"),
        (_line_of(text, "prod: x"), "webhook.namespaces.prod"),
        (_line_of(text, "version: 2"), "version"),
    ]
    assert lines[3].endswith("did you mean 'on_state'?")
    assert lines[4] == (
        f"policy.yaml:{_line_of(text, 'prod: x')}: webhook.namespaces.prod: unknown stage 'x' "
        "(expected one of d, t, s1, s2, p)"
    )
    # The first problem's location stays readable for code that wants one place.
    assert (err.line, err.path) == (err.problems[0].line, err.problems[0].path)


def test_one_problem_is_exactly_the_old_message() -> None:
    text = MULTI_BASE.replace("max_scan_age: 14d", "max_scan_age: 14 days")
    with pytest.raises(PolicyError) as e:
        load_policy(text, source="policy.yaml")
    assert type(e.value) is PolicyError
    assert str(e.value) == (
        "policy.yaml:14: transitions.s1->s2.max_scan_age: bad duration '14 days' "
        "(expected a number and unit, e.g. 7d, 12h, 1d12h, 90m)"
    )


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        # A bad transition key does not also make the step "missing"; its body is still checked.
        (
            lambda s: s.replace("  t->s1:", "  t->x1:").replace("max_scan_age: 30d", "max_scan_age: 30", 2),
            [
                (7, "transitions.d->t.max_scan_age"),
                (8, "transitions.t->x1"),
                (11, "transitions.t->x1.max_scan_age"),
            ],
        ),
        # A transition that is not a mapping is one problem; the others are still checked.
        (
            lambda s: s.replace(s[s.index("  d->t:") : s.index("  t->s1:")], "  d->t: 5\n").replace(
                "max_fixable_severity: MEDIUM", "max_fixable_severity: MEDIUMISH"
            ),
            [(3, "transitions.d->t"), (13, "transitions.s2->p.max_fixable_severity")],
        ),
        # Every entry of a list or a map is judged on its own.
        (
            lambda s: s.replace(
                "    on_state:\n      STALE: warn\n",
                "    require_scanners: [trivy, '', [x]]\n    on_state:\n      STALE: meh\n      FAILED: no\n",
            ),
            [
                (20, "transitions.s2->p.require_scanners[1]"),
                (20, "transitions.s2->p.require_scanners[2]"),
                (22, "transitions.s2->p.on_state.STALE"),
                (23, "transitions.s2->p.on_state.FAILED"),
            ],
        ),
    ],
)
def test_problems_are_not_echoed(edit, expected: list[tuple[int, str]]) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PolicyErrors) as e:
        load_policy(edit(BASE), source="policy.yaml")
    assert [(p.line, p.path) for p in e.value.problems] == expected, str(e.value)


def test_message_example_from_the_docs() -> None:
    text = BASE.replace("max_fixable_severity: MEDIUM", "max_fixable_severity: HIGHEST")
    with pytest.raises(PolicyError) as e:
        load_policy(text, source="policy.yaml")
    assert str(e.value) == (
        "policy.yaml:17: transitions.s2->p.max_fixable_severity: unknown severity 'HIGHEST' "
        "(expected NONE, NEGLIGIBLE, LOW, MEDIUM, HIGH, CRITICAL)"
    )


# --- digest --------------------------------------------------------------------------------------

REORDERED = """\
transitions:
  s2->p: {max_scan_age: 168h, max_unfixable_severity: high, max_fixable_severity: medium,
          allow_secrets: false, unknown_severity_as: MEDIUM,
          on_state: {FAILED: deny, stale: WARN}}
  s1->s2: {max_scan_age: 2w, max_unfixable_severity: CRITICAL, max_fixable_severity: HIGH}
  t->s1:
    max_scan_age: 30d
    max_unfixable_severity: CRITICAL
    max_fixable_severity: HIGH
  d->t:
    max_scan_age: 720h
    allow_secrets: yes
    max_unfixable_severity: CRITICAL
    max_fixable_severity: CRITICAL
version: 1
"""


def test_digest_is_stable_under_layout_and_spelling() -> None:
    a, b = load_policy(BASE, "a.yaml"), load_policy(REORDERED, "b.yaml")
    assert a.digest == b.digest
    assert a == b
    assert len(a.digest) == 64


@pytest.mark.parametrize(
    "edit",
    [
        lambda s: s.replace("max_fixable_severity: MEDIUM", "max_fixable_severity: LOW"),
        lambda s: s.replace("max_scan_age: 7d", "max_scan_age: 6d"),
        lambda s: s.replace("STALE: warn", "STALE: deny"),
        lambda s: s.replace("allow_secrets: true", "allow_secrets: false"),
        lambda s: s.replace("    on_state:\n", "    require_scanners: [trivy]\n    on_state:\n"),
    ],
)
def test_digest_changes_with_meaning(edit) -> None:  # type: ignore[no-untyped-def]
    assert load_policy(edit(BASE)).digest != load_policy(BASE).digest


# --- files and defaults --------------------------------------------------------------------------


def test_defaults_load_and_are_stable() -> None:
    policy = default_policy()
    assert policy is default_policy()
    assert [t.key for t in policy.transitions] == ["d->t", "t->s1", "s1->s2", "s2->p"]
    shipped = Path(__file__).parents[2] / "gate" / "policy" / "defaults.yaml"
    assert load_policy_file(str(shipped)).digest == policy.digest


def test_load_policy_file_errors_use_the_path(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text("version: 1\ntransitions: []\n")
    with pytest.raises(PolicyError, match=rf"^{bad}:2: transitions: expected a mapping"):
        load_policy_file(str(bad))
    with pytest.raises(InvalidArgument) as e:
        load_policy_file(str(tmp_path / "missing.yaml"))
    assert e.value.field == "policy_file"


@pytest.mark.parametrize(
    ("text", "seconds", "canonical"),
    [
        ("7d", 604800, "7d"),
        ("12h", 43200, "12h"),
        ("1d12h", 129600, "1d12h"),
        ("2w", 1209600, "14d"),
        ("90m", 5400, "1h30m"),
    ],
)
def test_durations(text: str, seconds: int, canonical: str) -> None:
    value = parse_duration(text)
    assert value.total_seconds() == seconds
    assert format_duration(value) == canonical


@pytest.mark.parametrize("text", ["", "7", "d7", "7x", "-1d", "7d 1h", "0s"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(text)
