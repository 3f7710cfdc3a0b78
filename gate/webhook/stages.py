"""Namespace → stage mapping and the webhook's review settings; pure parsing, no environment access.

The stage of a namespace comes from gate's configuration only (GATE_WEBHOOK_STAGES), never from labels
or annotations on the workload: whoever writes the workload must not be able to choose the rules it is
judged by. gate/config.py reads the variables and calls the parsers here so a typo fails at start-up.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from gate.domain import Stage
from gate.errors import InvalidArgument

__all__ = [
    "ReviewSettings",
    "StageMap",
    "UnknownNamespace",
    "parse_require_digest",
    "parse_stage_map",
]

# A Kubernetes namespace name is a DNS-1123 label.
_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


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

    def stage_of(self, namespace: str) -> Stage | None:
        """The namespace's stage; the default stage when unlisted; None when neither applies."""
        return self.namespaces.get(namespace, self.default_stage)


def parse_stage_map(text: str, unknown: str = "allow", field_name: str = "GATE_WEBHOOK_STAGES") -> StageMap:
    """Parse "prod=p,staging=s2,dev=d" and the unknown-namespace rule ("allow", "deny" or a stage).

    Raises InvalidArgument naming `field_name` (or GATE_WEBHOOK_UNKNOWN_NAMESPACE) and the bad item.
    """
    namespaces: dict[str, Stage] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, stage = item.partition("=")
        name = name.strip()
        if not sep or not _NAMESPACE_RE.match(name):
            raise InvalidArgument(f"expected NAMESPACE=STAGE items such as prod=p, got {item!r}", field_name)
        if name in namespaces:
            raise InvalidArgument(f"namespace {name!r} is listed twice", field_name)
        namespaces[name] = Stage.parse(stage, field_name)
    rule = unknown.strip().lower() or UnknownNamespace.ALLOW.value
    if rule in UnknownNamespace.__members__.values():
        return StageMap(namespaces, None, UnknownNamespace(rule))
    return StageMap(namespaces, Stage.parse(rule, "GATE_WEBHOOK_UNKNOWN_NAMESPACE"))


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
