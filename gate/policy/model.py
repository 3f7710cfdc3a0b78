"""Policy v1 values: what a transition allows, the whole policy, and the input an evaluation reads.

Everything here is a frozen value with no I/O. The loader builds these from YAML with line-numbered
errors; code and tests may build them directly, in which case the same structural checks run without
line numbers.
"""

from __future__ import annotations

import enum
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from itertools import pairwise
from types import MappingProxyType

from gate.domain import (
    Finding,
    ImageRecord,
    RescanFlag,
    ScanJob,
    Severity,
    Stage,
    VerdictState,
    VulnException,
)
from gate.errors import InvalidArgument
from gate.policy.exceptions import DEFAULT_MAX_EXCEPTION_DAYS
from gate.provenance import Lineage
from scanners.normalize import SEVERITY_MAX

__all__ = [
    "CHECKED_STATES",
    "UNKNOWN_NAMESPACE_RULES",
    "EvaluationInput",
    "OnState",
    "Policy",
    "ScannerStatus",
    "TransitionPolicy",
    "WebhookPolicy",
    "check_label_name",
    "check_namespace",
    "check_platform",
    "check_stage_path",
    "check_tag_pattern",
    "check_tier",
    "format_duration",
    "parse_duration",
    "platform_matches",
    "stage_path_regex",
    "transition_key",
]

# The states a policy decides about; EVALUATED is the absence of a problem, so it has no verdict.
CHECKED_STATES: tuple[VerdictState, ...] = (
    VerdictState.NOT_SCANNED,
    VerdictState.SCANNING,
    VerdictState.FAILED,
    VerdictState.STALE,
    # Unlisted, it takes STALE's verdict: it is STALE narrowed to "gate can rescan it itself".
    VerdictState.RESCAN_REQUIRED,
)

_DURATION_PART = re.compile(r"(\d+)([wdhms])")
_TIER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_SCANNER_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]*$")
# os/arch[/variant] as OCI image indexes spell them: linux/amd64, linux/arm64/v8, windows/amd64.
_PLATFORM_RE = re.compile(r"^[a-z0-9]+/[a-z0-9_]+(?:/[a-z0-9.]+)?$")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_STAGE_PATH_FIELDS = ("stage", "name")
# A Kubernetes namespace name is a DNS-1123 label.
_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
# What the webhook may do with a namespace it has no stage for, besides judging it as a stage.
UNKNOWN_NAMESPACE_RULES = ("allow", "deny")
_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


class OnState(enum.StrEnum):
    """What a transition does when the image is in a non-evaluated state."""

    DENY = "deny"  # a scan-state Violation: the promotion is refused
    WARN = "warn"  # a warning on the Decision; allowed unless something else denies
    ALLOW = "allow"  # silently accepted


def transition_key(from_stage: Stage, to_stage: Stage) -> str:
    """The YAML spelling of a transition, e.g. `s2->p`."""
    return f"{from_stage.value}->{to_stage.value}"


def parse_duration(text: str) -> timedelta:
    """Parse `7d`, `12h`, `1d12h`, `90m`, `2w`, `30s`; raise ValueError saying what is expected."""
    cleaned = text.strip().lower()
    parts = _DURATION_PART.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise ValueError(f"bad duration {text!r} (expected a number and unit, e.g. 7d, 12h, 1d12h, 90m)")
    total = timedelta(seconds=sum(int(n) * _UNIT_SECONDS[u] for n, u in parts))
    if total <= timedelta(0):
        raise ValueError(f"bad duration {text!r} (must be longer than zero)")
    return total


def check_tier(text: str) -> str:
    """Validate a base tier name (built-in or custom) and return it; raise ValueError saying why."""
    tier = text.strip()
    if not _TIER_RE.match(tier):
        raise ValueError(
            f"bad tier {text!r} (expected a name of letters, digits, '.', '_' or '-', "
            f"e.g. prod-osbase; custom tiers are allowed)"
        )
    return tier


def check_tag_pattern(text: str) -> str:
    """Validate a tag regular expression and return it; raise ValueError with the regex error."""
    if not text:
        raise ValueError("empty pattern (leave the key out to accept any tag)")
    try:
        re.compile(text)
    except re.error as e:
        raise ValueError(f"bad regular expression {text!r}: {e}") from None
    return text


