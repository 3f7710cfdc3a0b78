"""YAML → Policy, with errors that name the source, line and field path of the problem.

The YAML is composed into nodes (not constructed into plain dicts) so every value keeps its position;
a typo in a policy should point at the line to fix. Unknown keys are errors: a misspelt threshold
silently falling back to a default would be a quiet hole in the gate.

Problems are collected, not raised one by one: whoever fixes a policy file should see every mistake in
one go. A node is skipped only where looking inside it would only repeat the first problem (a
transition that is not a mapping has no keys to check), and the checks that need a valid whole (every
one-step promotion present) run only when the parts they read are sound.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from itertools import pairwise
from typing import TypeVar

import yaml

from gate.domain import Severity, Stage, VerdictState
from gate.errors import InvalidArgument
from gate.policy.exceptions import DEFAULT_MAX_EXCEPTION_DAYS
from gate.policy.model import (
    CHECKED_STATES,
    UNKNOWN_NAMESPACE_RULES,
    OnState,
    Policy,
    TransitionPolicy,
    WebhookPolicy,
    check_label_name,
    check_namespace,
    check_platform,
    check_stage_path,
    check_tag_pattern,
    check_tier,
    parse_duration,
    transition_key,
)
from scanners.normalize import SEVERITY_MAX

__all__ = ["PolicyError", "PolicyErrors", "default_policy", "load_policy", "load_policy_file"]

T = TypeVar("T")

_TAG = "tag:yaml.org,2002:"
_THRESHOLDS = ("NONE", *(s.name for s in Severity if s is not Severity.UNKNOWN))
_REAL_SEVERITIES = tuple(s.name for s in Severity if s is not Severity.UNKNOWN)
_TOP_KEYS = ("version", "transitions")
_OPTIONAL_TOP_KEYS = ("webhook",)
_WEBHOOK_KEYS = ("namespaces", "unknown_namespace")
_STAGE_NAMES = ", ".join(s.value for s in Stage)
_REQUIRED_T_KEYS = ("max_fixable_severity", "max_unfixable_severity", "max_scan_age")
_T_KEYS = (
    *_REQUIRED_T_KEYS,
    "allow_secrets",
    "require_scanners",
    "severity_source",
    "unknown_severity_as",
    "on_state",
    "require_base_tier",
    "forbid_base_tiers",
    "tag_pattern",
    "forbid_latest",
    "stage_path",
    "forbid_root_user",
    "require_labels",
    "max_exception_days",
    "platforms",
    "enforce",
    "max_db_age",
    "runtime_grace",
)
_SUPPORTED_VERSION = 1


class PolicyError(InvalidArgument):
    """A policy document is invalid; `source`, `line` (1-based) and `path` locate the problem."""

    def __init__(self, source: str, line: int, path: str, problem: str) -> None:
        """Format the message as `source:line: path: problem`."""
        where = f"{source}:{line}: {path}: " if path else f"{source}:{line}: "
        super().__init__(where + problem)
        self.source = source
        self.line = line
        self.path = path
        self.problem = problem
        # Every problem this error stands for: itself, or each one of a PolicyErrors.
        self.problems: tuple[PolicyError, ...] = (self,)


class PolicyErrors(PolicyError):
    """Several independent problems in one policy document, in line order (`problems`).

    The message is a `source: N problems:` line, then each problem's own `source:line: path: problem`
    line; `line`, `path` and `problem` are the first problem's, so code that reads one location still
    gets a real one.
    """

    def __init__(self, source: str, problems: Sequence[PolicyError]) -> None:
        """Order `problems` by line (discovery order within a line) and list them one per line."""
        ordered = tuple(sorted(problems, key=lambda p: p.line))
        first = ordered[0]
        super().__init__(source, first.line, first.path, first.problem)
        # Replace the single-problem message PolicyError.__init__ set.
        self.message = f"{source}: {len(ordered)} problems:\n" + "\n".join(str(p) for p in ordered)
        self.args = (self.message,)
        self.problems = ordered


class _Doc:
    """Node-walking helpers bound to one source name, so every error carries it."""

    def __init__(self, source: str) -> None:
        self.source = source
        # (the problem located by line, what to raise when it is the only one): the same object for a
        # loader problem; a model check's own InvalidArgument, kept as is when alone so its message
        # does not change, with a PolicyError at its transition's line for the multi-problem list.
        self.problems: list[tuple[PolicyError, InvalidArgument]] = []

    def collect(self, error: PolicyError, original: InvalidArgument | None = None) -> None:
        """Record a problem and carry on; a repeat (a merged anchor seen twice) is recorded once."""
        if not any(
            (p.line, p.path, p.problem) == (error.line, error.path, error.problem) for p, _ in self.problems
        ):
            self.problems.append((error, original if original is not None else error))

    def raise_problems(self) -> None:
        """Raise what was collected: one problem exactly as before, several as one PolicyErrors."""
        if len(self.problems) == 1:
            raise self.problems[0][1]
        if self.problems:
            raise PolicyErrors(self.source, [p for p, _ in self.problems])

    def optional(
        self,
        entries: dict[str, tuple[yaml.Node, yaml.Node]],
        key: str,
        path: str,
        parse: Callable[[yaml.Node, str], T],
        default: T,
    ) -> T:
        """`parse` the value of `key` when present; a problem is recorded and `default` stands in."""
        if key not in entries:
            return default
        try:
            return parse(entries[key][1], _join(path, key))
        except PolicyError as e:
            self.collect(e)
            return default

    def fail(self, node: yaml.Node | None, path: str, problem: str) -> PolicyError:
        line = node.start_mark.line + 1 if node is not None else 1
        return PolicyError(self.source, line, path, problem)

    def mapping(self, node: yaml.Node, path: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Key → (key node, value node); merge keys (`<<: *anchor`) apply, explicit keys win."""
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, path, f"expected a mapping, got {_kind(node)}")
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        merged: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _TAG + "merge":
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                for src in sources:
                    for k, pair in self.mapping(src, path).items():
                        merged.setdefault(k, pair)
                continue
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag != _TAG + "str":
                self.collect(self.fail(key_node, path, f"keys must be plain strings, got {key_node.value!r}"))
                continue
            key = str(key_node.value)
            if key in out:
                # The first one is checked; the repeat is reported and otherwise ignored.
                self.collect(self.fail(key_node, _join(path, key), "duplicate key"))
                continue
            out[key] = (key_node, value_node)
        return {**merged, **out}

    def check_keys(
        self,
        entries: dict[str, tuple[yaml.Node, yaml.Node]],
        allowed: tuple[str, ...],
        path: str,
        owner: yaml.Node,
        required: tuple[str, ...] = (),
    ) -> None:
        """Record each unknown key and the missing required ones.

        A required key that an unknown key's "did you mean" already names is not reported missing too:
        it is the same mistake, and fixing the spelling fixes both.
        """
        suggested: set[str] = set()
        for key, (key_node, _) in entries.items():
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                suggested.update(close)
                self.collect(
                    self.fail(
                        key_node,
                        _join(path, key),
                        f"unknown key (expected one of {', '.join(allowed)}){hint}",
                    )
                )
        missing = [k for k in required if k not in entries and k not in suggested]
        if missing:
            self.collect(self.fail(owner, path, f"missing required key {', '.join(missing)}"))

    def scalar(self, node: yaml.Node, path: str, expected: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.tag != _TAG + "str":
            raise self.fail(node, path, f"expected {expected}, got {_kind(node)}")
        return str(node.value)

    def boolean(self, node: yaml.Node, path: str) -> bool:
        if not isinstance(node, yaml.ScalarNode) or node.tag != _TAG + "bool":
            raise self.fail(node, path, f"expected true or false, got {_kind(node)}")
        return str(node.value).lower() in ("true", "yes", "on")

    def threshold(self, node: yaml.Node, path: str) -> Severity | None:
        expected = f"expected {', '.join(_THRESHOLDS)}"
        text = self.scalar(node, path, "a severity name").strip().upper()
        if text == "NONE":
            return None
        if text not in _THRESHOLDS:
            raise self.fail(node, path, f"unknown severity {node.value!r} ({expected})")
        return Severity[text]

    def severity(self, node: yaml.Node, path: str) -> Severity:
        text = self.scalar(node, path, "a severity name").strip().upper()
        if text not in _REAL_SEVERITIES:
            expected = f"expected {', '.join(_REAL_SEVERITIES)}"
            raise self.fail(node, path, f"unknown severity {node.value!r} ({expected})")
        return Severity[text]

    def duration(self, node: yaml.Node, path: str) -> timedelta:
        text = self.scalar(node, path, "a duration such as 7d or 12h")
        try:
            return parse_duration(text)
        except ValueError as e:
            raise self.fail(node, path, str(e)) from None

    def grace(self, node: yaml.Node, path: str) -> dict[Severity, timedelta]:
        """`{CRITICAL: 72h, HIGH: 14d}`: a runtime grace per severity."""
        out: dict[Severity, timedelta] = {}
        seen: set[Severity] = set()
        for key, (key_node, value_node) in self.mapping(node, path).items():
            sub = _join(path, key)
            name = key.strip().upper()
            if name not in _REAL_SEVERITIES:
                expected = f"expected one of {', '.join(_REAL_SEVERITIES)}"
                self.collect(self.fail(key_node, sub, f"unknown severity ({expected})"))
                continue
            if Severity[name] in seen:
                self.collect(self.fail(key_node, sub, "duplicate severity"))
                continue
            seen.add(Severity[name])
            try:
                out[Severity[name]] = self.duration(value_node, sub)
            except PolicyError as e:
                self.collect(e)
        return out

    def scanners(self, node: yaml.Node, path: str) -> tuple[str, ...]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, path, f"expected a list of scanner names, got {_kind(node)}")
        names: list[str] = []
        for i, item in enumerate(node.value):
            try:
                name = self.scalar(item, f"{path}[{i}]", "a scanner name").strip()
                if not name:
                    raise self.fail(item, f"{path}[{i}]", "scanner name is empty")
            except PolicyError as e:
                self.collect(e)
                continue
            if name not in names:
                names.append(name)
        if not node.value:
            # An empty list would require nothing, letting an unscanned image through.
            raise self.fail(
                node, path, "must name at least one scanner (omit the key to use the configured ones)"
            )
        return tuple(names)

    def checked(self, node: yaml.Node, path: str, expected: str, check: Callable[[str], str]) -> str:
        """A string scalar passed through a model validator; its ValueError becomes a line error."""
        text = self.scalar(node, path, expected)
        try:
            return check(text)
        except ValueError as e:
            raise self.fail(node, path, str(e)) from None

    def names(
        self, node: yaml.Node, path: str, expected: str, check: Callable[[str], str]
    ) -> tuple[str, ...]:
        """A list of validated names, repeats dropped, order kept; an empty list is allowed."""
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, path, f"expected a list of {expected}s, got {_kind(node)}")
        out: list[str] = []
        for i, item in enumerate(node.value):
            try:
                name = self.checked(item, f"{path}[{i}]", f"a {expected}", check)
            except PolicyError as e:
                self.collect(e)
                continue
            if name not in out:
                out.append(name)
        return tuple(out)

    def stage_path(self, node: yaml.Node, path: str) -> bool | str:
        """`true`/`false`, or a template such as `{stage}/{name}`."""
        if isinstance(node, yaml.ScalarNode) and node.tag == _TAG + "bool":
            return self.boolean(node, path)
        return self.checked(node, path, "true, false or a template such as {stage}/{name}", check_stage_path)

    def on_state(self, node: yaml.Node, path: str) -> dict[VerdictState, OnState]:
        states = {s.value: s for s in CHECKED_STATES}
        verdicts = ", ".join(v.value for v in OnState)
        out: dict[VerdictState, OnState] = {}
        seen: set[VerdictState] = set()
        for key, (key_node, value_node) in self.mapping(node, path).items():
            sub = _join(path, key)
            state = states.get(key.strip().upper())
            if state is None:
                self.collect(self.fail(key_node, sub, f"unknown state (expected one of {', '.join(states)})"))
                continue
            if state in seen:
                self.collect(self.fail(key_node, sub, "duplicate state"))
                continue
            seen.add(state)
            if isinstance(value_node, yaml.ScalarNode) and value_node.tag == _TAG + "str":
                try:
                    out[state] = OnState(str(value_node.value).strip().lower())
                    continue
                except ValueError:
                    pass
            self.collect(
                self.fail(value_node, sub, f"bad verdict {value_node.value!r} (expected {verdicts})")
            )
        return out


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if node.tag == _TAG + "null":
        return "nothing (null)"
    return f"{node.tag.removeprefix(_TAG)} {node.value!r}"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _stages(doc: _Doc, key: str, key_node: yaml.Node, path: str) -> tuple[Stage, Stage]:
    parts = key.split("->")
    if len(parts) != 2:
        raise doc.fail(key_node, path, "expected a transition FROM->TO, e.g. s2->p")
    try:
        a, b = (Stage.parse(p) for p in parts)
    except InvalidArgument as e:
        raise doc.fail(key_node, path, e.message) from None
    if b.rank == a.rank:
        raise doc.fail(key_node, path, "not a promotion: from and to are the same stage")
    if b.rank < a.rank:
        raise doc.fail(key_node, path, "goes backward; transitions only move up d->t->s1->s2->p")
    return a, b


