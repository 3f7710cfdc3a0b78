"""Rules about the image itself: the bases it is built on, how it is named, and what its config says.

Each rule is one small class whose `check(t, inp, now)` returns zero or more RuleHits. They read
`EvaluationInput.lineage` (from gate.provenance), `.image` and `.tag`; what each does when those are
missing is spelled out per rule, because "not consulted" must never quietly mean "fine" where the
policy requires something (see docs/policy.md).

`attribute` adds the base that brought a finding in to a finding violation.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from functools import lru_cache
from typing import Protocol

from gate.domain import BaseImage, BaseStatus, Stage, Violation
from gate.policy.model import EvaluationInput, TransitionPolicy, format_duration, stage_path_regex
from gate.policy.rules import RuleHit
from gate.provenance import introduced_by

__all__ = [
    "IMAGE_RULES",
    "BaseStatusRule",
    "ForbidBaseTierRule",
    "ImageRule",
    "RequireBaseTierRule",
    "RequireLabelsRule",
    "RootUserRule",
    "StagePathRule",
    "TagRule",
    "attribute",
    "base_usable",
    "expected_stage_path",
    "is_root_user",
    "successor_text",
    "who",
]

DIGEST_ONLY = (
    "cannot check naming: image known only by digest (no tag in the request and no stored name); "
    "ask by name, e.g. REGISTRY/STAGE/NAME:TAG, to have the tag and repository path checked"
)
NO_CONFIG = "cannot check {what}: gate has no record of the image's config"


class ImageRule(Protocol):
    """A rule applied once per evaluation to the image as a whole."""

    name: str

    def check(self, t: TransitionPolicy, inp: EvaluationInput, now: datetime) -> tuple[RuleHit, ...]:
        """Judge the image under one transition at time `now`."""
        ...


def who(base: BaseImage) -> str:
    """A base as messages name it: `<tier> <name>`."""
    return f"{base.tier} {base.name}"


def successor_text(base: BaseImage) -> str:
    """What to rebuild on instead of `base`: its successor's name, else its digest, else a generic advice."""
    return base.superseded_by_name or base.superseded_by or f"a current {base.tier} base"


def base_usable(base: BaseImage, now: datetime) -> bool:
    """Approved, or deprecated with `now` still inside its grace period (the deadline itself included)."""
    if base.status is BaseStatus.APPROVED:
        return True
    if base.status is BaseStatus.DEPRECATED:
        return base.grace_until is not None and now <= base.grace_until
    return False