def check_stage_path(text: str) -> str:
    """Validate a stage-path template such as `{stage}/{name}` and return it; raise ValueError."""
    fields = _PLACEHOLDER.findall(text)
    unknown = [f for f in fields if f not in _STAGE_PATH_FIELDS]
    if unknown:
        raise ValueError(
            f"unknown placeholder {{{unknown[0]}}} in {text!r} (expected {{stage}} and {{name}})"
        )
    if "stage" not in fields:
        raise ValueError(f"template {text!r} must contain {{stage}}")
    if "{" in _PLACEHOLDER.sub("", text) or "}" in _PLACEHOLDER.sub("", text):
        raise ValueError(f"unbalanced brace in {text!r}")
    return text


def stage_path_regex(template: str, stage: Stage) -> re.Pattern[str]:
    """The regex a repository path must fully match for a stage-path template at `stage`.

    `{stage}` is the stage name itself; `{name}` is one or more path components.
    """
    out = []
    pos = 0
    for m in _PLACEHOLDER.finditer(template):
        out.append(re.escape(template[pos : m.start()]))
        out.append(re.escape(stage.value) if m.group(1) == "stage" else r"[^/]+(?:/[^/]+)*")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out))


def check_label_name(text: str) -> str:
    """Validate a required label name and return it stripped; raise ValueError when empty."""
    name = text.strip()
    if not name:
        raise ValueError("label name is empty")
    return name


def check_platform(text: str) -> str:
    """Validate a platform `os/arch[/variant]` (e.g. linux/arm64) and return it; raise ValueError."""
    platform = text.strip()
    if not _PLATFORM_RE.match(platform):
        raise ValueError(
            f"bad platform {text!r} (expected os/arch or os/arch/variant in lowercase, e.g. linux/amd64, "
            "linux/arm64, linux/arm/v7)"
        )
    return platform


def check_namespace(text: str) -> str:
    """Validate a Kubernetes namespace name (a DNS-1123 label) and return it; raise ValueError."""
    if not _NAMESPACE_RE.match(text):
        raise ValueError(
            f"not a Kubernetes namespace name: {text!r} (lowercase letters, digits and '-', at most 63, "
            "starting and ending with a letter or digit)"
        )
    return text


def platform_matches(required: str, platform: str) -> bool:
    """Whether an index's `platform` satisfies a required one.

    `linux/arm64` accepts any arm64 variant (linux/arm64/v8); a required variant (linux/arm/v7) must
    match exactly.
    """
    if required == platform:
        return True
    return required.count("/") == 1 and platform.startswith(required + "/")


def format_duration(value: timedelta) -> str:
    """Render a duration in the largest whole units, e.g. 7d, 1d12h, 90s — the inverse of parse."""
    seconds = int(value.total_seconds())
    if seconds <= 0:
        return "0s"
    out = []
    # Weeks are left out on purpose: "14d" reads better than "2w" in a deny message.
    for unit in ("d", "h", "m", "s"):
        count, seconds = divmod(seconds, _UNIT_SECONDS[unit])
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)


