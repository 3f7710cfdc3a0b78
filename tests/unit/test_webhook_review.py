"""Tables over the pure review(): every workload kind, image forms, ledger and runtime-grace states,
namespace mapping, dry runs and malformed bodies. The lookup is an in-memory double; time is injected."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gate.domain import Stage
from gate.errors import InvalidArgument
from gate.webhook.review import (
    Grace,
    ResolveError,
    RuntimeStatus,
    evaluate,
    extract_images,
    normalize_image,
    review,
)
from gate.webhook.stages import (
    ReviewSettings,
    UnknownNamespace,
    parse_require_digest,
    parse_stage_map,
)
from tests.support.admission import KINDS, corpus, pod_spec, review_body, workload

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
REG = "reg.example.com"


def d(ch: str) -> str:
    return "sha256:" + ch * 64


PROMOTED = f"{REG}/p/app@{d('a')}"  # promoted into p, clean
IN_GRACE = f"{REG}/p/api@{d('b')}"  # promoted into p; a CRITICAL found since, grace until NOW + 2h
PAST_GRACE = f"{REG}/p/old@{d('c')}"  # promoted into p; a HIGH whose grace ended an hour ago
UNPROMOTED = f"{REG}/s2/app@{d('e')}"  # scanned, never promoted
UNKNOWN = f"{REG}/d/new@{d('f')}"  # never seen by gate
STAGED = f"{REG}/s2/svc@{d('9')}"  # promoted into s2 only
TAGGED = f"{REG}/p/app:1.0"  # resolves to the promoted digest


@dataclass
class FakeLookup:
    """Stored facts by digest; counts calls so tests can prove what was (not) asked."""

    promotions: dict[str, frozenset[Stage]] = field(
        default_factory=lambda: {
            d("a"): frozenset({Stage.S2, Stage.P}),
            d("b"): frozenset({Stage.P}),
            d("c"): frozenset({Stage.P}),
            d("9"): frozenset({Stage.S2}),
        }
    )
    records: set[str] = field(default_factory=lambda: {d("a"), d("b"), d("c"), d("e"), d("9")})
    tags: dict[str, str] = field(default_factory=lambda: {f"{REG}/p/app:1.0": d("a")})
    resolved: list[str] = field(default_factory=list)

    def resolve_tag(self, reference: str) -> str:
        self.resolved.append(reference)
        if reference not in self.tags:
            raise ResolveError("manifest unknown")
        return self.tags[reference]

    def known(self, digest: str) -> bool:
        return digest in self.records

    def promoted_into(self, digest: str) -> frozenset[Stage]:
        return self.promotions.get(digest, frozenset())

    def runtime(self, digest: str) -> RuntimeStatus:
        if digest == d("b"):
            return RuntimeStatus(
                graces=(Grace("CVE-2025-0001 (CRITICAL) in openssl", NOW + timedelta(hours=2)),)
            )
        if digest == d("c"):
            return RuntimeStatus(
                blocking=("CVE-2024-9999 (HIGH) in zlib: runtime grace ended 2025-06-01T11:00Z",)
            )
        return RuntimeStatus()


STAGES = parse_stage_map("prod=p,staging=s2,dev=d,qa=t")


def run(body: Any, lookup: FakeLookup | None = None, **settings: Any) -> dict[str, Any]:
    out: dict[str, Any] = review(body, lookup or FakeLookup(), STAGES, NOW, ReviewSettings(**settings))[
        "response"
    ]
    return out


def pod(namespace: str, *images: str, **kw: Any) -> dict[str, Any]:
    return review_body("Pod", namespace, pod_spec(list(images)), **kw)


# -- every kind --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_judged_from_its_pod_template(kind: str) -> None:
    body = review_body(kind, "prod", pod_spec([PROMOTED], init=[UNPROMOTED]))
    response = run(body)
    assert response["uid"] == body["request"]["uid"]
    assert response["allowed"] is False
    assert response["status"]["message"] == (
        f"gate: not admitted to stage p (namespace prod): {UNPROMOTED}: no promotion to p in the ledger"
    )
    ok = review_body(kind, "prod", pod_spec([PROMOTED], init=[PROMOTED]))
    assert run(ok) == {
        "uid": ok["request"]["uid"],
        "allowed": True,
        "auditAnnotations": {"stage": "p", "result": "allowed"},
    }


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("Pod", "spec"),
        ("Deployment", "spec.template.spec"),
        ("StatefulSet", "spec.template.spec"),
        ("CronJob", "spec.jobTemplate.spec.template.spec"),
    ],
)
def test_containers_init_and_ephemeral_are_all_extracted(kind: str, path: str) -> None:
    spec = pod_spec(["a.io/x:1", "a.io/y:1"], init=["a.io/init:1"], ephemeral=["a.io/debug:1", "a.io/x:1"])
    uses, problem = extract_images(kind, workload(kind, "w", spec))
    assert problem == ""
    assert [(u.image, u.containers) for u in uses] == [
        ("a.io/init:1", ("initContainers/init0",)),
        ("a.io/x:1", ("containers/c0", "ephemeralContainers/debug1")),
        ("a.io/y:1", ("containers/c1",)),
        ("a.io/debug:1", ("ephemeralContainers/debug0",)),
    ]


def test_ephemeral_container_added_by_kubectl_debug_is_judged() -> None:
    body = review_body("Pod", "prod", pod_spec([PROMOTED], ephemeral=["busybox"]), operation="UPDATE")
    body["request"]["subResource"] = "ephemeralcontainers"
    response = run(body)
    assert response["allowed"] is False
    assert "busybox: not pinned by digest" in response["status"]["message"]


def test_each_offending_image_is_named_once_with_its_reason() -> None:
    body = pod("prod", PROMOTED, UNPROMOTED, UNKNOWN, f"{REG}/p/app:1.0", UNPROMOTED)
    message = run(body)["status"]["message"]
    assert message.count(UNPROMOTED) == 1
    assert f"{UNKNOWN}: unknown to gate (never scanned)" in message
    assert f"{REG}/p/app:1.0: not pinned by digest (stage p requires IMAGE@sha256:…)" in message
    assert PROMOTED + ":" not in message


def test_generate_name_without_name() -> None:
    body = review_body("Pod", "prod", pod_spec([UNPROMOTED]), name="web-7d9", generate_name=True)
    assert "name" not in body["request"]
    outcome = evaluate(body, FakeLookup(), STAGES, NOW, ReviewSettings())
    assert outcome.subject == "Pod prod/web-7d9-*"
    assert outcome.allowed is False


def test_real_corpus_pod_with_init_containers_and_generate_name() -> None:
    body = corpus("admissionreview-pod-create-with-initcontainers-legacy.json")
    outcome = evaluate(body, FakeLookup(), parse_stage_map("keymaker=p"), NOW, ReviewSettings())
    assert outcome.response["response"]["uid"] == "e94a7790-a4fc-11e9-a276-42010a3e0104"
    assert outcome.subject == "Pod keymaker/keymaker-keymaker-769579fd65-*"
    assert not outcome.allowed
    assert outcome.reasons == (
        "791719295754.dkr.ecr.us-east-2.amazonaws.com/dva/pki_aws_bootstrap:6: not pinned by digest "
        "(stage p requires IMAGE@sha256:…)",
        "gcr.io/gsf-mgmt-devmvp-spinnaker/dva/keymaker-client:latest: not pinned by digest "
        "(stage p requires IMAGE@sha256:…)",
    )


def test_real_corpus_deployment_with_a_bare_docker_hub_name() -> None:
    body = corpus("admissionreview-v1-deployment-create.json")
    lookup = FakeLookup(tags={"docker.io/library/nginx:latest": d("a")})
    response = review(body, lookup, parse_stage_map("nginx=s2"), NOW)["response"]
    assert response["allowed"] is True  # the tag resolves to a digest promoted into s2 (and p)
    assert lookup.resolved == ["docker.io/library/nginx:latest"]


# -- image forms and stages --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "reference"),
    [
        ("nginx", "docker.io/library/nginx:latest"),
        ("nginx:1.27", "docker.io/library/nginx:1.27"),
        ("team/app@" + d("1"), "docker.io/team/app@" + d("1")),
        ("localhost:5000/app:2", "localhost:5000/app:2"),
        ("reg.io/a/b:1@" + d("2"), "reg.io/a/b:1@" + d("2")),
    ],
)
def test_normalize_like_the_kubelet(image: str, reference: str) -> None:
    assert normalize_image(image).reference == reference


@pytest.mark.parametrize(
    ("namespace", "image", "allowed", "reason"),
    [
        ("prod", PROMOTED, True, ""),
        ("prod", TAGGED, False, "not pinned by digest"),
        ("prod", UNPROMOTED, False, "no promotion to p in the ledger"),
        ("prod", UNKNOWN, False, "unknown to gate (never scanned)"),
        ("prod", STAGED, False, "no promotion to p in the ledger"),
        ("prod", PAST_GRACE, False, "CVE-2024-9999 (HIGH) in zlib: runtime grace ended 2025-06-01T11:00Z"),
        ("prod", "Not A Ref", False, "not a valid image reference"),
        ("staging", STAGED, True, ""),
        ("staging", PROMOTED, True, ""),  # a promotion into p passed through s2
        ("staging", TAGGED, True, ""),  # tags are resolved outside p
        ("staging", f"{REG}/s2/app:gone", False, "tag not resolved: manifest unknown"),
        ("staging", UNPROMOTED, False, "no promotion to s2 in the ledger"),
        ("qa", STAGED, True, ""),
        ("qa", UNPROMOTED, False, "no promotion to t in the ledger"),
        ("dev", UNKNOWN, True, ""),
        ("dev", "Not A Ref", True, ""),
    ],
)
def test_stage_rules(namespace: str, image: str, allowed: bool, reason: str) -> None:
    response = run(pod(namespace, image))
    assert response["allowed"] is allowed
    if reason:
        assert reason in response["status"]["message"] and image in response["status"]["message"]
    else:
        assert "status" not in response


def test_in_grace_digest_is_admitted_with_its_deadline_then_denied_after_it() -> None:
    response = run(pod("prod", IN_GRACE))
    assert response["allowed"] is True
    assert response["warnings"] == [
        f"{IN_GRACE}: CVE-2025-0001 (CRITICAL) in openssl admitted until 2025-06-01T14:00Z"
    ]
    later = review(pod("prod", IN_GRACE), FakeLookup(), STAGES, NOW + timedelta(hours=2))["response"]
    assert later["allowed"] is False
    assert (
        "CVE-2025-0001 (CRITICAL) in openssl: runtime grace ended 2025-06-01T14:00Z"
        in later["status"]["message"]
    )


def test_unknown_digest_in_dev_warns_and_queues_a_scan_except_on_dry_run() -> None:
    outcome = evaluate(pod("dev", UNKNOWN, UNKNOWN), FakeLookup(), STAGES, NOW, ReviewSettings())
    assert outcome.allowed and outcome.scans == (f"{REG}/d/new@{d('f')}",)
    assert outcome.response["response"]["warnings"] == [f"{UNKNOWN}: unknown to gate; scan queued"]
    dry = evaluate(pod("dev", UNKNOWN, dry_run=True), FakeLookup(), STAGES, NOW, ReviewSettings())
    assert dry.allowed and dry.dry_run and dry.scans == ()


def test_dry_run_gets_the_same_answer() -> None:
    wet = run(pod("prod", UNPROMOTED, uid="u-1"))
    dry = run(pod("prod", UNPROMOTED, uid="u-1", dry_run=True))
    assert wet == dry


def test_tag_resolution_can_be_turned_off_and_digest_pinning_relaxed() -> None:
    lookup = FakeLookup()
    denied = run(pod("staging", TAGGED), lookup, resolve_tags=False)
    assert denied["allowed"] is False and "pin by digest" in denied["status"]["message"]
    assert lookup.resolved == []
    relaxed = run(pod("prod", TAGGED), lookup, require_digest=frozenset())
    assert relaxed["allowed"] is True and lookup.resolved == [TAGGED]


def test_unknown_namespace_is_configurable() -> None:
    body = pod("elsewhere", UNPROMOTED)
    allowed = review(body, FakeLookup(), STAGES, NOW)["response"]
    assert allowed["allowed"] is True
    assert allowed["warnings"] == ["namespace elsewhere has no gate stage; images not checked"]
    deny = parse_stage_map("prod=p", "deny")
    assert deny.unknown is UnknownNamespace.DENY
    assert review(body, FakeLookup(), deny, NOW)["response"]["allowed"] is False
    as_p = parse_stage_map("", "p")
    assert review(body, FakeLookup(), as_p, NOW)["response"]["allowed"] is False
    # The workload cannot pick its own stage: labels and annotations are not read.
    labelled = pod("elsewhere", UNPROMOTED)
    labelled["request"]["object"]["metadata"]["labels"] = {"gate.stage": "d"}
    assert review(labelled, FakeLookup(), as_p, NOW)["response"]["allowed"] is False


def test_deny_message_is_one_short_line() -> None:
    images = [f"{REG}/p/app{i}@{d('e')}" for i in range(40)]
    message = run(pod("prod", *images))["status"]["message"]
    assert len(message) <= 1000 and "\n" not in message
    assert message.endswith("more)") and images[0] in message


# -- what is not judged, and bad bodies ----------------------------------------------------------------


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_operations_that_start_nothing_are_allowed(operation: str) -> None:
    body = pod("prod", UNPROMOTED, operation=operation)
    assert run(body) == {"uid": body["request"]["uid"], "allowed": True}


def test_status_subresource_and_other_kinds_are_allowed() -> None:
    body = pod("prod", UNPROMOTED, operation="UPDATE")
    body["request"]["subResource"] = "status"
    assert run(body)["allowed"] is True
    other = pod("prod", UNPROMOTED)
    other["request"]["kind"]["kind"] = "ConfigMap"
    assert run(other)["allowed"] is True


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "the body is not a JSON object"),
        ({}, "request is missing or not an object"),
        (
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": "x"},
            "request is missing",
        ),
        (
            {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "u"}},
            "expected",
        ),
        ({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"kind": {}}}, "uid"),
        (
            {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u"}},
            "request.kind",
        ),
    ],
)
def test_malformed_bodies_are_denied_with_400_not_raised(body: Any, message: str) -> None:
    response = run(body)
    assert response["allowed"] is False and response["status"]["code"] == 400
    assert message in response["status"]["message"]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.__setitem__("object", None), "request.object is missing"),
        (lambda r: r["object"].__setitem__("spec", []), "spec is not an object"),
        (lambda r: r["object"]["spec"].__setitem__("containers", {"a": 1}), "containers is not a list"),
        (lambda r: r["object"]["spec"]["containers"][0].pop("image"), "containers/c0 has no image"),
        (lambda r: r["object"]["spec"]["containers"].append("nginx"), "containers/1 has no image"),
    ],
)
def test_malformed_objects(mutate: Any, message: str) -> None:
    body = pod("prod", PROMOTED, uid="u-7")
    mutate(body["request"])
    response = run(body)
    assert response["uid"] == "u-7"
    assert response["allowed"] is False and response["status"]["code"] == 400
    assert message in response["status"]["message"]


# -- configuration parsing -----------------------------------------------------------------------------


def test_stage_map_and_require_digest_parsing() -> None:
    stages = parse_stage_map(" prod=p , staging=S2,dev=d,")
    assert stages.namespaces == {"prod": Stage.P, "staging": Stage.S2, "dev": Stage.D}
    assert stages.stage_of("nope") is None
    assert parse_stage_map("", "d").stage_of("nope") is Stage.D
    assert parse_require_digest(None) == frozenset({Stage.P})
    assert parse_require_digest("false") == frozenset()
    assert parse_require_digest("p,s2") == frozenset({Stage.P, Stage.S2})
    for bad in ("prod", "prod=x", "Prod=p", "prod=p,prod=d"):
        with pytest.raises(InvalidArgument) as e:
            parse_stage_map(bad)
        assert e.value.field == "GATE_WEBHOOK_STAGES"
    with pytest.raises(InvalidArgument):
        parse_stage_map("", "maybe")
