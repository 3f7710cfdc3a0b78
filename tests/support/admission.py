"""AdmissionReview v1 bodies for tests: our own builder, and the shared corpus rewritten with our images.

The builder produces what the API server sends for each workload kind (uid, kind/resource, namespace,
operation, userInfo, object, dryRun, options); the corpus bodies under ../shared/corpus/k8s (next to the
repository) are real captures, loaded when present and rewritten so their containers run our images.
"""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "k8s"

_GROUPS = {
    "Pod": ("", "pods"),
    "Deployment": ("apps", "deployments"),
    "ReplicaSet": ("apps", "replicasets"),
    "StatefulSet": ("apps", "statefulsets"),
    "DaemonSet": ("apps", "daemonsets"),
    "Job": ("batch", "jobs"),
    "CronJob": ("batch", "cronjobs"),
}
KINDS = tuple(_GROUPS)


def pod_spec(
    containers: list[str], init: list[str] | None = None, ephemeral: list[str] | None = None
) -> dict[str, Any]:
    """A pod spec running `containers` (names c0, c1…), with init and ephemeral containers if given."""
    spec: dict[str, Any] = {
        "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(containers)],
        "restartPolicy": "Always",
    }
    if init:
        spec["initContainers"] = [{"name": f"init{i}", "image": image} for i, image in enumerate(init)]
    if ephemeral:
        spec["ephemeralContainers"] = [
            {"name": f"debug{i}", "image": image, "targetContainerName": "c0"}
            for i, image in enumerate(ephemeral)
        ]
    return spec


def workload(kind: str, name: str, spec: dict[str, Any], *, generate_name: bool = False) -> dict[str, Any]:
    """An object of `kind` whose pods run `spec` (metadata.name, or only generateName)."""
    group, _ = _GROUPS[kind]
    meta: dict[str, Any] = {"generateName": f"{name}-"} if generate_name else {"name": name}
    meta["labels"] = {"app": name}
    template = {"metadata": {"labels": {"app": name}}, "spec": spec}
    body: dict[str, Any]
    if kind == "Pod":
        body = {"spec": spec}
    elif kind == "CronJob":
        body = {"spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template}}}}
    elif kind == "Job":
        body = {"spec": {"template": template}}
    else:
        body = {"spec": {"selector": {"matchLabels": {"app": name}}, "template": template}}
    return {"apiVersion": f"{group}/v1" if group else "v1", "kind": kind, "metadata": meta, **body}


def review_body(
    kind: str,
    namespace: str,
    spec: dict[str, Any],
    *,
    name: str = "web",
    generate_name: bool = False,
    dry_run: bool = False,
    operation: str = "CREATE",
    uid: str = "",
) -> dict[str, Any]:
    """A full AdmissionReview v1 request as the API server sends it."""
    group, resource = _GROUPS[kind]
    gvk = {"group": group, "version": "v1", "kind": kind}
    gvr = {"group": group, "version": "v1", "resource": resource}
    request: dict[str, Any] = {
        "uid": uid or str(uuid.uuid4()),
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": "alice@example.com", "groups": ["system:authenticated"]},
        "object": workload(kind, name, spec, generate_name=generate_name),
        "oldObject": None,
        "dryRun": dry_run,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
    }
    if not generate_name:
        request["name"] = name
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def corpus(name: str) -> dict[str, Any]:
    """A real AdmissionReview from the shared corpus; skip the test when the corpus is absent."""
    path = CORPUS / name
    if not path.exists():
        pytest.skip(f"shared corpus not present: {path}")
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def rewrite(body: dict[str, Any], namespace: str, image: str) -> dict[str, Any]:
    """`body` with every container image replaced by `image` and the request moved into `namespace`."""
    out = copy.deepcopy(body)
    request = out["request"]
    request["namespace"] = namespace
    obj = request["object"]
    spec = obj["spec"]["template"]["spec"] if obj["kind"] != "Pod" else obj["spec"]
    for key in ("initContainers", "containers", "ephemeralContainers"):
        for container in spec.get(key) or []:
            container["image"] = image
    return out