@dataclass(frozen=True)
class TransitionPolicy:
    """The thresholds for one promotion step, e.g. s2→p.

    `max_fixable_severity` / `max_unfixable_severity` are the highest severity still allowed among
    findings with / without a fix; None spells the YAML value NONE: no such finding is allowed at all.

    The provenance, naming and hygiene fields all default to "off", so a policy written before they
    existed keeps its meaning; the built-in policy turns them on (docs/policy.md).
    """

    from_stage: Stage
    to_stage: Stage
    max_fixable_severity: Severity | None
    max_unfixable_severity: Severity | None
    max_scan_age: timedelta
    allow_secrets: bool = False
    require_scanners: tuple[str, ...] | None = None  # None → the server's configured scanners
    unknown_severity_as: Severity = Severity.MEDIUM
    # Whose severity the thresholds compare when scanners disagree: "max" (the highest any scanner
    # claims) or a scanner name (its severity when it reported the finding, else the others' highest).
    severity_source: str = SEVERITY_MAX
    # Excluded from the hash because a dict is unhashable; the other fields identify a transition.
    on_state: Mapping[VerdictState, OnState] = field(default_factory=dict, hash=False)
    require_base_tier: str = ""  # "" → no base tier required
    forbid_base_tiers: tuple[str, ...] = ()
    tag_pattern: str = ""  # regex the whole promoted tag must match; "" → any tag
    forbid_latest: bool = False
    stage_path: bool | str = False  # True → the from-stage is a path component; str → a template
    forbid_root_user: bool = False
    require_labels: tuple[str, ...] = ()
    # For an image index: the platforms that must each pass (None → every platform the index lists).
    platforms: tuple[str, ...] | None = None
    # False → a dry run: the step is judged and explained as usual, but its violations only warn.
    enforce: bool = True
    # The longest an exception that can apply to this step may run (creation refuses longer ones).
    max_exception_days: int = DEFAULT_MAX_EXCEPTION_DAYS
    # Freshness of the vulnerability DB a scan used (its UpdatedAt at `now`); None → not judged.
    max_db_age: timedelta | None = None
    # Per severity, how long a RUNNING workload may keep a new violation of that severity (counted
    # from when the finding was first seen for the digest) before runtime admission blocks it.
    # Promotion verdicts ignore it. Excluded from the hash for the same reason as on_state.
    runtime_grace: Mapping[Severity, timedelta] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        """Check the invariants the loader also checks, so hand-built policies cannot bypass them."""
        where = f"transitions.{transition_key(self.from_stage, self.to_stage)}"
        if self.to_stage.rank <= self.from_stage.rank:
            raise InvalidArgument("not a forward promotion", where)
        for name in ("max_fixable_severity", "max_unfixable_severity"):
            if getattr(self, name) is Severity.UNKNOWN:
                raise InvalidArgument("may not be UNKNOWN (NONE allows no finding)", f"{where}.{name}")
        if self.unknown_severity_as is Severity.UNKNOWN:
            raise InvalidArgument("must be a real severity", f"{where}.unknown_severity_as")
        if self.max_scan_age <= timedelta(0):
            raise InvalidArgument("must be longer than zero", f"{where}.max_scan_age")
        if self.require_scanners is not None and not self.require_scanners:
            raise InvalidArgument("must name at least one scanner", f"{where}.require_scanners")
        if not _SCANNER_NAME_RE.match(self.severity_source):
            raise InvalidArgument(
                f"bad severity source {self.severity_source!r} (expected max or a scanner name such as "
                "trivy or clair)",
                f"{where}.severity_source",
            )
        if self.max_exception_days <= 0:
            raise InvalidArgument("must be a positive number of days", f"{where}.max_exception_days")
        if self.platforms is not None and not self.platforms:
            # An empty list would require no platform at all, letting any index through unjudged.
            raise InvalidArgument("must name at least one platform", f"{where}.platforms")
        for state in self.on_state:
            if state not in CHECKED_STATES:
                raise InvalidArgument(f"no verdict can be set for {state}", f"{where}.on_state")
        if self.max_db_age is not None and self.max_db_age <= timedelta(0):
            raise InvalidArgument("must be longer than zero", f"{where}.max_db_age")
        for severity, grace in self.runtime_grace.items():
            if severity is Severity.UNKNOWN:
                raise InvalidArgument("UNKNOWN has no grace of its own", f"{where}.runtime_grace")
            if grace <= timedelta(0):
                raise InvalidArgument("must be longer than zero", f"{where}.runtime_grace.{severity.name}")
        # Read-only copies: the policy digest is cached, so the maps must not change under it.
        object.__setattr__(self, "on_state", MappingProxyType(dict(self.on_state)))
        object.__setattr__(self, "runtime_grace", MappingProxyType(dict(self.runtime_grace)))
        self._check_image_rules(where)

    def _check_image_rules(self, where: str) -> None:
        checks: list[tuple[str, Callable[[str], str], str]] = [
            ("forbid_base_tiers", check_tier, tier) for tier in self.forbid_base_tiers
        ]
        checks += [("require_labels", check_label_name, label) for label in self.require_labels]
        checks += [("platforms", check_platform, platform) for platform in self.platforms or ()]
        if self.require_base_tier:
            checks.append(("require_base_tier", check_tier, self.require_base_tier))
        if self.tag_pattern:
            checks.append(("tag_pattern", check_tag_pattern, self.tag_pattern))
        if isinstance(self.stage_path, str) and self.stage_path:
            checks.append(("stage_path", check_stage_path, self.stage_path))
        for name, check, value in checks:
            try:
                check(value)
            except ValueError as e:
                raise InvalidArgument(str(e), f"{where}.{name}") from None
        if self.require_base_tier and self.require_base_tier in self.forbid_base_tiers:
            raise InvalidArgument(
                f"{self.require_base_tier} is both required and forbidden", f"{where}.forbid_base_tiers"
            )

    @property
    def key(self) -> str:
        """The YAML spelling, e.g. `s2->p`."""
        return transition_key(self.from_stage, self.to_stage)

    @property
    def label(self) -> str:
        """The human spelling used in messages, e.g. `s2→p`."""
        return f"{self.from_stage.value}→{self.to_stage.value}"

    def verdict_for(self, state: VerdictState) -> OnState:
        """The configured handling of a state; unlisted states deny, so a gap fails closed.

        RESCAN_REQUIRED, unlisted, takes STALE's verdict: it is a stale (or flagged) scan that gate
        can refresh itself, so a policy written before it existed keeps its meaning.
        """
        if state is VerdictState.RESCAN_REQUIRED and state not in self.on_state:
            return self.verdict_for(VerdictState.STALE)
        return self.on_state.get(state, OnState.DENY)

    def grace_for(self, severity: Severity) -> timedelta | None:
        """The runtime grace of a severity: its own, else that of the nearest more severe one listed.

        A less severe violation never gets less time than a more severe one; a severity above every
        listed one has no grace (None: runtime admission blocks it at once, as promotion does).
        """
        for candidate in sorted((s for s in Severity if s >= severity), key=int):
            if candidate in self.runtime_grace:
                return self.runtime_grace[candidate]
        return None

    def canonical(self) -> dict[str, object]:
        """A JSON-ready form in which equal meaning gives equal data (defaults filled, units normalized)."""
        scanners = None if self.require_scanners is None else sorted(set(self.require_scanners))
        out: dict[str, object] = {
            "max_fixable_severity": _threshold_name(self.max_fixable_severity),
            "max_unfixable_severity": _threshold_name(self.max_unfixable_severity),
            "allow_secrets": self.allow_secrets,
            "max_scan_age_seconds": int(self.max_scan_age.total_seconds()),
            "require_scanners": scanners,
            # Only when not the default, so every policy written before the key existed keeps its digest.
            **({"severity_source": self.severity_source} if self.severity_source != SEVERITY_MAX else {}),
            "unknown_severity_as": self.unknown_severity_as.name,
            "on_state": {
                s.value: self.verdict_for(s).value
                for s in CHECKED_STATES
                # Only when listed, so every policy written before the state existed keeps its digest.
                if s is not VerdictState.RESCAN_REQUIRED or s in self.on_state
            },
            "require_base_tier": self.require_base_tier or None,
            "forbid_base_tiers": sorted(set(self.forbid_base_tiers)),
            "tag_pattern": self.tag_pattern or None,
            "forbid_latest": self.forbid_latest,
            "stage_path": self.stage_path if self.stage_path else False,
            "forbid_root_user": self.forbid_root_user,
            "require_labels": sorted(set(self.require_labels)),
        }
        if self.max_exception_days != DEFAULT_MAX_EXCEPTION_DAYS:
            # Only when not the default, so every policy written before the key existed keeps its digest.
            out["max_exception_days"] = self.max_exception_days
        if self.platforms is not None:
            # Only when set, so every policy written before the key existed keeps its digest.
            out["platforms"] = sorted(set(self.platforms))
        if not self.enforce:
            # Only when off, so every policy written before the key existed keeps its digest.
            out["enforce"] = False
        # The same for the freshness and runtime keys.
        if self.max_db_age is not None:
            out["max_db_age_seconds"] = int(self.max_db_age.total_seconds())
        if self.runtime_grace:
            out["runtime_grace_seconds"] = {
                s.name: int(g.total_seconds()) for s, g in sorted(self.runtime_grace.items())
            }
        return out


