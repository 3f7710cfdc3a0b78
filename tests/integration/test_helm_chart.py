"""deploy/helm/gate rendered and linted by Helm itself, and the manifests it produces validated.

Helm comes from the pinned dev dependency helm-python-sdk (Helm's Go SDK behind a C ABI, no helm
binary): `helm lint --strict` and `helm template` run in-process. Without it the tests skip locally
and fail under CI (tests/support/probes.py), since it is a declared requirement.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.probes import missing

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "gate"
NAMESPACE = "gate-system"
DIGEST = "sha256:" + "0123456789abcdef" * 4

try:
    import helm_python as helm
except ImportError as error:  # pragma: no cover - depends on the environment
    helm = None
    _import_error = str(error)


@pytest.fixture(scope="module", autouse=True)
def _helm() -> None:
    if helm is None:
        missing("helm (helm-python-sdk)", _import_error)


def base_values(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "image": {"repository": "registry.example/p/gate", "digest": DIGEST},
        "database": {"existingSecret": "gate-db"},
        "signingKey": {"existingSecret": "gate-signing"},
        "webhook": {"tls": {"secretName": "gate-webhook-tls"}, "caBundle": "Q0EK", "stages": "prod=p,dev=d"},
    }
    return merge(values, overrides)


def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        out[key] = (
            merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def render(values: dict[str, Any]) -> dict[str, str]:
    assert helm is not None
    with helm.Chart.load(str(CHART)) as chart:
        return dict(chart.render(values, name="gate", namespace=NAMESPACE, is_install=True))


def documents(values: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for path, text in render(values).items():
        if not path.endswith(".yaml"):
            continue
        out.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return out


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


@pytest.fixture(scope="module")
def docs() -> list[dict[str, Any]]:
    return documents(base_values())


@pytest.fixture(scope="module")
def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = by_kind(docs, "Deployment")
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(only)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_lint_strict_is_clean() -> None:
    assert helm is not None
    report = helm.lint(str(CHART), base_values(), strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    problems = [m for m in report["messages"] if m["severity"] >= 2]  # 2 = warning, 3 = error
    assert problems == []


def test_every_document_is_a_named_object(docs: list[dict[str, Any]]) -> None:
    assert {d["kind"] for d in docs} == {
        "Deployment",
        "Service",
        "ServiceAccount",
        "ValidatingWebhookConfiguration",
    }
    for doc in docs:
        assert doc.get("apiVersion") and doc.get("kind") and doc["metadata"].get("name"), doc


def test_no_latest_and_image_by_digest(container: dict[str, Any]) -> None:
    text = "\n".join(render(base_values()).values())
    assert not re.search(r"\blatest\b", text)
    assert container["image"] == f"registry.example/p/gate@{DIGEST}"


def test_deployment_replicas_security_probes_resources(
    docs: list[dict[str, Any]], container: dict[str, Any]
) -> None:
    (deployment,) = by_kind(docs, "Deployment")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's USER
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}, probe
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    # Writable paths are volumes: data dir, Trivy cache, /tmp (the root filesystem is read-only).
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert {"/var/lib/gate", "/var/cache/gate/trivy", "/tmp"} <= set(mounts)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["trivy-cache"]
    assert volumes["webhook-tls"]["secret"]["secretName"] == "gate-webhook-tls"


def test_env_database_from_secret_and_webhook_wired(container: dict[str, Any]) -> None:
    env = env_of(container)
    assert env["GATE_DATABASE_URL"] == {"secretKeyRef": {"name": "gate-db", "key": "url"}}
    assert env["GATE_METRICS_LISTEN"] == "0.0.0.0:9090"
    assert env["GATE_TRIVY_CACHE_DIR"] == "/var/cache/gate/trivy"
    assert env["GATE_WEBHOOK_LISTEN"] == "0.0.0.0:8443"
    assert env["GATE_WEBHOOK_TLS_CERT"].endswith("tls.crt") and env["GATE_WEBHOOK_TLS_KEY"].endswith(
        "tls.key"
    )
    assert env["GATE_WEBHOOK_STAGES"] == "prod=p,dev=d"
    assert env["GATE_SIGNING_KEY"] == "/etc/gate/signing/receipt-ed25519.pem"
    assert container["args"] == ["serve", "--listen", "0.0.0.0:50051"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {
        "grpc": 50051,
        "webhook": 8443,
        "metrics": 9090,
    }


def test_service_ports(docs: list[dict[str, Any]]) -> None:
    (service,) = by_kind(docs, "Service")
    ports = {p["name"]: (p["port"], p["targetPort"]) for p in service["spec"]["ports"]}
    assert ports == {"grpc": (50051, "grpc"), "webhook": (443, "webhook"), "metrics": (9090, "metrics")}


def test_validating_webhook(docs: list[dict[str, Any]]) -> None:
    (config,) = by_kind(docs, "ValidatingWebhookConfiguration")
    assert config["apiVersion"] == "admissionregistration.k8s.io/v1"
    (hook,) = config["webhooks"]
    assert hook["failurePolicy"] == "Fail"
    assert hook["timeoutSeconds"] == 5
    assert hook["sideEffects"] in ("None", "NoneOnDryRun")
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["clientConfig"]["service"] == {
        "name": "gate",
        "namespace": NAMESPACE,
        "path": "/validate",
        "port": 443,
    }
    assert hook["clientConfig"]["caBundle"] == "Q0EK"
    (expr,) = hook["namespaceSelector"]["matchExpressions"]
    assert expr["key"] == "kubernetes.io/metadata.name" and expr["operator"] == "NotIn"
    assert {"kube-system", NAMESPACE} <= set(expr["values"])
    covered = {(g, r) for rule in hook["rules"] for g in rule["apiGroups"] for r in rule["resources"]}
    assert {
        ("", "pods"),
        ("", "pods/ephemeralcontainers"),
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
        ("batch", "jobs"),
        ("batch", "cronjobs"),
    } <= covered
    assert all(set(rule["operations"]) == {"CREATE", "UPDATE"} for rule in hook["rules"])


def test_cert_manager_issues_and_injects() -> None:
    docs = documents(
        base_values(webhook={"tls": {"secretName": ""}, "caBundle": "", "certManager": {"enabled": True}})
    )
    (certificate,) = by_kind(docs, "Certificate")
    assert certificate["spec"]["dnsNames"][0] == f"gate.{NAMESPACE}.svc"
    assert by_kind(docs, "Issuer")[0]["spec"] == {"selfSigned": {}}
    (config,) = by_kind(docs, "ValidatingWebhookConfiguration")
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/gate-webhook"
    (deployment,) = by_kind(docs, "Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["webhook-tls"]["secret"]["secretName"] == certificate["spec"]["secretName"]


def test_trivy_cache_pvc_and_webhook_off() -> None:
    docs = documents(base_values(trivyCache={"persistence": {"enabled": True}}, webhook={"enabled": False}))
    (claim,) = by_kind(docs, "PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert not by_kind(docs, "ValidatingWebhookConfiguration")
    (deployment,) = by_kind(docs, "Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["trivy-cache"]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]


def _render_error(values: dict[str, Any]) -> str:
    from helm_python.errors import HelmError

    with pytest.raises(HelmError) as raised:
        render(values)
    return str(raised.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"image": {"digest": ""}}, "image.digest"),
        ({"image": {"digest": "latest"}}, "image.digest must be sha256"),
        ({"database": {"existingSecret": ""}}, "database.existingSecret"),
        ({"signingKey": {"existingSecret": ""}}, "signingKey.existingSecret"),
        ({"webhook": {"tls": {"secretName": ""}}}, "webhook.tls.secretName"),
        ({"webhook": {"caBundle": ""}}, "webhook.caBundle"),
    ],
)
def test_refuses_incomplete_values(overrides: dict[str, Any], message: str) -> None:
    assert message in _render_error(base_values(**overrides))


def test_single_replica_may_use_the_generated_signing_key() -> None:
    docs = documents(base_values(replicaCount=1, signingKey={"existingSecret": ""}))
    (deployment,) = by_kind(docs, "Deployment")
    assert "GATE_SIGNING_KEY" not in env_of(deployment["spec"]["template"]["spec"]["containers"][0])


def iter_values(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for value in node.values():
            yield from iter_values(value)
    elif isinstance(node, list):
        for value in node:
            yield from iter_values(value)
    else:
        yield node


def test_default_values_have_no_tag_setting() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert "tag" not in values["image"]
    assert not any(isinstance(v, str) and "latest" in v for v in iter_values(values))