def _transitions(doc: _Doc, node: yaml.Node) -> list[TransitionPolicy]:
    """Every transition that loads cleanly; each problem is recorded, the rest are still checked."""
    before = len(doc.problems)
    try:
        entries = doc.mapping(node, "transitions")
    except PolicyError as e:
        doc.collect(e)
        return []
    out: list[TransitionPolicy] = []
    seen: dict[tuple[Stage, Stage], str] = {}
    # A repeated or non-string key was dropped by mapping(); it may be the one "missing" would name.
    keys_sound = len(doc.problems) == before
    for key, (key_node, value_node) in entries.items():
        path = _join("transitions", key)
        stages: tuple[Stage, Stage] | None = None
        try:
            stages = _stages(doc, key, key_node, path)
            if stages in seen:
                raise doc.fail(key_node, path, f"same transition as {seen[stages]!r}")
            seen[stages] = key
        except PolicyError as e:
            doc.collect(e)
            keys_sound = False
            stages = None
        # The body is checked even under a bad key: its mistakes are independent of the key's.
        try:
            transition = _transition(doc, stages, key_node, value_node, path)
        except PolicyError as e:
            doc.collect(e)  # not a mapping: there are no keys to look at
            continue
        if transition is not None:
            out.append(transition)
    if keys_sound:
        # Only over sound keys: a misspelt `s2->x` would otherwise also read as "missing s2->p".
        ladder = list(Stage)
        missing = [transition_key(a, b) for a, b in pairwise(ladder) if (a, b) not in seen]
        if missing:
            doc.collect(
                doc.fail(
                    node,
                    "transitions",
                    f"missing {', '.join(missing)} "
                    "(every one-step promotion needs a rule; jumps are optional)",
                )
            )
    return out