def _threshold_name(value: Severity | None) -> str:
    return "NONE" if value is None else value.name


@dataclass(frozen=True)
class WebhookPolicy:
    """The policy file's `webhook:` section: which stage the admission webhook judges a namespace as.

    The stage comes from here or from gate's environment (GATE_WEBHOOK_STAGES), never from anything the
    workload declares: whoever writes a Deployment must not choose the rules it is judged by.
    gate/webhook/stages.py combines this with the environment, which wins key by key.
    """

    # Excluded from the hash because a dict is unhashable; compared by value like on_state.
    namespaces: Mapping[str, Stage] = field(default_factory=dict, hash=False)
    # Namespaces not listed: "allow" (with a warning), "deny", or a stage value to judge them as;
    # None → the file does not say (the environment or the built-in "allow" decides).
    unknown_namespace: str | None = None

    def __post_init__(self) -> None:
        """Check the names and the rule as the loader does, and freeze the map (the digest is cached)."""
        for name in self.namespaces:
            try:
                check_namespace(name)
            except ValueError as e:
                raise InvalidArgument(str(e), "webhook.namespaces") from None
        rule = self.unknown_namespace
        if rule is not None and rule not in UNKNOWN_NAMESPACE_RULES and rule not in {s.value for s in Stage}:
            raise InvalidArgument(
                f"expected allow, deny or a stage ({', '.join(s.value for s in Stage)}), got {rule!r}",
                "webhook.unknown_namespace",
            )
        object.__setattr__(self, "namespaces", MappingProxyType(dict(sorted(self.namespaces.items()))))

    @property
    def empty(self) -> bool:
        """True when the section says nothing (no namespace and no rule for unlisted ones)."""
        return not self.namespaces and self.unknown_namespace is None

    def canonical(self) -> dict[str, object]:
        """JSON-ready form: namespaces sorted, the rule only when the file sets it."""
        out: dict[str, object] = {"namespaces": {n: s.value for n, s in self.namespaces.items()}}
        if self.unknown_namespace is not None:
            out["unknown_namespace"] = self.unknown_namespace
        return out


