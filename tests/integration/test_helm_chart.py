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


# --- Trivy in client/server mode (values trivyServer.*) -------------------------------------------------

SERVER = "gate-trivy-server"


def trivy_values(**trivy: Any) -> dict[str, Any]:
    """base_values with the chart's own trivy server on, its token from the Secret `trivy-token`."""
    return base_values(
        trivyServer=merge({"enabled": True, "token": {"existingSecret": "trivy-token"}}, trivy)
    )


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (only,) = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == name]
    return only


def gate_container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (only,) = named(docs, "Deployment", "gate")["spec"]["template"]["spec"]["containers"]
    return dict(only)


def server_pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return dict(named(docs, "Deployment", SERVER)["spec"]["template"]["spec"])


def server_objects(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((d["kind"], d["metadata"]["name"]) for d in docs if "trivy-server" in d["metadata"]["name"])


def test_trivy_server_off_by_default_and_its_settings_change_nothing_while_off() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["trivyServer"]["enabled"] is False
    default = {p: t for p, t in render(base_values()).items() if t.strip()}
    # Every trivyServer knob set, but not enabled: the manifests (and NOTES) are exactly the default ones.
    knobs = trivy_values(
        enabled=False,
        tokenHeader="X-Scan-Key",
        replicas=3,
        listenPort=5000,
        dbRepository="mirror.internal/aquasec/trivy-db:2",
        image={"repository": "registry.example/p/trivy", "digest": DIGEST},
    )
    assert {p: t for p, t in render(knobs).items() if t.strip()} == default
    docs = documents(knobs)
    assert server_objects(docs) == []
    assert not any(name.startswith("GATE_TRIVY_SERVER") for name in env_of(gate_container(docs)))


def test_lint_strict_is_clean_with_the_trivy_server() -> None:
    assert helm is not None
    for values in (
        trivy_values(tokenHeader="X-Scan-Key", cache={"persistence": {"enabled": True}}, skipDBUpdate=True),
        trivy_values(external={"url": "https://trivy.example:4954"}),
    ):
        report = helm.lint(str(CHART), values, strict=True, namespace=NAMESPACE)
        assert report["errors"] == []
        assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_trivy_server_deployment_service_and_network_policy() -> None:
    docs = documents(trivy_values())
    assert server_objects(docs) == [
        ("Deployment", SERVER),
        ("NetworkPolicy", SERVER),
        ("Service", SERVER),
    ]
    deployment = named(docs, "Deployment", SERVER)
    assert deployment["spec"]["replicas"] == 1
    assert "strategy" not in deployment["spec"]  # emptyDir: rolling updates are fine
    pod = server_pod(docs)
    (container,) = pod["containers"]
    # gate's own image by digest, running its bundled trivy: the same version as the client in gate's pods.
    assert container["image"] == f"registry.example/p/gate@{DIGEST}"
    assert container["command"] == ["/opt/gate/bin/trivy"]
    assert container["args"] == ["server", "--listen", "0.0.0.0:4954", "--cache-dir", "/var/cache/trivy"]
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"trivy": 4954}
    env = env_of(container)
    assert env["TRIVY_TOKEN"] == {"secretKeyRef": {"name": "trivy-token", "key": "token"}}
    assert env["TRIVY_SKIP_VERSION_CHECK"] == "true" and env["TRIVY_DISABLE_TELEMETRY"] == "true"
    assert "TRIVY_TOKEN_HEADER" not in env
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "trivy"}, probe
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts == {"/var/cache/trivy": "cache", "/tmp": "tmp"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["cache"] == {"name": "cache", "emptyDir": {"sizeLimit": "5Gi"}}

    # Selectors: gate's Deployment and Service must not pick up the server's pods, and vice versa.
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    gate_selector = named(docs, "Deployment", "gate")["spec"]["selector"]["matchLabels"]
    assert not gate_selector.items() <= pod_labels.items()
    assert not gate_selector.items() <= named(docs, "Service", SERVER)["spec"]["selector"].items()
    assert named(docs, "Service", "gate")["spec"]["selector"] == gate_selector
    service = named(docs, "Service", SERVER)
    assert service["spec"]["type"] == "ClusterIP"
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert deployment["spec"]["selector"]["matchLabels"] == service["spec"]["selector"]
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(4954, "trivy")]

    policy = named(docs, "NetworkPolicy", SERVER)["spec"]
    assert policy["podSelector"]["matchLabels"] == service["spec"]["selector"]
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": gate_selector}}]
    assert rule["ports"] == [{"port": "trivy", "protocol": "TCP"}]