def _transition(
    doc: _Doc, stages: tuple[Stage, Stage] | None, key_node: yaml.Node, node: yaml.Node, path: str
) -> TransitionPolicy | None:
    """One transition; None when it (or its key, `stages` None) has a problem, each one recorded."""
    before = len(doc.problems)
    entries = doc.mapping(node, path)
    # A missing key is reported on the transition's own line, where the reader will add it.
    doc.check_keys(entries, _T_KEYS, path, key_node, _REQUIRED_T_KEYS)

    def value(key: str, parse: Callable[[yaml.Node, str], T], default: T) -> T:
        return doc.optional(entries, key, path, parse, default)

    # The defaults of required keys never reach a TransitionPolicy: their absence is a problem.
    fixable = value("max_fixable_severity", doc.threshold, None)
    unfixable = value("max_unfixable_severity", doc.threshold, None)
    age = value("max_scan_age", doc.duration, timedelta(days=1))
    secrets = value("allow_secrets", doc.boolean, False)
    scanners: tuple[str, ...] | None = value("require_scanners", doc.scanners, None)
    unknown = value("unknown_severity_as", doc.severity, Severity.MEDIUM)
    on_state: dict[VerdictState, OnState] = value("on_state", doc.on_state, {})
    source = value("severity_source", functools.partial(_severity_source, doc), SEVERITY_MAX)
    image = _image_rules(doc, entries, path)
    exception_days = value(
        "max_exception_days", functools.partial(_exception_days, doc), DEFAULT_MAX_EXCEPTION_DAYS
    )
    db_age: timedelta | None = value("max_db_age", doc.duration, None)
    grace: dict[Severity, timedelta] = value("runtime_grace", doc.grace, {})
    platforms: tuple[str, ...] | None = value("platforms", functools.partial(_platforms, doc), None)
    enforce = value("enforce", doc.boolean, True)
    if stages is None or len(doc.problems) > before:
        return None
    try:
        return TransitionPolicy(
            from_stage=stages[0],
            to_stage=stages[1],
            max_fixable_severity=fixable,
            max_unfixable_severity=unfixable,
            max_scan_age=age,
            allow_secrets=secrets,
            require_scanners=scanners,
            severity_source=source,
            unknown_severity_as=unknown,
            on_state=on_state,
            require_base_tier=image.require_base_tier,
            forbid_base_tiers=image.forbid_base_tiers,
            tag_pattern=image.tag_pattern,
            forbid_latest=image.forbid_latest,
            stage_path=image.stage_path,
            forbid_root_user=image.forbid_root_user,
            require_labels=image.require_labels,
            platforms=platforms,
            enforce=enforce,
            max_exception_days=exception_days,
            max_db_age=db_age,
            runtime_grace=grace,
        )
    except InvalidArgument as e:
        # A model check the loader does not repeat (e.g. a severity_source that is no scanner name):
        # alone it keeps its own message; among others it is listed at the transition's line.
        doc.collect(doc.fail(key_node, e.field or path, e.message), e)
        return None