class Policy:
    """A complete policy: one TransitionPolicy per allowed promotion step.

    Every one-step forward transition must be present; longer jumps (e.g. d->s1) exist only when
    listed. `digest` identifies the policy's meaning and is stored on every Decision.
    """

    def __init__(
        self,
        transitions: Iterable[TransitionPolicy],
        source: str = "<policy>",
        webhook: WebhookPolicy | None = None,
    ) -> None:
        """Index the transitions; raise InvalidArgument on duplicates or a missing one-step transition.

        `webhook` is the optional admission section; an empty one is kept as None, so a file that adds
        `webhook: {}` means (and hashes) the same as one without it.
        """
        self.source = source
        self.webhook = webhook if webhook is not None and not webhook.empty else None
        index: dict[tuple[Stage, Stage], TransitionPolicy] = {}
        for t in transitions:
            if (t.from_stage, t.to_stage) in index:
                raise InvalidArgument(f"{source}: transition {t.key} is listed twice", "transitions")
            index[(t.from_stage, t.to_stage)] = t
        ladder = list(Stage)
        missing = [transition_key(a, b) for a, b in pairwise(ladder) if (a, b) not in index]
        if missing:
            raise InvalidArgument(
                f"{source}: every one-step promotion needs a rule; missing {', '.join(missing)}",
                "transitions",
            )
        self._index = index

    @property
    def transitions(self) -> tuple[TransitionPolicy, ...]:
        """All transitions, ordered by from-stage then to-stage."""
        return tuple(self._index[k] for k in sorted(self._index, key=lambda k: (k[0].rank, k[1].rank)))

    def canonical(self) -> dict[str, object]:
        """The policy's meaning as JSON-ready data; the source name is not part of it."""
        out: dict[str, object] = {
            "version": 1,
            "transitions": {t.key: t.canonical() for t in self.transitions},
        }
        if self.webhook is not None:
            # Only when present, so every policy without the section keeps its digest. It is part of
            # the digest when present: two files that judge a namespace's workloads differently must
            # not look like the same policy.
            out["webhook"] = self.webhook.canonical()
        return out

    @cached_property
    def digest(self) -> str:
        """sha256 hex of the canonical JSON: same meaning gives the same digest, whatever the YAML layout."""
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def transition(self, from_stage: Stage, to_stage: Stage) -> TransitionPolicy:
        """The rules for from_stage→to_stage; raise InvalidArgument naming the field for a bad step."""
        # Every check asks this first: an allowed step is one dict look-up (the messages below are
        # built only for a step that is refused).
        allowed = self._index.get((from_stage, to_stage))
        if allowed is not None:
            return allowed
        arrow = f"{from_stage.value}→{to_stage.value}"
        if from_stage == list(Stage)[-1]:
            # The request is wrong at its origin, not its target: nothing lies above the last stage.
            raise InvalidArgument(
                f"{arrow}: {from_stage.value} is the last stage on the ladder d→t→s1→s2→p; "
                f"there is nothing to promote to",
                "from_stage",
            )
        if to_stage == from_stage:
            raise InvalidArgument(
                f"{arrow} is not a promotion: to_stage must be later on the ladder d→t→s1→s2→p than "
                f"from_stage",
                "to_stage",
            )
        if to_stage.rank < from_stage.rank:
            raise InvalidArgument(
                f"{arrow} goes backward; promotions only move up the ladder d→t→s1→s2→p "
                f"(re-deploying an older stage needs no gate)",
                "to_stage",
            )
        found = self._index.get((from_stage, to_stage))
        if found is None:
            skipped = ", ".join(s.value for s in list(Stage)[from_stage.rank + 1 : to_stage.rank])
            raise InvalidArgument(
                f"{arrow} skips {skipped}; the policy allows one step at a time unless it lists "
                f"'{transition_key(from_stage, to_stage)}' under transitions",
                "to_stage",
            )
        return found

    def required_scanners(self, t: TransitionPolicy, configured: Sequence[str]) -> tuple[str, ...]:
        """The scanners whose scans the transition needs: its own list, else the configured ones."""
        chosen = t.require_scanners if t.require_scanners is not None else tuple(configured)
        return tuple(dict.fromkeys(chosen))  # drop repeats but keep the order for stable messages

    def __eq__(self, other: object) -> bool:
        """Policies are equal when they mean the same thing."""
        return isinstance(other, Policy) and other.digest == self.digest

    def __hash__(self) -> int:
        """Hash by meaning, consistent with __eq__."""
        return hash(self.digest)

    def __repr__(self) -> str:
        """Short form naming the source and digest prefix."""
        return f"Policy(source={self.source!r}, digest={self.digest[:12]})"


