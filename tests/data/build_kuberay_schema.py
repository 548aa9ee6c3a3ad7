"""Build tests/data/kuberay_v1.6.2.schema.json, the compact offline schema tests/test_deploy.py
validates deploy/kuberay/ against. Run by hand when KubeRay or the Kubernetes baseline moves:

    pip download kubernetes-validate==1.37.0 --no-deps -d /tmp/kv
    python tests/data/build_kuberay_schema.py /tmp/kv/kubernetes_validate-1.37.0-py3-none-any.whl

Two sources, both pinned:

* Kubernetes objects (PodTemplateSpec, Service, Secret, ConfigMap, Deployment and everything they
  reference): the *strict* JSON Schemas of Kubernetes v1.30 shipped in the kubernetes-validate
  1.37.0 wheel (Apache-2.0, generated from the Kubernetes OpenAPI spec), with additionalProperties
  false everywhere, so a misspelt field fails the way `kubectl apply` (strict field validation)
  fails. Descriptions are dropped to keep the file small.
* KubeRay's ray.io/v1 RayCluster and RayJob: transcribed below from the KubeRay v1.6.2 CRD API
  reference (ray-project/kuberay docs/reference/api.md at v1.6.2, generated from the CRD Go
  types; also published as https://docs.ray.io/en/master/cluster/kubernetes/references/api.html).
  The CRD YAMLs reachable offline predate `authOptions`, hence the transcription. Objects are
  closed (additionalProperties false) like the real CRD's structural schema under strict field
  validation; `template`/`headService`/`submitterPodTemplate` use the Kubernetes schemas above.
"""

from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path
from typing import Any