def _severity_source(doc: _Doc, node: yaml.Node, path: str) -> str:
    """`severity_source`: max or a scanner name, lowercased."""
    source = doc.scalar(node, path, "max or a scanner name").strip().lower()
    if not source:
        raise doc.fail(node, path, "expected max or a scanner name, got ''")
    return source


def _platforms(doc: _Doc, node: yaml.Node, path: str) -> tuple[str, ...]:
    """`platforms`: at least one os/arch[/variant]."""
    platforms = doc.names(node, path, "platform", check_platform)
    if not node.value:
        # An empty list would require no platform at all, letting any index through unjudged.
        raise doc.fail(node, path, "must name at least one platform (omit the key to require every platform)")
    return platforms


def _exception_days(doc: _Doc, node: yaml.Node, path: str) -> int:
    """`max_exception_days`: a positive whole number of days (built-in 90)."""
    text = str(node.value).strip() if isinstance(node, yaml.ScalarNode) else ""
    if (
        not isinstance(node, yaml.ScalarNode)
        or node.tag != _TAG + "int"
        or not text.isdigit()
        or int(text) <= 0
    ):
        raise doc.fail(node, path, f"expected a positive number of days, e.g. 30, got {_kind(node)}")
    return int(text)


@dataclass(frozen=True)
class _ImageRules:
    require_base_tier: str = ""
    forbid_base_tiers: tuple[str, ...] = ()
    tag_pattern: str = ""
    forbid_latest: bool = False
    stage_path: bool | str = False
    forbid_root_user: bool = False
    require_labels: tuple[str, ...] = ()


