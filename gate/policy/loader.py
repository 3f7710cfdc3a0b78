"""YAML → Policy, with errors that name the source, line and field path of the problem.

The YAML is composed into nodes (not constructed into plain dicts) so every value keeps its position;
a typo in a policy should point at the line to fix. Unknown keys are errors: a misspelt threshold
silently falling back to a default would be a quiet hole in the gate.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from importlib import resources
from itertools import pairwise

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

__all__ = ["PolicyError", "default_policy", "load_policy", "load_policy_file"]

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


class _Doc:
    """Node-walking helpers bound to one source name, so every error carries it."""

    def __init__(self, source: str) -> None:
        self.source = source

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
                raise self.fail(key_node, path, f"keys must be plain strings, got {key_node.value!r}")
            key = str(key_node.value)
            if key in out:
                raise self.fail(key_node, _join(path, key), "duplicate key")
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
        for key, (key_node, _) in entries.items():
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise self.fail(
                    key_node, _join(path, key), f"unknown key (expected one of {', '.join(allowed)}){hint}"
                )
        missing = [k for k in required if k not in entries]
        if missing:
            raise self.fail(owner, path, f"missing required key {', '.join(missing)}")

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
        for key, (key_node, value_node) in self.mapping(node, path).items():
            sub = _join(path, key)
            name = key.strip().upper()
            if name not in _REAL_SEVERITIES:
                expected = f"expected one of {', '.join(_REAL_SEVERITIES)}"
                raise self.fail(key_node, sub, f"unknown severity ({expected})")
            if Severity[name] in out:
                raise self.fail(key_node, sub, "duplicate severity")
            out[Severity[name]] = self.duration(value_node, sub)
        return out

    def scanners(self, node: yaml.Node, path: str) -> tuple[str, ...]:
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, path, f"expected a list of scanner names, got {_kind(node)}")
        names: list[str] = []
        for i, item in enumerate(node.value):
            name = self.scalar(item, f"{path}[{i}]", "a scanner name").strip()
            if not name:
                raise self.fail(item, f"{path}[{i}]", "scanner name is empty")
            if name not in names:
                names.append(name)
        if not names:
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
            name = self.checked(item, f"{path}[{i}]", f"a {expected}", check)
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
        for key, (key_node, value_node) in self.mapping(node, path).items():
            state = states.get(key.strip().upper())
            if state is None:
                raise self.fail(
                    key_node, _join(path, key), f"unknown state (expected one of {', '.join(states)})"
                )
            if state in out:
                raise self.fail(key_node, _join(path, key), "duplicate state")
            sub = _join(path, key)
            if isinstance(value_node, yaml.ScalarNode) and value_node.tag == _TAG + "str":
                try:
                    out[state] = OnState(str(value_node.value).strip().lower())
                    continue
                except ValueError:
                    pass
            raise self.fail(value_node, sub, f"bad verdict {value_node.value!r} (expected {verdicts})")
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


def _transition(
    doc: _Doc, stages: tuple[Stage, Stage], key_node: yaml.Node, node: yaml.Node, path: str
) -> TransitionPolicy:
    entries = doc.mapping(node, path)
    # A missing key is reported on the transition's own line, where the reader will add it.
    doc.check_keys(entries, _T_KEYS, path, key_node, _REQUIRED_T_KEYS)

    fixable = doc.threshold(entries["max_fixable_severity"][1], _join(path, "max_fixable_severity"))
    unfixable = doc.threshold(entries["max_unfixable_severity"][1], _join(path, "max_unfixable_severity"))
    age = doc.duration(entries["max_scan_age"][1], _join(path, "max_scan_age"))
    secrets = (
        doc.boolean(entries["allow_secrets"][1], _join(path, "allow_secrets"))
        if "allow_secrets" in entries
        else False
    )
    scanners = (
        doc.scanners(entries["require_scanners"][1], _join(path, "require_scanners"))
        if "require_scanners" in entries
        else None
    )
    unknown = (
        doc.severity(entries["unknown_severity_as"][1], _join(path, "unknown_severity_as"))
        if "unknown_severity_as" in entries
        else Severity.MEDIUM
    )
    on_state = doc.on_state(entries["on_state"][1], _join(path, "on_state")) if "on_state" in entries else {}
    source = SEVERITY_MAX
    if "severity_source" in entries:
        node = entries["severity_source"][1]
        source = doc.scalar(node, _join(path, "severity_source"), "max or a scanner name").strip().lower()
        if not source:
            raise doc.fail(node, _join(path, "severity_source"), "expected max or a scanner name, got ''")
    image = _image_rules(doc, entries, path)
    exception_days = _exception_days(doc, entries, path)
    db_age = (
        doc.duration(entries["max_db_age"][1], _join(path, "max_db_age")) if "max_db_age" in entries else None
    )
    grace = (
        doc.grace(entries["runtime_grace"][1], _join(path, "runtime_grace"))
        if "runtime_grace" in entries
        else {}
    )
    platforms: tuple[str, ...] | None = None
    if "platforms" in entries:
        node, sub = entries["platforms"][1], _join(path, "platforms")
        platforms = doc.names(node, sub, "platform", check_platform)
        if not platforms:
            # An empty list would require no platform at all, letting any index through unjudged.
            raise doc.fail(
                node, sub, "must name at least one platform (omit the key to require every platform)"
            )
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
        enforce=doc.boolean(entries["enforce"][1], _join(path, "enforce")) if "enforce" in entries else True,
        max_exception_days=exception_days,
        max_db_age=db_age,
        runtime_grace=grace,
    )


def _exception_days(doc: _Doc, entries: dict[str, tuple[yaml.Node, yaml.Node]], path: str) -> int:
    """`max_exception_days`: a positive whole number of days (built-in 90)."""
    if "max_exception_days" not in entries:
        return DEFAULT_MAX_EXCEPTION_DAYS
    node, sub = entries["max_exception_days"][1], _join(path, "max_exception_days")
    text = str(node.value).strip() if isinstance(node, yaml.ScalarNode) else ""
    if (
        not isinstance(node, yaml.ScalarNode)
        or node.tag != _TAG + "int"
        or not text.isdigit()
        or int(text) <= 0
    ):
        raise doc.fail(node, sub, f"expected a positive number of days, e.g. 30, got {_kind(node)}")
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

    def node(key: str) -> tuple[yaml.Node | None, str]:
        return (entries[key][1] if key in entries else None), _join(path, key)

    n, p = node("require_base_tier")
    required = doc.checked(n, p, "a tier name", check_tier) if n is not None else ""
    n, p = node("forbid_base_tiers")
    forbidden = doc.names(n, p, "tier name", check_tier) if n is not None else ()
    if required and required in forbidden:
        raise doc.fail(n, p, f"{required} is required by require_base_tier and forbidden here")
    n, p = node("tag_pattern")
    pattern = doc.checked(n, p, "a regular expression", check_tag_pattern) if n is not None else ""
    n, p = node("forbid_latest")
    latest = doc.boolean(n, p) if n is not None else False
    n, p = node("stage_path")
    stage_path = doc.stage_path(n, p) if n is not None else False
    n, p = node("forbid_root_user")
    root = doc.boolean(n, p) if n is not None else False
    n, p = node("require_labels")
    labels = doc.names(n, p, "label name", check_label_name) if n is not None else ()
    return _ImageRules(required, forbidden, pattern, latest, stage_path, root, labels)


def load_policy(text: str, source: str = "<policy>") -> Policy:
    """Parse a Policy v1 YAML document; raise PolicyError (an InvalidArgument) naming source:line: path."""
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
    top = doc.mapping(root, "")
    doc.check_keys(top, (*_TOP_KEYS, *_OPTIONAL_TOP_KEYS), "", root, _TOP_KEYS)

    version_node = top["version"][1]
    if not (version_node.tag == _TAG + "int" and str(version_node.value) == str(_SUPPORTED_VERSION)):
        raise doc.fail(version_node, "version", f"unsupported version {version_node.value!r} (expected 1)")

    t_node = top["transitions"][1]
    transitions: list[TransitionPolicy] = []
    seen: dict[tuple[Stage, Stage], str] = {}
    for key, (key_node, value_node) in doc.mapping(t_node, "transitions").items():
        path = _join("transitions", key)
        stages = _stages(doc, key, key_node, path)
        if stages in seen:
            raise doc.fail(key_node, path, f"same transition as {seen[stages]!r}")
        seen[stages] = key
        transitions.append(_transition(doc, stages, key_node, value_node, path))

    ladder = list(Stage)
    missing = [transition_key(a, b) for a, b in pairwise(ladder) if (a, b) not in seen]
    if missing:
        raise doc.fail(
            t_node,
            "transitions",
            f"missing {', '.join(missing)} (every one-step promotion needs a rule; jumps are optional)",
        )
    webhook = _webhook(doc, *top["webhook"]) if "webhook" in top else None
    return Policy(transitions, source=source, webhook=webhook)


def _stage_value(doc: _Doc, node: yaml.Node, path: str) -> Stage:
    text = doc.scalar(node, path, f"a stage name ({_STAGE_NAMES})").strip().lower()
    try:
        return Stage(text)
    except ValueError:
        raise doc.fail(node, path, f"unknown stage {node.value!r} (expected one of {_STAGE_NAMES})") from None


def _webhook(doc: _Doc, key_node: yaml.Node, node: yaml.Node) -> WebhookPolicy:
    """`webhook: {namespaces: {prod: p, …}, unknown_namespace: allow|deny|STAGE}` — both keys optional."""
    path = "webhook"
    entries = doc.mapping(node, path)
    doc.check_keys(entries, _WEBHOOK_KEYS, path, key_node)
    namespaces: dict[str, Stage] = {}
    if "namespaces" in entries:
        sub = _join(path, "namespaces")
        for name, (name_node, stage_node) in doc.mapping(entries["namespaces"][1], sub).items():
            where = _join(sub, name)
            try:
                check_namespace(name)
            except ValueError as e:
                raise doc.fail(name_node, where, str(e)) from None
            namespaces[name] = _stage_value(doc, stage_node, where)
    unknown: str | None = None
    if "unknown_namespace" in entries:
        value_node, sub = entries["unknown_namespace"][1], _join(path, "unknown_namespace")
        expected = f"allow, deny or a stage: {_STAGE_NAMES}"
        unknown = doc.scalar(value_node, sub, expected).strip().lower()
        if unknown not in UNKNOWN_NAMESPACE_RULES and unknown not in {s.value for s in Stage}:
            raise doc.fail(value_node, sub, f"bad value {value_node.value!r} (expected {expected})")
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
