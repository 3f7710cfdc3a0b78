"""The AdmissionLookup gate serves review() with: the ledger, runtime grace and a cached tag resolver.

Everything here answers from stored data except tag resolution, which asks the registry for the digest a
tag names now and caches the answer for a short TTL (GATE_WEBHOOK_TAG_TTL): admission is on the path of
every pod start, and a rollout of 50 replicas must not cost 50 registry round trips. Failures are cached
for a fraction of that so a registry outage does not stampede it either.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from gate.domain import Decision, ImageInfo, ImageRef, Stage
from gate.errors import GateError
from gate.images.refs import parse_ref
from gate.policy.runtime import RuntimeVerdict
from gate.webhook.review import AdmissionLookup, Grace, ResolveError, RuntimeStatus

__all__ = ["ServiceLookup", "TagCache", "runtime_status"]

# Docker Hub's registry API does not live at the name references use for it.
_API_HOSTS = {"docker.io": "registry-1.docker.io"}
_NEGATIVE_FRACTION = 0.2  # failures are remembered for 20% of the TTL


class TagCache:
    """Tag → digest with a TTL; thread-safe. `resolve` raises ResolveError (also cached, briefly)."""

    def __init__(
        self,
        resolve: Callable[[ImageRef], ImageInfo],
        ttl: float,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolve = resolve
        self._ttl = ttl
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[float, str, str]] = {}  # reference → (expires, digest, error)

    def resolve(self, reference: str) -> str:
        """The digest the tag names (from the cache while fresh)."""
        now = self._monotonic()
        with self._lock:
            hit = self._entries.get(reference)
        if hit is not None and hit[0] > now:
            if hit[2]:
                raise ResolveError(hit[2])
            return hit[1]
        try:
            ref = parse_ref(reference, "image")
            api = _API_HOSTS.get(ref.registry)
            info = self._resolve(ImageRef(ref.kind, reference, api, ref.repository, ref.tag) if api else ref)
        except GateError as e:
            with self._lock:
                self._entries[reference] = (now + self._ttl * _NEGATIVE_FRACTION, "", e.message)
            raise ResolveError(e.message) from e
        with self._lock:
            self._entries[reference] = (now + self._ttl, info.digest, "")
        return info.digest


class ServiceLookup:
    """review()'s lookup over the repository (ledger, records) and the service (runtime grace)."""

    def __init__(
        self,
        tags: TagCache,
        get_image: Callable[[str], object | None],
        promoted_stages: Callable[[str], frozenset[Stage]],
        promoted_verdict: Callable[[str], tuple[Decision, RuntimeVerdict]],
        promoted_stages_many: Callable[[Sequence[str]], Mapping[str, frozenset[Stage]]] | None = None,
        promoted_verdicts: Callable[[Sequence[str]], Mapping[str, tuple[Decision, RuntimeVerdict]]]
        | None = None,
    ) -> None:
        """Wire to the tag cache, Repository.get_image/promoted_stages and GateService.promoted_verdict.

        The runtime verdict comes from the service's precomputed-verdict cache (gate/verdicts.py), so a
        digest already judged costs one indexed read, not a re-evaluation.
        """
        self._tags = tags
        self._get_image = get_image
        self._promoted_stages = promoted_stages
        self._promoted_verdict = promoted_verdict
        self._promoted_stages_many = promoted_stages_many
        self._promoted_verdicts = promoted_verdicts

    def resolve_tag(self, reference: str) -> str:
        """The digest a tag names now (cached)."""
        return self._tags.resolve(reference)

    def known(self, digest: str) -> bool:
        """True when gate has a record of the digest."""
        return self._get_image(digest) is not None

    def promoted_into(self, digest: str) -> frozenset[Stage]:
        """Stages the ledger holds a promotion of `digest` into."""
        return self._promoted_stages(digest)

    def runtime(self, digest: str) -> RuntimeStatus:
        """Runtime grace of `digest` against the step into p (GateService.promoted_verdict)."""
        _decision, verdict = self._promoted_verdict(digest)
        return runtime_status(verdict)

    def for_request(self, digests: Sequence[str]) -> AdmissionLookup:
        """A lookup for one request: the ledger and the runtime verdicts of `digests` read at once.

        One ledger query and one validation of the precomputed verdicts for the whole pod, instead of
        two reads per image; digests it was not told about are still answered, one at a time.
        """
        if not digests or self._promoted_stages_many is None or self._promoted_verdicts is None:
            return self
        stages = self._promoted_stages_many(digests)
        # Only digests that may reach p need their runtime verdict; the others never ask for it.
        into_p = [d for d in digests if Stage.P in stages.get(d, frozenset())]
        verdicts = self._promoted_verdicts(into_p) if into_p else {}
        return _RequestLookup(self, stages, {d: runtime_status(v) for d, (_, v) in verdicts.items()})


class _RequestLookup:
    """ServiceLookup's answers for one admission request, with its digests prefetched."""

    def __init__(
        self,
        base: ServiceLookup,
        stages: Mapping[str, frozenset[Stage]],
        runtime: Mapping[str, RuntimeStatus],
    ) -> None:
        self._base = base
        self._stages = stages
        self._runtime = runtime

    def resolve_tag(self, reference: str) -> str:
        """The digest a tag names now (cached)."""
        return self._base.resolve_tag(reference)

    def known(self, digest: str) -> bool:
        """True when gate has a record of the digest."""
        return self._base.known(digest)

    def promoted_into(self, digest: str) -> frozenset[Stage]:
        """Stages the ledger holds a promotion of `digest` into (prefetched when the request named it)."""
        if digest in self._stages:
            return self._stages[digest]
        return self._base.promoted_into(digest)

    def runtime(self, digest: str) -> RuntimeStatus:
        """Runtime grace of `digest` (prefetched when the request named it)."""
        status = self._runtime.get(digest)
        return status if status is not None else self._base.runtime(digest)


def runtime_status(verdict: RuntimeVerdict) -> RuntimeStatus:
    """What admission needs of a runtime verdict: the reasons that block, the graces that still run."""
    blocking: list[str] = []
    graces: list[Grace] = []
    for item in verdict.items:
        v = item.violation
        subject = (
            f"{v.vulnerability_id} ({v.severity.upper()}) in {v.package}" if v.vulnerability_id else v.rule
        )
        if item.deadline is not None:
            if item.within_grace:
                graces.append(Grace(subject, item.deadline))
            else:
                blocking.append(f"{subject}: runtime grace ended {_stamp(item.deadline)}")
        elif v.vulnerability_id:
            blocking.append(f"{subject}: no runtime grace for this severity")
        else:
            blocking.append(v.message)
    return RuntimeStatus(tuple(blocking), tuple(graces))


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%MZ")