@dataclass(frozen=True)
class ScannerStatus:
    """What gate knows about one required scanner for one digest."""

    scanner: str
    latest_success: ScanJob | None  # newest SUCCEEDED job; its finished_at is the scan time
    latest_attempt: ScanJob | None  # newest job in any state


@dataclass(frozen=True)
class EvaluationInput:
    """Everything `evaluate` reads besides the policy and the clock.

    `image`, `tag` and `lineage` feed the naming, hygiene and provenance rules; left at their
    defaults, those rules have nothing to judge (see docs/policy.md for what each then does).
    """

    digest: str
    from_stage: Stage
    to_stage: Stage
    scans: Mapping[str, ScannerStatus]  # by scanner name; a scanner gate never ran is absent
    findings: tuple[Finding, ...]  # current findings: each scanner's latest success
    configured_scanners: tuple[str, ...]  # the server's scanners (default for require_scanners)
    image: ImageRecord | None = None  # repository, tags, stage, user, labels, annotations, diff_ids
    tag: str = ""  # the tag named in the request; "" when the request used a digest
    lineage: Lineage | None = None  # from gate.provenance; None → the base catalog was not consulted
    platform: str = ""  # os/arch[/variant] when judging one platform of an index (evaluate_index sets it)
    # Exceptions that may waive findings (gate.policy.exceptions decides which apply at `now`).
    exceptions: tuple[VulnException, ...] = ()
    index_digest: str = ""  # the index's digest when judging one of its platforms (evaluate_index sets it)
    # A pending rescan flag for the digest (Clair notifier, DB change); it counts until every required
    # scanner has succeeded after `flagged_at`.
    rescan_flag: RescanFlag | None = None
    # gate knows where to read the image again (a registry location or a scan target), so a stale or
    # flagged scan is RESCAN_REQUIRED (gate can settle it) rather than STALE.
    rescannable: bool = False