def _image_rules(doc: _Doc, entries: dict[str, tuple[yaml.Node, yaml.Node]], path: str) -> _ImageRules:
    """The provenance, naming and hygiene keys of one transition; each is optional and off by default."""

    def value(key: str, parse: Callable[[yaml.Node, str], T], default: T) -> T:
        return doc.optional(entries, key, path, parse, default)

    def checked(expected: str, check: Callable[[str], str]) -> Callable[[yaml.Node, str], str]:
        return lambda n, p: doc.checked(n, p, expected, check)

    def names(expected: str, check: Callable[[str], str]) -> Callable[[yaml.Node, str], tuple[str, ...]]:
        return lambda n, p: doc.names(n, p, expected, check)

    required = value("require_base_tier", checked("a tier name", check_tier), "")
    forbidden: tuple[str, ...] = value("forbid_base_tiers", names("tier name", check_tier), ())
    if required and required in forbidden:
        doc.collect(
            doc.fail(
                entries["forbid_base_tiers"][1],
                _join(path, "forbid_base_tiers"),
                f"{required} is required by require_base_tier and forbidden here",
            )
        )
    pattern = value("tag_pattern", checked("a regular expression", check_tag_pattern), "")
    latest = value("forbid_latest", doc.boolean, False)
    off: bool | str = False  # typed so the template form is accepted as well
    stage_path = value("stage_path", doc.stage_path, off)
    root = value("forbid_root_user", doc.boolean, False)
    labels: tuple[str, ...] = value("require_labels", names("label name", check_label_name), ())
    return _ImageRules(required, forbidden, pattern, latest, stage_path, root, labels)


