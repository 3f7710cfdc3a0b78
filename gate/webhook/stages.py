"""Namespace → stage mapping and the webhook's review settings; pure parsing, no environment access.

The stage of a namespace comes from gate's own configuration only — GATE_WEBHOOK_STAGES and
GATE_WEBHOOK_UNKNOWN_NAMESPACE, or the policy file's `webhook:` section — never from labels or
annotations on the workload: whoever writes the workload must not be able to choose the rules it is
judged by. gate/config.py reads the variables and calls the parsers here so a typo fails at start-up;
the loader validates the file's section; `combine` decides between the two, the environment winning
key by key (the variable an operator sets at deploy time is the more specific, later decision).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from gate.domain import Stage
from gate.errors import InvalidArgument
from gate.policy.model import WebhookPolicy, check_namespace

__all__ = [
    "ReviewSettings",
    "StageMap",
    "StageSources",
    "UnknownNamespace",
    "combine",
    "parse_require_digest",
    "parse_stage_map",
]


class UnknownNamespace(enum.StrEnum):
    """What to do with a namespace GATE_WEBHOOK_STAGES does not list."""

    ALLOW = "allow"  # admitted, with a warning saying gate did not check it
    DENY = "deny"  # refused: every namespace the webhook sees must be mapped


@dataclass(frozen=True)
class StageMap:
    """Which stage each namespace is, and the fallback for namespaces not listed."""

    namespaces: Mapping[str, Stage] = field(default_factory=dict)
    # A stage for unlisted namespaces, or what to do with them when there is none.
    default_stage: Stage | None = None
    unknown: UnknownNamespace = UnknownNamespace.ALLOW
    # Whether the namespaces / the unlisted-namespace rule were given at all (a variable was set), as
    # opposed to being the empty defaults: only a given part overrides the policy file's. Not part of
    # equality: two maps that judge every namespace alike are equal wherever they came from.
    namespaces_given: bool = field(default=False, compare=False)
    unknown_given: bool = field(default=False, compare=False)

    def stage_of(self, namespace: str) -> Stage | None:
        """The namespace's stage; the default stage when unlisted; None when neither applies."""
        return self.namespaces.get(namespace, self.default_stage)


def parse_stage_map(text: str, unknown: str = "", field_name: str = "GATE_WEBHOOK_STAGES") -> StageMap:
    """Parse "prod=p,staging=s2,dev=d" and the unknown-namespace rule ("allow", "deny" or a stage).

    An empty `text` or `unknown` means "not given" (the variable is unset): the part is empty / allow,
    and does not override the policy file's (see `combine`).

    Raises InvalidArgument naming `field_name` (or GATE_WEBHOOK_UNKNOWN_NAMESPACE) and the bad item.
    """
    namespaces: dict[str, Stage] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, stage = item.partition("=")
        name = name.strip()
        try:
            check_namespace(name)
        except ValueError:
            name = ""
        if not sep or not name:
            raise InvalidArgument(f"expected NAMESPACE=STAGE items such as prod=p, got {item!r}", field_name)
        if name in namespaces:
            raise InvalidArgument(f"namespace {name!r} is listed twice", field_name)
        namespaces[name] = Stage.parse(stage, field_name)
    given = bool(text.strip()), bool(unknown.strip())
    rule = unknown.strip().lower() or UnknownNamespace.ALLOW.value
    if rule in UnknownNamespace.__members__.values():
        return StageMap(namespaces, None, UnknownNamespace(rule), *given)
    return StageMap(
        namespaces, Stage.parse(rule, "GATE_WEBHOOK_UNKNOWN_NAMESPACE"), UnknownNamespace.ALLOW, *given
    )


@dataclass(frozen=True)
class StageSources:
    """Where the effective map's two parts came from, for the start-up log line."""

    namespaces: str  # "GATE_WEBHOOK_STAGES", "policy file" or "none"
    unknown: str  # "GATE_WEBHOOK_UNKNOWN_NAMESPACE", "policy file" or "default"
    # Parts set in both places, where the environment won: worth a warning, since an operator editing
    # the file would otherwise wonder why the change has no effect.
    overridden: tuple[str, ...] = ()


def combine(env: StageMap, file: WebhookPolicy | None) -> tuple[StageMap, StageSources]:
    """The effective map: each part from the environment when it was given there, else from the file.

    A part is replaced whole, never merged: with GATE_WEBHOOK_STAGES set, a namespace listed only in the
    file has no stage, so the mapping in force is always one list a person can read in one place.
    """
    overridden: list[str] = []
    if env.namespaces_given or file is None or not file.namespaces:
        namespaces = env.namespaces
        from_ns = "GATE_WEBHOOK_STAGES" if env.namespaces_given else "none"
        if env.namespaces_given and file is not None and file.namespaces:
            overridden.append("webhook.namespaces (by GATE_WEBHOOK_STAGES)")
    else:
        namespaces, from_ns = file.namespaces, "policy file"
    default_stage, unknown, from_unknown = env.default_stage, env.unknown, "default"
    if env.unknown_given:
        from_unknown = "GATE_WEBHOOK_UNKNOWN_NAMESPACE"
        if file is not None and file.unknown_namespace is not None:
            overridden.append("webhook.unknown_namespace (by GATE_WEBHOOK_UNKNOWN_NAMESPACE)")
    elif file is not None and file.unknown_namespace is not None:
        from_unknown = "policy file"
        rule = file.unknown_namespace
        if rule in UnknownNamespace.__members__.values():
            default_stage, unknown = None, UnknownNamespace(rule)
        else:
            default_stage, unknown = Stage(rule), UnknownNamespace.ALLOW
    effective = StageMap(
        namespaces,
        default_stage,
        unknown,
        env.namespaces_given or from_ns == "policy file",
        env.unknown_given or from_unknown == "policy file",
    )
    return effective, StageSources(from_ns, from_unknown, tuple(overridden))


def parse_require_digest(text: str | None) -> frozenset[Stage]:
    """Stages whose images must be pinned by digest: "true" (= p), "false", or a list such as "p,s2"."""
    raw = (text or "").strip().lower()
    if raw in ("", "1", "true", "yes", "on"):
        return frozenset({Stage.P})
    if raw in ("0", "false", "no", "off", "none"):
        return frozenset()
    return frozenset(
        Stage.parse(part, "GATE_WEBHOOK_REQUIRE_DIGEST") for part in raw.split(",") if part.strip()
    )


@dataclass(frozen=True)
class ReviewSettings:
    """How strictly review() judges images, beyond the stage map."""

    require_digest: frozenset[Stage] = frozenset({Stage.P})
    # Tag-only images: resolve them to a digest through the registry (cached), or deny them.
    resolve_tags: bool = True
    # Longest status.message; Kubernetes prints it on one line after "denied the request: ".
    max_message: int = 1000