K8S_VERSION = "v1.30.0-local-strict"
KUBERAY_VERSION = "v1.6.2"
OUT = Path(__file__).resolve().parent / f"kuberay_{KUBERAY_VERSION}.schema.json"
K8S_ROOTS = [
    "io.k8s.api.core.v1.PodTemplateSpec", "io.k8s.api.core.v1.Service", "io.k8s.api.core.v1.Secret",
    "io.k8s.api.core.v1.ConfigMap", "io.k8s.api.apps.v1.Deployment",
]
_DROP = {"description"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/$defs/{name}"}


def _closed(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


STR = {"type": "string"}
BOOL = {"type": "boolean"}
INT = {"type": "integer"}
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
K8S = "io.k8s.api.core.v1."
MANAGED_BY = {"type": "string", "enum": ["ray.io/kuberay-operator", "kueue.x-k8s.io/multikueue"]}
SERVICE_TYPE = {"type": "string", "enum": ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]}

KUBERAY_DEFS: dict[str, Any] = {
    "kuberay.AuthOptions": _closed({
        "enableK8sTokenAuth": BOOL,
        "secretName": STR,
        "mode": {"type": "string", "enum": ["disabled", "token"]},
    }),
    "kuberay.AutoscalerOptions": _closed({
        "resources": _ref(K8S + "ResourceRequirements"),
        "image": STR,
        "imagePullPolicy": STR,
        "securityContext": _ref(K8S + "SecurityContext"),
        "idleTimeoutSeconds": INT,
        "upscalingMode": {"type": "string", "enum": ["Default", "Aggressive", "Conservative"]},
        "version": {"type": "string", "enum": ["v1", "v2"]},
        "env": {"type": "array", "items": _ref(K8S + "EnvVar")},
        "envFrom": {"type": "array", "items": _ref(K8S + "EnvFromSource")},
        "volumeMounts": {"type": "array", "items": _ref(K8S + "VolumeMount")},
    }),
    "kuberay.RedisCredential": _closed({"valueFrom": _ref(K8S + "EnvVarSource"), "value": STR}),
    "kuberay.GcsFaultToleranceOptions": _closed({
        "redisUsername": _ref("kuberay.RedisCredential"),
        "redisPassword": _ref("kuberay.RedisCredential"),
        "externalStorageNamespace": STR,
        "redisAddress": STR,
    }),
    "kuberay.HeadGroupSpec": _closed({
        "template": _ref(K8S + "PodTemplateSpec"),
        "headService": _ref(K8S + "Service"),
        "enableIngress": BOOL,
        "resources": STR_MAP,
        "labels": STR_MAP,
        "rayStartParams": STR_MAP,
        "serviceType": SERVICE_TYPE,
    }, required=["template", "rayStartParams"]),
    "kuberay.WorkerGroupSpec": _closed({
        "suspend": BOOL,
        "groupName": STR,
        "replicas": INT,
        "minReplicas": INT,
        "maxReplicas": INT,
        "idleTimeoutSeconds": INT,
        "resources": STR_MAP,
        "labels": STR_MAP,
        "rayStartParams": STR_MAP,
        "template": _ref(K8S + "PodTemplateSpec"),
        "scaleStrategy": _closed({"workersToDelete": {"type": "array", "items": STR}}),
        "numOfHosts": INT,
    }, required=["groupName", "template", "rayStartParams"]),
    "kuberay.RayClusterSpec": _closed({
        "upgradeStrategy": _closed({"type": {"type": "string", "enum": ["Recreate", "None"]}}),
        "authOptions": _ref("kuberay.AuthOptions"),
        "suspend": BOOL,
        "managedBy": MANAGED_BY,
        "autoscalerOptions": _ref("kuberay.AutoscalerOptions"),
        "headServiceAnnotations": STR_MAP,
        "enableInTreeAutoscaling": BOOL,
        "gcsFaultToleranceOptions": _ref("kuberay.GcsFaultToleranceOptions"),
        "headGroupSpec": _ref("kuberay.HeadGroupSpec"),
        "rayVersion": STR,
        "workerGroupSpecs": {"type": "array", "items": _ref("kuberay.WorkerGroupSpec")},
    }, required=["headGroupSpec"]),
    "kuberay.RayJobSpec": _closed({
        "activeDeadlineSeconds": INT,
        "backoffLimit": INT,
        "rayClusterSpec": _ref("kuberay.RayClusterSpec"),
        "submitterPodTemplate": _ref(K8S + "PodTemplateSpec"),
        "metadata": STR_MAP,
        "clusterSelector": STR_MAP,
        "submitterConfig": _closed({"backoffLimit": INT}),
        "managedBy": MANAGED_BY,
        "deletionStrategy": {"type": "object"},
        "entrypoint": STR,
        "runtimeEnvYAML": STR,
        "jobId": STR,
        "submissionMode": {"type": "string",
                           "enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
        "entrypointResources": STR,
        "entrypointNumCpus": {"type": "number"},
        "entrypointNumGpus": {"type": "number"},
        "ttlSecondsAfterFinished": INT,
        "preRunningDeadlineSeconds": {"type": "integer", "minimum": 1},
        "shutdownAfterJobFinishes": BOOL,
        "suspend": BOOL,
    }),
    "kuberay.RayCluster": _closed({
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayCluster"},
        "metadata": _ref("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
        "spec": _ref("kuberay.RayClusterSpec"),
    }, required=["apiVersion", "kind", "metadata", "spec"]),
    "kuberay.RayJob": _closed({
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayJob"},
        "metadata": _ref("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"),
        "spec": _ref("kuberay.RayJobSpec"),
    }, required=["apiVersion", "kind", "metadata", "spec"]),
}


def _strip(node: Any, in_properties: bool = False) -> Any:
    """Drop descriptions and x-kubernetes-* annotations; keep property *names* as they are."""
    if isinstance(node, dict):
        if in_properties:
            return {k: _strip(v) for k, v in node.items()}
        return {k: _strip(v, in_properties=(k in ("properties", "$defs")))
                for k, v in node.items() if k not in _DROP and not k.startswith("x-kubernetes")}
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def _closure(defs: dict[str, Any], roots: list[str]) -> set[str]:
    seen: set[str] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        stack: list[Any] = [defs[name]]
        while stack:
            node = stack.pop()
            if isinstance(node, dict):
                ref = node.get("$ref")
                if isinstance(ref, str):
                    todo.append(ref.rsplit("/", 1)[-1])
                stack.extend(node.values())
            elif isinstance(node, list):
                stack.extend(node)
    return seen


def build(wheel: Path) -> dict[str, Any]:
    with zipfile.ZipFile(wheel) as z:
        member = f"kubernetes_validate/kubernetes-json-schema/{K8S_VERSION}/_definitions.json"
        raw = json.loads(z.read(member))
    k8s = raw["$defs"]
    defs = {name: _strip(k8s[name]) for name in sorted(_closure(k8s, K8S_ROOTS))}
    defs.update(KUBERAY_DEFS)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": (f"Generated by tests/data/build_kuberay_schema.py: Kubernetes {K8S_VERSION} "
                     f"(kubernetes-validate 1.37.0) + KubeRay {KUBERAY_VERSION} API reference."),
        "$defs": defs,
    }


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    schema = build(Path(sys.argv[1]))
    OUT.write_text(json.dumps(schema, sort_keys=True, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")