def load_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse a Policy v1 YAML document; raise PolicyError (an InvalidArgument) naming source:line: path.

    Every independent problem is reported: one as its own `source:line: path: problem` message,
    several as a PolicyErrors listing each on its own line, in line order. Invalid YAML stops at once.
    """
    doc = _Doc(source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise PolicyError(source, line, "", f"invalid YAML: {e.problem or e.context}") from None
    except yaml.YAMLError as e:
        raise PolicyError(source, 1, "", f"invalid YAML: {e}") from None
    if root is None:
        raise PolicyError(source, 1, "", "policy is empty (expected a mapping with version and transitions)")
    if not isinstance(root, yaml.MappingNode):
        raise doc.fail(
            root, "", f"expected a mapping with version and transitions at the top, got {_kind(root)}"
        )
    try:
        top = doc.mapping(root, "")
    except PolicyError as e:
        doc.collect(e)  # a merge key at the top that is not a mapping: nothing below can be trusted
        doc.raise_problems()
        raise
    doc.check_keys(top, (*_TOP_KEYS, *_OPTIONAL_TOP_KEYS), "", root, _TOP_KEYS)

    if "version" in top:
        version_node = top["version"][1]
        if not (version_node.tag == _TAG + "int" and str(version_node.value) == str(_SUPPORTED_VERSION)):
            doc.collect(
                doc.fail(version_node, "version", f"unsupported version {version_node.value!r} (expected 1)")
            )
    transitions = _transitions(doc, top["transitions"][1]) if "transitions" in top else []
    webhook = doc.optional(top, "webhook", "", lambda n, _: _webhook(doc, top["webhook"][0], n), None)
    doc.raise_problems()
    return Policy(transitions, source=source, webhook=webhook)


def _stage_value(doc: _Doc, node: yaml.Node, path: str) -> Stage:
    text = doc.scalar(node, path, f"a stage name ({_STAGE_NAMES})").strip().lower()
    try:
        return Stage(text)
    except ValueError:
        raise doc.fail(node, path, f"unknown stage {node.value!r} (expected one of {_STAGE_NAMES})") from None


def _unknown_namespace(doc: _Doc, node: yaml.Node, path: str) -> str:
    """`unknown_namespace`: allow, deny or a stage."""
    expected = f"allow, deny or a stage: {_STAGE_NAMES}"
    unknown = doc.scalar(node, path, expected).strip().lower()
    if unknown not in UNKNOWN_NAMESPACE_RULES and unknown not in {s.value for s in Stage}:
        raise doc.fail(node, path, f"bad value {node.value!r} (expected {expected})")
    return unknown


def _webhook(doc: _Doc, key_node: yaml.Node, node: yaml.Node) -> WebhookPolicy:
    """`webhook: {namespaces: {prod: p, …}, unknown_namespace: allow|deny|STAGE}` — both keys optional."""
    path = "webhook"
    before = len(doc.problems)
    entries = doc.mapping(node, path)
    doc.check_keys(entries, _WEBHOOK_KEYS, path, key_node)
    namespaces: dict[str, Stage] = {}
    if "namespaces" in entries:
        sub = _join(path, "namespaces")
        try:
            listed = doc.mapping(entries["namespaces"][1], sub)
        except PolicyError as e:
            doc.collect(e)
            listed = {}
        for name, (name_node, stage_node) in listed.items():
            where = _join(sub, name)
            try:
                check_namespace(name)
            except ValueError as e:
                doc.collect(doc.fail(name_node, where, str(e)))
            try:
                namespaces[name] = _stage_value(doc, stage_node, where)
            except PolicyError as e:
                doc.collect(e)
    unknown = doc.optional(
        entries, "unknown_namespace", path, functools.partial(_unknown_namespace, doc), None
    )
    if len(doc.problems) > before:
        # Partial values must not reach WebhookPolicy's own checks, which would repeat the problem.
        return WebhookPolicy()
    return WebhookPolicy(namespaces, unknown)


def load_policy_file(path: str) -> Policy:
    """Read and load a policy file; an unreadable file is an InvalidArgument naming `policy_file`."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"cannot read policy file {path!r}: {e}", "policy_file") from e
    return load_policy(text, source=path)


@functools.cache
def default_policy() -> Policy:
    """The built-in policy shipped as gate/policy/defaults.yaml (see docs/policy.md)."""
    text = resources.files("gate.policy").joinpath("defaults.yaml").read_text(encoding="utf-8")
    return load_policy(text, source="gate/policy/defaults.yaml")