def _when(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


class BaseStatusRule:
    """Deny revoked bases and deprecated ones past their grace period; warn inside the grace period.

    Always on once a lineage is given, whatever the transition: a revoked base is never acceptable.
    A deprecated base without a grace deadline has no grace period.
    """

    name = "base-status"

    def check(self, t: TransitionPolicy, inp: EvaluationInput, now: datetime) -> tuple[RuleHit, ...]:
        """One hit per revoked or deprecated base in the lineage."""
        if inp.lineage is None:
            return ()
        hits = []
        for base in inp.lineage.chain:
            rebuild = f"rebuild on {successor_text(base)}"
            if base.status is BaseStatus.REVOKED:
                message = f"the image is built on {who(base)} ({base.digest}), which is revoked: {rebuild}"
                hits.append(RuleHit(violation=self._violation("base-revoked", base, message), hint=rebuild))
            elif base.status is BaseStatus.DEPRECATED and base_usable(base, now):
                assert base.grace_until is not None  # base_usable guarantees a deadline
                left = format_duration(base.grace_until - now)
                hits.append(
                    RuleHit(
                        warning=f"the image is built on {who(base)}, which is deprecated: {rebuild} before "
                        f"{_when(base.grace_until)} ({left} left); after that every promotion denies it"
                    )
                )
            elif base.status is BaseStatus.DEPRECATED:
                ended = (
                    f"its grace period ended {_when(base.grace_until)}"
                    if base.grace_until is not None
                    else "it has no grace period"
                )
                message = (
                    f"the image is built on {who(base)} ({base.digest}), which is deprecated and {ended}: "
                    f"{rebuild}"
                )
                hits.append(
                    RuleHit(violation=self._violation("base-deprecated", base, message), hint=rebuild)
                )
        return tuple(hits)

    @staticmethod
    def _violation(rule: str, base: BaseImage, message: str) -> Violation:
        return Violation(rule=rule, message=message, introduced_by=who(base))


class RequireBaseTierRule:
    """`require_base_tier`: the lineage must hold a usable base of that tier.

    No catalogued base at all (or no lineage: catalog not consulted) → NO_APPROVED_BASE. A base of the
    tier that is revoked or past its grace is left to BaseStatusRule, which names it and its successor.
    """

    name = "require-base-tier"

    def check(self, t: TransitionPolicy, inp: EvaluationInput, now: datetime) -> tuple[RuleHit, ...]:
        """A violation when the required tier is missing from the lineage."""
        tier = t.require_base_tier
        if not tier:
            return ()
        lin = inp.lineage
        hint = f"build on an approved {tier}"
        if lin is None or not lin.chain:
            why = (
                "the base catalog was not consulted"
                if lin is None
                else "no catalogued base matches the image's layers"
            )
            message = (
                f"{t.label} requires a {tier} base, but {why}: build the image FROM an approved {tier} "
                f"image (only the layers prove a base; annotations do not)"
            )
            return (RuleHit(violation=Violation(rule="NO_APPROVED_BASE", message=message), hint=hint),)
        if lin.of_tier(tier):
            return ()
        have = ", ".join(who(b) for b in lin.chain)
        message = (
            f"{t.label} requires a {tier} base; the image is built on {have} "
            f"(tiers: {', '.join(lin.tiers)}), none of them {tier}: rebuild FROM an approved {tier} image"
        )
        return (RuleHit(violation=Violation(rule=self.name, message=message), hint=hint),)


class ForbidBaseTierRule:
    """`forbid_base_tiers`: no base of these tiers anywhere in the lineage."""

    name = "forbid-base-tier"

    def check(self, t: TransitionPolicy, inp: EvaluationInput, now: datetime) -> tuple[RuleHit, ...]:
        """One violation per forbidden base in the lineage."""
        if not t.forbid_base_tiers or inp.lineage is None:
            return ()
        instead = f"an approved {t.require_base_tier}" if t.require_base_tier else "a base of an allowed tier"
        forbidden = ", ".join(t.forbid_base_tiers)
        hits = []
        for base in inp.lineage.chain:
            if base.tier in t.forbid_base_tiers:
                message = (
                    f"the image is built on {who(base)} ({base.digest}); {t.label} forbids bases of tier "
                    f"{forbidden}: rebuild on {instead}"
                )
                hits.append(
                    RuleHit(
                        violation=Violation(rule=self.name, message=message, introduced_by=who(base)),
                        hint=f"rebuild on {instead}",
                    )
                )
        return tuple(hits)


@lru_cache(maxsize=256)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


class TagRule:
    """`forbid_latest` and `tag_pattern`, judged on the tag named in the request.

    A request by digest is judged on the image's stored tags: one conforming tag suffices, and a stored
    `latest` is not held against a digest (the digest, not the tag, is what moves). With neither, the
    rule warns that naming could not be checked.
    """

    name = "tag"

    def check(self, t: TransitionPolicy, inp: EvaluationInput, now: datetime) -> tuple[RuleHit, ...]:
        """A tag-latest or tag-pattern violation, or the digest-only warning."""
        if not (t.forbid_latest or t.tag_pattern):
            return ()
        pattern = t.tag_pattern
        if inp.tag:
            if t.forbid_latest and inp.tag == "latest":
                wanted = f" matching {pattern}" if pattern else ""
                message = (
                    f"tag 'latest' cannot be promoted: it moves, so a verdict on it means nothing; "
                    f"push and promote an immutable tag{wanted}"
                )
                return (RuleHit(violation=Violation(rule="tag-latest", message=message)),)
            if pattern and not _compiled(pattern).fullmatch(inp.tag):
                message = (
                    f"tag {inp.tag!r} does not match {pattern} ({t.label} promotes only such tags): retag it"
                )
                return (RuleHit(violation=Violation(rule="tag-pattern", message=message)),)
            return ()
        stored = inp.image.tags if inp.image is not None else ()
        if not stored:
            return (RuleHit(warning=DIGEST_ONLY),)
        if pattern and not any(_compiled(pattern).fullmatch(tag) for tag in stored):
            listed = ", ".join(repr(tag) for tag in stored)
            message = (
                f"none of the image's tags ({listed}) matches {pattern} ({t.label} promotes only such "
                f"tags): retag it"
            )
            return (RuleHit(violation=Violation(rule="tag-pattern", message=message)),)
        return ()


def expected_stage_path(repository: str, template: bool | str, stage: Stage) -> str:
    """The repository path the stage-path rule would accept for `repository` at `stage`.

    With a template, `{name}` is the last path component. Without one, an existing stage component is
    replaced, otherwise the stage is inserted before the last component (`team/app` → `team/s2/app`).
    """
    parts = repository.split("/")
    if isinstance(template, str):
        return template.replace("{stage}", stage.value).replace("{name}", parts[-1])
    stages = {s.value for s in Stage}
    for i, part in enumerate(parts[:-1]):
        if part in stages:
            return "/".join([*parts[:i], stage.value, *parts[i + 1 :]])
    return "/".join([*parts[:-1], stage.value, parts[-1]])


def _path_ok(repository: str, template: bool | str, stage: Stage) -> bool:
    if isinstance(template, str):
        return stage_path_regex(template, stage).fullmatch(repository) is not None
    return stage.value in repository.split("/")[:-1]


class StagePathRule:
    """`stage_path`: the image's repository path carries the stage it is promoted from.

    `true` asks for the from-stage as a path component (`s2/payments`, `team/s2/payments`); a template
    such as `{stage}/{name}` must match the whole path. No stored repository → the digest-only warning.
    """

    name = "stage-path"

    def check(self, t: TransitionPolicy, inp: EvaluationInput, now: datetime) -> tuple[RuleHit, ...]:
        """A stage-path violation naming the expected path, or the digest-only warning."""
        if not t.stage_path:
            return ()
        repository = inp.image.repository if inp.image is not None else ""
        if not repository:
            return (RuleHit(warning=DIGEST_ONLY),)
        if _path_ok(repository, t.stage_path, t.from_stage):
            return ()
        expected = expected_stage_path(repository, t.stage_path, t.from_stage)
        message = (
            f"repository {repository!r} does not carry stage {t.from_stage.value}: an image promoted "
            f"{t.label} must come from {expected!r}"
        )
        return (RuleHit(violation=Violation(rule=self.name, message=message)),)


def is_root_user(user: str) -> bool:
    """True when a config User runs as root: empty (the default), `root` or uid 0, with any group."""
    uid = user.strip().split(":", 1)[0].strip()
    return uid in ("", "root") or (uid.isdigit() and int(uid) == 0)


class RootUserRule:
    """`forbid_root_user`: an app image must set a non-root USER; catalogued bases are exempt.

    An image is a base when its whole layer chain equals a catalogued base's (needs a lineage).
    """

    name = "root-user"

    def check(self, t: TransitionPolicy, inp: EvaluationInput, now: datetime) -> tuple[RuleHit, ...]:
        """A root-user violation, or a warning when the config is unknown."""
        if not t.forbid_root_user:
            return ()
        if inp.lineage is not None and inp.lineage.is_base:
            return ()
        if inp.image is None:
            return (RuleHit(warning=NO_CONFIG.format(what="the config user")),)
        if not is_root_user(inp.image.user):
            return ()
        shown = f"user {inp.image.user.strip()!r}" if inp.image.user.strip() else "root (no USER set)"
        message = (
            f"the image runs as {shown}; {t.label} forbids root in app images: add `USER <non-root uid>` "
            f"to its Dockerfile"
        )
        return (RuleHit(violation=Violation(rule=self.name, message=message), hint="set a non-root USER"),)


class RequireLabelsRule:
    """`require_labels`: each named config label must be present with a non-empty value."""

    name = "require-labels"

    def check(self, t: TransitionPolicy, inp: EvaluationInput, now: datetime) -> tuple[RuleHit, ...]:
        """A require-labels violation naming every missing label, or a warning when the config is unknown."""
        if not t.require_labels:
            return ()
        if inp.image is None:
            return (RuleHit(warning=NO_CONFIG.format(what="labels")),)
        labels = dict(inp.image.labels)
        missing = [name for name in t.require_labels if not labels.get(name, "").strip()]
        if not missing:
            return ()
        word = "label" if len(missing) == 1 else "labels"
        message = (
            f"missing {word} {', '.join(missing)} ({t.label} requires {', '.join(t.require_labels)}): "
            f"add `LABEL {missing[0]}=…` to the Dockerfile"
        )
        return (RuleHit(violation=Violation(rule=self.name, message=message)),)


IMAGE_RULES: tuple[ImageRule, ...] = (
    RequireBaseTierRule(),
    BaseStatusRule(),
    ForbidBaseTierRule(),
    RootUserRule(),
    RequireLabelsRule(),
    TagRule(),
    StagePathRule(),
)


def attribute(violation: Violation, inp: EvaluationInput) -> tuple[Violation, str]:
    """Name the base whose layers brought a finding in; returns the violation and a rebuild hint.

    Findings in the image's own layers (or without a known layer, or without a lineage) are returned
    unchanged. A finding from a deprecated, revoked or superseded base also says what to rebuild on.
    """
    lin = inp.lineage
    if lin is None or not lin.chain or not violation.layer_diff_id:
        return violation, ""
    # Every base in the chain is a prefix of the image, so the nearest base's layers stand in for the
    # image's own when the caller passed no image record.
    diff_ids = inp.image.diff_ids if inp.image is not None and inp.image.diff_ids else lin.chain[0].diff_ids
    base = introduced_by(violation.layer_diff_id, diff_ids, lin)
    if base is None:
        return violation, ""
    subject = violation.vulnerability_id or "it"
    if violation.package:
        subject = f"{subject} in {violation.package} {violation.installed_version}".rstrip()
    text = f"{violation.message}; {subject} came from {who(base)}"
    hint = ""
    if base.status is not BaseStatus.APPROVED or base.superseded_by or base.superseded_by_name:
        hint = f"rebuild on {successor_text(base)}"
        text += f"; {hint}"
    return replace(violation, message=text, introduced_by=who(base)), hint