def test_gate_gets_the_server_url_and_the_token_only_by_secret_reference() -> None:
    values = trivy_values(tokenHeader="X-Scan-Key", token={"key": "tok"})
    docs = documents(values)
    env = env_of(gate_container(docs))
    assert env["GATE_TRIVY_SERVER"] == f"http://{SERVER}.{NAMESPACE}.svc:4954"
    assert env["GATE_TRIVY_SERVER_TOKEN"] == {"secretKeyRef": {"name": "trivy-token", "key": "tok"}}
    assert env["GATE_TRIVY_SERVER_TOKEN_HEADER"] == "X-Scan-Key"
    server_env = env_of(server_pod(docs)["containers"][0])
    assert server_env["TRIVY_TOKEN"] == {"secretKeyRef": {"name": "trivy-token", "key": "tok"}}
    assert server_env["TRIVY_TOKEN_HEADER"] == "X-Scan-Key"
    # No token literal anywhere: every token variable is a secretKeyRef, and a token value slipped into
    # values (the chart has no such setting) never reaches the output.
    for container in (gate_container(docs), server_pod(docs)["containers"][0]):
        for entry in container["env"]:
            if "TOKEN" in entry["name"] and not entry["name"].endswith("TOKEN_HEADER"):
                assert "value" not in entry and "secretKeyRef" in entry["valueFrom"], entry
    sentinel = "tok-sentinel-4b1d"
    leaked = render(merge(values, {"trivyServer": {"token": {"value": sentinel}, "tokenValue": sentinel}}))
    assert not any(sentinel in text for text in leaked.values())


def test_gate_accepts_the_rendered_environment() -> None:
    """gate's own configuration loader takes the env the chart gives it (URL, token, header together)."""
    from gate.config import Settings

    container = gate_container(documents(trivy_values(tokenHeader="X-Scan-Key")))
    env = {e["name"]: e.get("value", "secret-from-" + str(e.get("valueFrom"))) for e in container["env"]}
    settings = Settings.from_env(env)
    assert settings.trivy_server == f"http://{SERVER}.{NAMESPACE}.svc:4954"
    assert settings.trivy_server_token.startswith("secret-from-")
    assert settings.trivy_server_token_header == "X-Scan-Key"


def test_trivy_server_listen_port_flows_everywhere() -> None:
    docs = documents(trivy_values(listenPort=5000, replicas=3))
    (container,) = server_pod(docs)["containers"]
    assert container["args"][:3] == ["server", "--listen", "0.0.0.0:5000"]
    assert container["ports"][0]["containerPort"] == 5000
    assert named(docs, "Service", SERVER)["spec"]["ports"][0]["port"] == 5000
    assert named(docs, "Deployment", SERVER)["spec"]["replicas"] == 3
    assert env_of(gate_container(docs))["GATE_TRIVY_SERVER"] == f"http://{SERVER}.{NAMESPACE}.svc:5000"


