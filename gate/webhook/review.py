"""Kubernetes admission review, pure: an AdmissionReview v1 request dict in, the response dict out.

review() never reads a clock, a socket or a file: stored facts come through an AdmissionLookup (the
ledger, runtime grace, tag resolution), time is passed in, and the side effects it asks for (scans to
queue) come back in the Outcome for the caller to perform — unless the request is a dry run. A body
that is not a usable AdmissionReview gets a deny with code 400, never an exception, because the API
server shows whatever we answer and an exception would only become an opaque webhook failure.

Rules per image, by the stage of the request's namespace (gate/webhook/stages.py):

- stage d: everything is admitted; a digest gate has never seen is a warning and a queued scan.
- stages t, s1, s2: the digest must hold a promotion into that stage (or a later one) in the ledger.
- stage p: the image must be pinned by digest (GATE_WEBHOOK_REQUIRE_DIGEST), its digest must hold a
  promotion into p, and no violation found since may be past its runtime grace (gate/policy/runtime.py):
  findings still within grace are warnings naming their deadline, so restarts keep working.

Tag-only images are resolved to a digest through the lookup (the caller caches) or denied, per
ReviewSettings.resolve_tags. AdmissionReview dicts never leave gate/webhook.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from gate.domain import Stage
from gate.errors import GateError
from gate.images.refs import parse_ref
from gate.webhook.stages import ReviewSettings, StageMap, UnknownNamespace

__all__ = [
    "API_VERSION",
    "AdmissionLookup",
    "Grace",
    "ImageUse",
    "Outcome",
    "ResolveError",
    "RuntimeStatus",
    "evaluate",
    "extract_images",
    "normalize_image",
    "review",
]

API_VERSION = "admission.k8s.io/v1"

# Where each kind keeps its pod spec. Only these kinds are judged; anything else is admitted untouched
# (the ValidatingWebhookConfiguration should not send them at all).
_POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "ReplicationController": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
# Subresources that can change which images run; status, scale, binding… cannot.
_IMAGE_SUBRESOURCES = frozenset({"", "ephemeralcontainers"})
_DOCKER_HUB = "docker.io"


class ResolveError(Exception):
    """A tag could not be resolved to a digest (registry unreachable, unknown tag, not allowed)."""


@dataclass(frozen=True)
class Grace:
    """One finding that promotion now denies but running workloads still get time for."""

    subject: str  # e.g. "CVE-2025-0001 (CRITICAL) in openssl"
    deadline: datetime


@dataclass(frozen=True)
class RuntimeStatus:
    """How a promoted digest fares for running workloads (from the service's runtime grace)."""

    blocking: tuple[str, ...] = ()  # short reasons that block now (no grace, revoked base, grace over)
    graces: tuple[Grace, ...] = ()  # findings within their runtime grace as the service judged it


class AdmissionLookup(Protocol):
    """Stored facts review() may read; implementations answer from the store and a cached registry."""

    def resolve_tag(self, reference: str) -> str:
        """The digest `reference` (HOST/REPO:TAG) names now; raise ResolveError saying why not."""
        ...

    def known(self, digest: str) -> bool:
        """True when gate has a record (a scan or an import) of the digest."""
        ...

    def promoted_into(self, digest: str) -> frozenset[Stage]:
        """Every stage the ledger holds a promotion of `digest` into."""
        ...

    def runtime(self, digest: str) -> RuntimeStatus:
        """Runtime grace of a digest promoted into p."""
        ...


@dataclass(frozen=True)
class ImageUse:
    """One image as a workload names it, normalized the way the kubelet pulls it."""

    image: str  # as written in the spec
    containers: tuple[str, ...]  # "containers/web", "initContainers/setup", …
    reference: str = ""  # HOST/REPO[:TAG][@DIGEST], host and tag filled in as a pull would
    name: str = ""  # HOST/REPO
    tag: str = ""
    digest: str = ""
    error: str = ""  # why the reference is not usable, when it is not


@dataclass(frozen=True)
class Outcome:
    """The response, and what the caller should do and record about it."""

    response: dict[str, Any]
    allowed: bool
    uid: str = ""
    stage: Stage | None = None
    namespace: str = ""
    subject: str = ""  # kind namespace/name, for logs and the audit record
    actor: str = ""  # userInfo.username
    dry_run: bool = False
    images: tuple[tuple[str, str], ...] = ()  # (image as written, digest or "")
    scans: tuple[str, ...] = ()  # HOST/REPO@DIGEST references to scan (never on a dry run)
    reasons: tuple[str, ...] = ()  # one per offending image
    warnings: tuple[str, ...] = ()


@dataclass
class _Verdict:
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    scans: list[str] = field(default_factory=list)
    digests: list[tuple[str, str]] = field(default_factory=list)


def review(
    body: Mapping[str, Any] | Any,
    lookup: AdmissionLookup,
    stages: StageMap,
    now: datetime,
    settings: ReviewSettings | None = None,
) -> dict[str, Any]:
    """The AdmissionReview response for `body` (see evaluate for the side effects it asks for)."""
    return evaluate(body, lookup, stages, now, settings).response


def evaluate(
    body: Mapping[str, Any] | Any,
    lookup: AdmissionLookup,
    stages: StageMap,
    now: datetime,
    settings: ReviewSettings | None = None,
    prepare: Callable[[Sequence[str]], AdmissionLookup] | None = None,
) -> Outcome:
    """Judge an AdmissionReview body; never raises for a bad body (lookup errors do propagate).

    `prepare(digests)`, when given, is called once with every pinned digest of the request and returns
    the lookup to judge them with: the service's reads them all at once instead of image by image.
    """
    settings = settings or ReviewSettings()
    request, problem = _request(body)
    uid = _text(request.get("uid")) if request is not None else ""
    if request is None or problem:
        return _answer(
            _Context(uid), False, settings, reasons=(problem,), code=400, prefix="bad AdmissionReview"
        )
    dry_run = request.get("dryRun") is True
    kind = _text(_get(request, "kind", "kind"))
    obj = request.get("object")
    namespace = _text(request.get("namespace")) or _text(_get(obj, "metadata", "namespace"))
    name = _text(request.get("name")) or _text(_get(obj, "metadata", "name"))
    if not name and (generated := _text(_get(obj, "metadata", "generateName"))):
        name = generated + "*"  # the API server has not picked the suffix yet
    subject = f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
    actor = _text(_get(request, "userInfo", "username"))
    base = _Context(uid, namespace, subject, actor, dry_run)
    operation = _text(request.get("operation"))
    sub = _text(request.get("subResource"))
    if operation not in ("CREATE", "UPDATE") or kind not in _POD_SPEC_PATHS or sub not in _IMAGE_SUBRESOURCES:
        return _answer(base, True, settings)  # nothing here starts a container
    if not isinstance(obj, Mapping):
        return _answer(base, False, settings, reasons=("request.object is missing",), code=400)
    uses, bad = extract_images(kind, obj)
    if bad:
        return _answer(base, False, settings, reasons=(bad,), code=400)
    stage = stages.stage_of(namespace)
    if stage is None:
        if stages.unknown is UnknownNamespace.DENY:
            reason = (
                f"namespace {namespace or '(none)'} has no gate stage "
                "(GATE_WEBHOOK_STAGES or the policy's webhook.namespaces)"
            )
            return _answer(base, False, settings, reasons=(reason,), code=403)
        note = f"namespace {namespace or '(none)'} has no gate stage; images not checked"
        return _answer(base, True, settings, warnings=(note,))
    verdict = _Verdict()
    if prepare is not None:
        lookup = prepare([u.digest for u in uses if u.digest and not u.error])
    for use in uses:
        _judge(use, stage, lookup, now, settings, verdict)
    return _answer(
        base,
        not verdict.reasons,
        settings,
        stage=stage,
        reasons=tuple(verdict.reasons),
        warnings=tuple(verdict.warnings),
        scans=() if dry_run else tuple(dict.fromkeys(verdict.scans)),
        images=tuple(verdict.digests),
        code=403,
        prefix=f"not admitted to stage {stage.value} (namespace {namespace})",
    )


# -- the request ------------------------------------------------------------------------------------


def _request(body: object) -> tuple[Mapping[str, Any] | None, str]:
    """The request of an AdmissionReview v1 body, or what is wrong with it."""
    if not isinstance(body, Mapping):
        return None, "the body is not a JSON object"
    request = body.get("request")
    if not isinstance(request, Mapping):
        return None, "request is missing or not an object"
    if body.get("apiVersion") != API_VERSION or body.get("kind") != "AdmissionReview":
        return request, f"expected apiVersion {API_VERSION} kind AdmissionReview"
    if not isinstance(request.get("uid"), str) or not request["uid"]:
        return request, "request.uid is missing"
    if not isinstance(request.get("kind"), Mapping):
        return request, "request.kind is missing"
    return request, ""


def _get(obj: object, *path: str) -> object:
    for key in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def extract_images(kind: str, obj: Mapping[str, Any]) -> tuple[list[ImageUse], str]:
    """Every image a workload of `kind` would run, in spec order, and a problem with the object if any.

    Each distinct image appears once, naming every container that uses it. A missing pod spec or
    container list is not a problem (the API server validates shapes); a container without a string
    image is, because gate cannot say what would run.
    """
    spec = _get(obj, *_POD_SPEC_PATHS[kind])
    if spec is None:
        return [], ""
    if not isinstance(spec, Mapping):
        return [], f"{'.'.join(_POD_SPEC_PATHS[kind])} is not an object"
    seen: dict[str, list[str]] = {}
    for list_name in _CONTAINER_LISTS:
        containers = spec.get(list_name)
        if containers is None:
            continue
        if not isinstance(containers, Sequence) or isinstance(containers, str):
            return [], f"{list_name} is not a list"
        for i, container in enumerate(containers):
            image = _get(container, "image")
            label = f"{list_name}/{_text(_get(container, 'name')) or i}"
            if not isinstance(image, str) or not image.strip():
                return [], f"{label} has no image"
            seen.setdefault(image, []).append(label)
    return [normalize_image(image, tuple(labels)) for image, labels in seen.items()], ""


def normalize_image(image: str, containers: tuple[str, ...] = ()) -> ImageUse:
    """Fill in what the kubelet assumes: docker.io (and library/) for a bare name, latest for no tag.

    gate itself never assumes either (gate/images/refs.py), so the reference it looks up is spelled
    out in full; a tag-only image is then resolved to a digest or denied, never trusted by its tag.
    """
    text = image.strip()
    name, at, digest = text.partition("@")
    host, slash, rest = name.partition("/")
    if not slash or not ("." in host or ":" in host or host == "localhost"):
        host, rest = _DOCKER_HUB, name
        if "/" not in rest:
            rest = f"library/{rest}"
    repository, tag = rest, ""
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        repository, tag = rest[: -len(last)] + last.split(":", 1)[0], last.split(":", 1)[1]
    if not tag and not at:
        tag = "latest"
    reference = f"{host}/{repository}" + (f":{tag}" if tag else "") + (f"@{digest}" if at else "")
    try:
        ref = parse_ref(reference, "image")
    except GateError as e:
        return ImageUse(text, containers, error=f"not a valid image reference ({e.message})")
    return ImageUse(text, containers, reference, ref.name, ref.tag, ref.digest)


# -- judging one image ------------------------------------------------------------------------------


def _judge(
    use: ImageUse,
    stage: Stage,
    lookup: AdmissionLookup,
    now: datetime,
    settings: ReviewSettings,
    out: _Verdict,
) -> None:
    lenient = stage is Stage.D  # dev admits everything; gate only learns about what runs there

    def deny(why: str) -> None:
        if lenient:
            out.warnings.append(f"{use.image}: {why}")
        else:
            out.reasons.append(f"{use.image}: {why}")

    if use.error:
        deny(use.error)
        return
    digest = use.digest
    if not digest:
        if stage in settings.require_digest:
            deny(f"not pinned by digest (stage {stage.value} requires IMAGE@sha256:…)")
            return
        if not settings.resolve_tags:
            deny("pin by digest (tags are not resolved here)")
            return
        try:
            digest = lookup.resolve_tag(use.reference)
        except ResolveError as e:
            deny(f"tag not resolved: {e}")
            return
    out.digests.append((use.image, digest))
    if lenient:
        if not lookup.known(digest):
            out.warnings.append(f"{use.image}: unknown to gate; scan queued")
            out.scans.append(f"{use.name}@{digest}")
        return
    promoted = lookup.promoted_into(digest)
    if not any(s.rank >= stage.rank for s in promoted):
        known = lookup.known(digest)
        deny(f"no promotion to {stage.value} in the ledger" if known else "unknown to gate (never scanned)")
        return
    if stage is not Stage.P:
        return
    status = lookup.runtime(digest)
    blocking = list(status.blocking)
    for grace in status.graces:
        if now >= grace.deadline:
            blocking.append(f"{grace.subject}: runtime grace ended {_stamp(grace.deadline)}")
        else:
            out.warnings.append(f"{use.image}: {grace.subject} admitted until {_stamp(grace.deadline)}")
    if blocking:
        deny("; ".join(blocking))


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%MZ")


# -- the response -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """What the request says about itself, carried into the Outcome."""

    uid: str
    namespace: str = ""
    subject: str = ""
    actor: str = ""
    dry_run: bool = False


def _answer(
    ctx: _Context,
    allowed: bool,
    settings: ReviewSettings,
    *,
    reasons: tuple[str, ...] = (),
    warnings: tuple[str, ...] = (),
    code: int = 403,
    prefix: str = "",
    stage: Stage | None = None,
    scans: tuple[str, ...] = (),
    images: tuple[tuple[str, str], ...] = (),
) -> Outcome:
    response: dict[str, Any] = {"uid": ctx.uid, "allowed": allowed}
    if not allowed:
        response["status"] = {"code": code, "message": _message(prefix, reasons, settings.max_message)}
    if warnings:
        response["warnings"] = list(dict.fromkeys(warnings))
    if stage is not None:
        # Kubernetes prefixes these keys with the webhook's name in the audit event.
        response["auditAnnotations"] = {"stage": stage.value, "result": "allowed" if allowed else "denied"}
    return Outcome(
        response={"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response},
        allowed=allowed,
        uid=ctx.uid,
        stage=stage,
        namespace=ctx.namespace,
        subject=ctx.subject,
        actor=ctx.actor,
        dry_run=ctx.dry_run,
        images=images,
        scans=scans,
        reasons=reasons,
        warnings=warnings,
    )


def _message(prefix: str, reasons: tuple[str, ...], limit: int) -> str:
    """One line for kubectl: "PREFIX: image: why; image: why", cut with "… (+N more)" past `limit`."""
    head = f"gate: {prefix}: " if prefix else "gate: "
    text = head
    for i, reason in enumerate(reasons):
        piece = reason if i == 0 else f"; {reason}"
        more = f" … (+{len(reasons) - i} more)"
        if len(text) + len(piece) > limit - len(more) and i > 0:
            return text + more
        text += piece
    return text[:limit]