def test_trivy_server_persistent_prefilled_db_and_mirror() -> None:
    docs = documents(
        trivy_values(
            cache={"persistence": {"enabled": True, "storageClass": "fast"}},
            skipDBUpdate=True,
            dbRepository="mirror.internal/aquasec/trivy-db:2",
        )
    )
    (claim,) = by_kind(docs, "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == f"{SERVER}-cache"
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["storageClassName"] == "fast"
    deployment = named(docs, "Deployment", SERVER)
    # A second server on the same cache would fail on Trivy's lock: never two at once, even in a rollout.
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = server_pod(docs)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["cache"]["persistentVolumeClaim"]["claimName"] == f"{SERVER}-cache"
    args = pod["containers"][0]["args"]
    assert args[-3:] == ["--db-repository", "mirror.internal/aquasec/trivy-db:2", "--skip-db-update"]

    existing = documents(trivy_values(cache={"persistence": {"enabled": True, "existingClaim": "trivy-db"}}))
    assert not by_kind(existing, "PersistentVolumeClaim")
    volumes = {v["name"]: v for v in server_pod(existing)["volumes"]}
    assert volumes["cache"]["persistentVolumeClaim"]["claimName"] == "trivy-db"
    assert "--skip-db-update" not in server_pod(existing)["containers"][0]["args"]


def test_trivy_server_own_image_by_digest() -> None:
    other = "sha256:" + "fedcba9876543210" * 4
    docs = documents(trivy_values(image={"repository": "registry.example/p/trivy", "digest": other}))
    (container,) = server_pod(docs)["containers"]
    assert container["image"] == f"registry.example/p/trivy@{other}"
    assert container["command"] == ["trivy"]
    docs = documents(
        trivy_values(
            image={"repository": "registry.example/p/trivy", "digest": other, "binary": "/usr/bin/trivy"}
        )
    )
    assert server_pod(docs)["containers"][0]["command"] == ["/usr/bin/trivy"]
    assert gate_container(docs)["image"] == f"registry.example/p/gate@{DIGEST}"  # gate's is untouched


def test_trivy_server_external_url_deploys_nothing() -> None:
    docs = documents(
        base_values(trivyServer={"enabled": True, "external": {"url": "https://trivy.example:4954/"}})
    )
    assert server_objects(docs) == []
    assert not by_kind(docs, "NetworkPolicy") and not by_kind(docs, "PersistentVolumeClaim")
    env = env_of(gate_container(docs))
    assert env["GATE_TRIVY_SERVER"] == "https://trivy.example:4954"
    # An external server may run without a token; the chart then sets none.
    assert "GATE_TRIVY_SERVER_TOKEN" not in env and "GATE_TRIVY_SERVER_TOKEN_HEADER" not in env

    docs = documents(trivy_values(external={"url": "http://trivy.tools:4954"}, tokenHeader="X-Scan-Key"))
    assert server_objects(docs) == []
    env = env_of(gate_container(docs))
    assert env["GATE_TRIVY_SERVER"] == "http://trivy.tools:4954"
    assert env["GATE_TRIVY_SERVER_TOKEN"] == {"secretKeyRef": {"name": "trivy-token", "key": "token"}}
    assert env["GATE_TRIVY_SERVER_TOKEN_HEADER"] == "X-Scan-Key"


def test_trivy_server_network_policy_can_be_left_out() -> None:
    docs = documents(trivy_values(networkPolicy={"enabled": False}))
    assert server_objects(docs) == [("Deployment", SERVER), ("Service", SERVER)]


@pytest.mark.parametrize(
    ("trivy", "message"),
    [
        ({"token": {"existingSecret": ""}}, "trivyServer.token.existingSecret"),
        ({"enabled": False, "external": {"url": "http://trivy:4954"}}, "set trivyServer.enabled=true"),
        ({"external": {"url": "http://user:pw@trivy:4954"}}, "trivyServer.external.url must be"),
        ({"external": {"url": "http://trivy:4954/?x=1"}}, "trivyServer.external.url must be"),
        ({"external": {"url": "trivy:4954"}}, "trivyServer.external.url must be"),
        (
            {"external": {"url": "http://trivy:4954"}, "token": {"existingSecret": ""}, "tokenHeader": "X"},
            "a header needs a token",
        ),
        ({"tokenHeader": "X Scan"}, "trivyServer.tokenHeader must be"),
        ({"replicas": 2, "cache": {"persistence": {"enabled": True}}}, "cannot share one cache volume"),
        ({"skipDBUpdate": True}, "trivyServer.skipDBUpdate needs"),
        ({"listenPort": 0}, "trivyServer.listenPort must be"),
        ({"image": {"repository": "registry.example/p/trivy"}}, "trivyServer.image.digest"),
        ({"image": {"repository": "registry.example/p/trivy", "digest": "latest"}}, "must be sha256"),
    ],
)
def test_trivy_server_refuses_settings_that_cannot_work(trivy: dict[str, Any], message: str) -> None:
    assert message in _render_error(trivy_values(**trivy))


@pytest.mark.parametrize("name", ["GATE_TRIVY_SERVER", "GATE_TRIVY_SERVER_TOKEN", "GATE_TRIVY_DB_REPOSITORY"])
def test_trivy_server_refuses_the_same_settings_in_env(name: str) -> None:
    # gate would refuse GATE_TRIVY_DB_REPOSITORY with a server, and a duplicate variable is ambiguous.
    assert f"env.{name} conflicts" in _render_error(trivy_values() | {"env": {name: "x"}})


def test_trivy_server_default_values_pin_by_digest_and_hold_no_token() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())["trivyServer"]
    assert "tag" not in values["image"]
    assert values["token"] == {"existingSecret": "", "key": "token"}
    assert values["listenPort"] == 4954
    assert values["external"] == {"url": ""}
    assert values["skipDBUpdate"] is False  # the server keeps its DB current unless told otherwise
    text = "\n".join(render(trivy_values()).values())
    assert not re.search(r"\blatest\b", text)
