"""Offline checks of deploy/: every YAML parses; compose publishes Ray and the dashboard on
127.0.0.1 only, takes every credential from ${VAR}s, reserves GPUs for the Ray worker and turns
on Ray token auth; the KubeRay manifests validate against the KubeRay v1.6.2 / Kubernetes v1.30
schema vendored in tests/data (see tests/data/build_kuberay_schema.py), request GPUs, read
secrets through secretKeyRef and expose no Ray port; the Dockerfile builds on Ray's GPU image of
the installed ray version as a non-root user. `docker compose config` and `docker build --check`
run only where the docker CLI (and, for the build check, a daemon) is there."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import tuner

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
KUBERAY = DEPLOY / "kuberay"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
SCHEMA = Path(__file__).resolve().parent / "data" / "kuberay_v1.6.2.schema.json"
RAY_VERSION = version("ray")
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|CREDENTIAL|API_KEY", re.IGNORECASE)
URL_WITH_PASSWORD = re.compile(r"://[^/:@\s]+:([^@\s]+)@")
VAR_REF = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?[?-][^}]*)?\}$")
RAY_SERVICES = ("ray-head", "ray-worker", "tuner")   # every compose service that talks to Ray
SCHEMA_OF_KIND = {
    "RayCluster": "kuberay.RayCluster", "RayJob": "kuberay.RayJob",
    "Service": "io.k8s.api.core.v1.Service", "Secret": "io.k8s.api.core.v1.Secret",
    "ConfigMap": "io.k8s.api.core.v1.ConfigMap", "Deployment": "io.k8s.api.apps.v1.Deployment",
}


# ---------------------------------------------------------------------------------- helpers
def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _manifests(*, examples: bool = True) -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, d) for p in sorted(KUBERAY.glob("*.yaml"))
            if examples or ".example." not in p.name for d in _docs(p)]


def _cluster_specs() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, doc in _manifests():
        if doc["kind"] == "RayCluster":
            out.append((name, doc["spec"]))
        elif doc["kind"] == "RayJob":
            out.append((name, doc["spec"]["rayClusterSpec"]))
    return out


def _pod_specs(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = doc.get("spec", {})
    for cluster in ([spec] if doc["kind"] == "RayCluster" else
                    [spec["rayClusterSpec"]] if doc["kind"] == "RayJob" else []):
        yield cluster["headGroupSpec"]["template"]["spec"]
        for group in cluster.get("workerGroupSpecs", []):
            yield group["template"]["spec"]
    if doc["kind"] == "Deployment":
        yield spec["template"]["spec"]


def _containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for pod in _pod_specs(doc):
        yield from pod.get("initContainers", [])
        yield from pod["containers"]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: str(v) for k, v in env.items()}


def _ports(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host_ip, target) of each published port, short or long syntax."""
    out = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            out.append((str(port.get("host_ip", "")), str(port.get("target"))))
        else:
            parts = str(port).split(":")
            out.append((parts[0] if len(parts) == 3 else "", parts[-1].split("/")[0]))
    return out


def _docker(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str] | None:
    if shutil.which("docker") is None:
        return None
    try:
        return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                              check=False)
    except subprocess.TimeoutExpired:
        return None


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA.read_text())


# ---------------------------------------------------------------------------------- all YAML
@pytest.mark.parametrize("path", sorted(DEPLOY.rglob("*.y*ml")),
                         ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_in_deploy_parses(path: Path) -> None:
    docs = _docs(path)
    assert docs, f"{path} holds no YAML document"
    assert all(isinstance(d, dict) for d in docs)


# ---------------------------------------------------------------------------------- compose
def test_compose_publishes_ports_on_localhost_only(compose: dict[str, Any]) -> None:
    published = {}
    for name, service in compose["services"].items():
        for host_ip, target in _ports(service):
            where = host_ip or "all interfaces"
            assert host_ip == "127.0.0.1", f"{name} publishes {target} on {where}"
            published.setdefault(name, set()).add(target)
    assert published == {"ray-head": {"8265", "10001"}, "dashboard": {"8501"}}


def test_compose_has_no_literal_credentials(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for key, value in _env(service).items():
            if SECRET_NAME.search(key) and key != "RAY_AUTH_MODE":
                assert VAR_REF.match(value), f"{name}.{key}: {value!r} is not a ${{VAR}} reference"
            for password in URL_WITH_PASSWORD.findall(value):
                assert VAR_REF.match(password), f"{name}.{key} has a literal password in its URL"
    raw = COMPOSE.read_text()     # anchors included: no KEY: literal for a secret-named key
    assert not re.search(r"(?m)^\s*[A-Z_]*(PASSWORD|TOKEN)[A-Z_]*\s*[:=]\s*['\"]?[^$\s'\"{]", raw)


def test_compose_storage_url_points_at_postgres_service(compose: dict[str, Any]) -> None:
    for name in ("ray-head", "dashboard", "tuner"):
        url = _env(compose["services"][name])["TUNER_STORAGE"]
        assert url.startswith("postgresql+psycopg://tuner:${POSTGRES_PASSWORD")
        assert url.endswith("@postgres:5432/tuner")
    assert "TUNER_STORAGE" not in _env(compose["services"]["ray-worker"])
    pg = compose["services"]["postgres"]
    assert _env(pg)["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert "ports" not in pg and pg["healthcheck"]["test"] and pg["volumes"]


def test_compose_reserves_gpus_for_the_ray_worker(compose: dict[str, Any]) -> None:
    devices = compose["services"]["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "--address=ray-head:6379" in compose["services"]["ray-worker"]["command"]


def test_compose_turns_on_ray_token_auth(compose: dict[str, Any]) -> None:
    for name in RAY_SERVICES:
        env = _env(compose["services"][name])
        assert env.get("RAY_AUTH_MODE") == "token", name
        assert env.get("RAY_AUTH_TOKEN", "").startswith("${RAY_AUTH_TOKEN:?"), name
    assert "RAY_AUTH_TOKEN" not in _env(compose["services"]["dashboard"])   # reads the DB only


def test_compose_services_run_tuner(compose: dict[str, Any]) -> None:
    services = compose["services"]
    head = shlex.split(services["ray-head"]["command"])
    assert head[:4] == ["ray", "start", "--head", "--block"]
    assert "--ray-client-server-port=10001" in head and "--dashboard-port=8265" in head
    assert services["dashboard"]["command"] == [
        "tuner", "dashboard", "--host", "0.0.0.0", "--port", "8501"]
    assert services["tuner"]["entrypoint"] == ["tuner"] and services["tuner"]["profiles"] == ["cli"]
    assert services["ray-head"]["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert services["ray-head"]["image"] == f"${{TUNER_IMAGE:-tuner:ray{RAY_VERSION}}}"


def test_env_example_lists_every_required_variable_without_values(compose: dict[str, Any]) -> None:
    example = dict(line.split("=", 1) for line in (DEPLOY / ".env.example").read_text().splitlines()
                   if line.strip() and not line.startswith("#"))
    required = set(re.findall(r"\$\{([A-Z_]+):\?", COMPOSE.read_text()))
    assert required == {"POSTGRES_PASSWORD", "RAY_AUTH_TOKEN"}
    for var in required:
        assert example[var] == "", f"deploy/.env.example must leave {var} empty"
    assert example["TUNER_IMAGE"] == f"tuner:ray{RAY_VERSION}"
    assert ".env" in (DEPLOY / ".gitignore").read_text().split()


def test_docker_compose_config_accepts_the_file(tmp_path: Path) -> None:
    probe = _docker("compose", "version")
    if probe is None or probe.returncode != 0:
        pytest.skip("no `docker compose` (Docker CLI with the Compose v2 plugin) on this machine; "
                    "the structural compose tests above still ran")
    env_file = tmp_path / "test.env"
    env_file.write_text("POSTGRES_PASSWORD=test-password\nRAY_AUTH_TOKEN=test-token\n")
    clean_env = {k: v for k, v in os.environ.items()
                 if k not in ("POSTGRES_PASSWORD", "RAY_AUTH_TOKEN", "TUNER_IMAGE")}
    run = subprocess.run(["docker", "compose", "-f", str(COMPOSE), "--env-file", str(env_file),
                          "--profile", "cli", "config", "--format", "json"],
                         capture_output=True, text=True, timeout=60, env=clean_env, check=False)
    assert run.returncode == 0, run.stderr
    resolved = json.loads(run.stdout)
    for name, service in resolved["services"].items():
        for port in service.get("ports", []):
            assert port["host_ip"] == "127.0.0.1", name
    assert resolved["services"]["ray-head"]["environment"]["RAY_AUTH_TOKEN"] == "test-token"
    missing = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "--env-file", "/dev/null", "config"],
        capture_output=True, text=True, timeout=60, env=clean_env, check=False)
    assert missing.returncode != 0 and "deploy/.env" in missing.stderr


def test_compose_v1_accepts_the_files(tmp_path: Path) -> None:
    """Compose v1 (docker-compose 1.29, Python) is stricter than v2: no top-level `name:`, and
    it rejects keys v2 added. Both files resolve with it; the test stack needs no v2 feature."""
    if shutil.which("docker-compose") is None:
        pytest.skip("no docker-compose (Compose v1) on this machine: apt-get install docker-compose")
    env_file = tmp_path / "test.env"
    env_file.write_text("POSTGRES_PASSWORD=test-password\nRAY_AUTH_TOKEN=test-token\n")
    clean_env = {k: v for k, v in os.environ.items()
                 if k not in ("POSTGRES_PASSWORD", "RAY_AUTH_TOKEN", "TUNER_IMAGE")}
    for files in ([COMPOSE], [COMPOSE, DEPLOY / "local" / "compose.host.yaml"]):
        args = [a for f in files for a in ("-f", str(f))]
        run = subprocess.run(["docker-compose", *args, "--env-file", str(env_file), "config"],
                             capture_output=True, text=True, timeout=60, env=clean_env,
                             check=False)
        assert run.returncode == 0, run.stderr
        resolved = yaml.safe_load(run.stdout)
        assert resolved["services"]["ray-head"]["environment"]["RAY_AUTH_TOKEN"] == "test-token"
    empty = tmp_path / "empty.env"
    empty.write_text("")
    missing = subprocess.run(["docker-compose", "-f", str(COMPOSE), "--env-file", str(empty),
                              "config"], capture_output=True, text=True, timeout=60,
                             env=clean_env, check=False)
    assert missing.returncode != 0 and "deploy/.env" in missing.stderr


def test_compose_test_stack_override_keeps_everything_on_loopback() -> None:
    """deploy/local/compose.host.yaml: one namespace with only loopback (network_mode none,
    joined by every service), services bound to 127.0.0.1, CPU workers, no credentials."""
    override = yaml.safe_load((DEPLOY / "local" / "compose.host.yaml").read_text())
    services = override["services"]
    assert services["netns"]["network_mode"] == "none"
    assert "ports" not in services["netns"]
    for name, service in services.items():
        if name != "netns":
            assert service["network_mode"] == "service:netns", name
            assert "ports" not in service and "extra_hosts" not in service, name
    assert services["postgres"]["command"][-1] == "listen_addresses=127.0.0.1"
    assert "--dashboard-host=127.0.0.1" in services["ray-head"]["command"]
    assert services["dashboard"]["command"][2:4] == ["--host", "127.0.0.1"]
    worker = services["ray-cpu-worker"]
    assert "deploy" not in worker and "--num-gpus=0" in worker["command"][-1]
    assert _env(worker)["RAY_AUTH_MODE"] == "token"
    assert _env(worker)["RAY_AUTH_TOKEN"].startswith("${RAY_AUTH_TOKEN:?")
    for key, value in _env(worker).items():
        assert not SECRET_NAME.search(key) or VAR_REF.match(value) or key == "RAY_AUTH_MODE"
    assert "name" not in override
    assert not re.search(r"(?m)^[^#]*!reset", (DEPLOY / "local" / "compose.host.yaml").read_text())


# ---------------------------------------------------------------------------------- Dockerfile
def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_builds_on_rays_gpu_image_of_the_installed_ray() -> None:
    steps = _instructions()
    args = dict(a.split("=", 1) for kind, a in steps if kind == "ARG" and "=" in a)
    assert args["RAY_VERSION"] == RAY_VERSION, "the image's Ray must equal the installed ray"
    froms = [rest for kind, rest in steps if kind == "FROM"]
    assert len(froms) == 1
    base = froms[0]
    while "${" in base:  # FROM ${BASE_IMAGE}, whose default names the other ARGs
        base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    assert froms[0] == "${BASE_IMAGE}"  # deploy/local/ builds on a Debian base for CPU tests
    assert base == f"rayproject/ray:{RAY_VERSION}-py311-gpu"


def test_dockerfile_installs_torch_then_the_project_as_non_root() -> None:
    steps = _instructions()
    runs = [rest for kind, rest in steps if kind == "RUN"]
    torch_at = next(i for i, r in enumerate(runs) if "torch==" in r)
    deps_at = next(i for i, r in enumerate(runs) if "tuner-requirements.txt" in r)
    project_at = next(i for i, r in enumerate(runs) if '".[dashboard]"' in r)
    assert torch_at < deps_at < project_at
    # the dependencies pin ray to the base image's; the project itself installs nothing more
    assert '"ray[default]==${RAY_VERSION}"' in runs[deps_at]
    assert "--no-deps" in runs[project_at]
    for run in runs:  # pip's configuration only as BuildKit secrets, never a layer
        assert "pip.conf" not in run or "--mount=type=secret,id=pip.conf" in run
    users = [rest for kind, rest in steps if kind == "USER"]
    assert users and users[-1] not in ("root", "0", "0:0")
    for kind, rest in steps:
        if kind in ("ENV", "ARG"):
            name = rest.split("=", 1)[0]
            assert not SECRET_NAME.search(name), f"{kind} {rest}: no secrets in the image"
        if kind == "COPY":
            assert ".env" not in rest


def _dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    """Docker's rule, simplified: the last matching pattern wins; `!` re-includes; a pattern that
    matches a parent directory matches what is under it; `**` spans directories."""
    def regex(pattern: str) -> re.Pattern[str]:
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            else:
                out += {"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i]))
                i += 1
        return re.compile(out)

    parts = path.split("/")
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        rx = regex(raw.lstrip("!").strip("/"))
        if any(rx.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            excluded = not negate
    return excluded


def test_dockerignore_ships_the_project_and_nothing_private() -> None:
    lines = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for private in (".venv/bin/python", ".git/HEAD", "tuner.db", "tuner.db-wal", "deploy/.env",
                    "tuner/__pycache__/x.pyc", "tests/test_deploy.py", "benchmarks/results/a.md"):
        assert _dockerignore_excludes(private, patterns), f"{private} would be in the build context"
    for needed in ("pyproject.toml", "README.md", "tuner/__init__.py", "tuner/cli/_app.py",
                   "search_spaces/quickstart.yaml", "search_spaces/__init__.py", "dashboard/app.py",
                   "dashboard/views/study.py"):
        assert not _dockerignore_excludes(needed, patterns), f"{needed} would miss from the build"


def test_docker_build_check_accepts_the_dockerfile() -> None:
    info = _docker("info", timeout=20)
    if info is None or info.returncode != 0:
        pytest.skip("no reachable Docker daemon: `docker build --check` needs one; "
                    "the Dockerfile's structure was checked above")
    buildx = _docker("buildx", "version", timeout=20)
    if buildx is None or buildx.returncode != 0:
        pytest.skip("`docker build --check` needs the buildx plugin, which this docker CLI lacks; "
                    "tests/test_compose_stack.py builds the Dockerfile for real")
    run = _docker("build", "--check", "-f", str(DOCKERFILE), str(REPO), timeout=300)
    assert run is not None and run.returncode == 0, run.stderr if run else "timed out"


# ---------------------------------------------------------------------------------- KubeRay
def _validator(schema: dict[str, Any], definition: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{definition}"})


def _id(value: Any) -> str:
    return value if isinstance(value, str) else value.get("kind", "")


@pytest.mark.parametrize(("name", "doc"), _manifests(), ids=_id)
def test_manifest_validates_against_the_kuberay_and_kubernetes_schema(
        name: str, doc: dict[str, Any], schema: dict[str, Any]) -> None:
    assert doc["kind"] in SCHEMA_OF_KIND, f"{name}: unexpected kind {doc['kind']}"
    errors = sorted(_validator(schema, SCHEMA_OF_KIND[doc["kind"]]).iter_errors(doc),
                    key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{name}: {'.'.join(map(str, e.path))}: {e.message}"
                                 for e in errors)


def test_schema_rejects_what_the_api_server_would(schema: dict[str, Any]) -> None:
    """The vendored schema is strict: a misspelt field or a non-string rayStartParam fails."""
    doc = _docs(KUBERAY / "raycluster.yaml")[0]
    doc["spec"]["workerGroupSpecs"][0]["rayStartParams"]["num-gpus"] = 1
    doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resource"] = {}
    doc["spec"]["authOptions"]["mode"] = "tokens"
    messages = [e.message for e in _validator(schema, "kuberay.RayCluster").iter_errors(doc)]
    assert len(messages) == 3, messages


@pytest.mark.parametrize(("name", "spec"), _cluster_specs(), ids=_id)
def test_cluster_turns_on_token_auth_with_the_installed_ray(
        name: str, spec: dict[str, Any]) -> None:
    assert spec["rayVersion"] == RAY_VERSION
    assert tuple(map(int, RAY_VERSION.split(".")[:2])) >= (2, 52), "token auth needs Ray >= 2.52"
    assert spec["authOptions"] == {"mode": "token", "secretName": "tuner-ray-auth"}
    example = {d["metadata"]["name"]: d for d in _docs(KUBERAY / "secret.example.yaml")}
    assert "auth_token" in example["tuner-ray-auth"]["stringData"]


@pytest.mark.parametrize(("name", "spec"), _cluster_specs(), ids=_id)
def test_cluster_has_a_gpu_worker_group_and_a_private_head(name: str, spec: dict[str, Any]) -> None:
    gpu_groups = []
    for group in spec["workerGroupSpecs"]:
        for container in group["template"]["spec"]["containers"]:
            gpus = container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
            if gpus:
                assert int(gpus) >= 1
                assert group["rayStartParams"].get("num-gpus") == str(gpus), "num-gpus != GPU limit"
                gpu_groups.append(group["groupName"])
    assert gpu_groups, f"{name}: no worker group requests nvidia.com/gpu"
    head = spec["headGroupSpec"]
    assert head.get("serviceType", "ClusterIP") == "ClusterIP"
    assert not head.get("enableIngress", False)
    assert head.get("headService", {}).get("spec", {}).get("type", "ClusterIP") == "ClusterIP"
    assert head["rayStartParams"]["num-gpus"] == "0" and head["rayStartParams"]["num-cpus"] == "0"


def test_rayjob_cluster_is_the_raycluster() -> None:
    cluster = _docs(KUBERAY / "raycluster.yaml")[0]["spec"]
    job = _docs(KUBERAY / "rayjob.yaml")[0]["spec"]["rayClusterSpec"]
    assert job == cluster, "rayjob.yaml's rayClusterSpec drifted from raycluster.yaml's spec"


def test_no_service_exposes_anything_outside_the_cluster() -> None:
    for name, doc in _manifests():
        assert doc["kind"] not in ("Ingress", "Route", "Gateway"), name
        if doc["kind"] == "Service":
            kind = doc["spec"].get("type", "ClusterIP")
            assert kind == "ClusterIP", f"{name}: Service of type {kind}"
            assert not {8265, 10001, 6379} & {p["port"] for p in doc["spec"]["ports"]}
        for pod in _pod_specs(doc):
            assert not pod.get("hostNetwork"), name
            for container in pod["containers"]:
                assert all("hostPort" not in p for p in container.get("ports", [])), name


def test_credentials_come_from_secrets_via_secret_key_ref() -> None:
    storage_refs = 0
    for name, doc in _manifests(examples=False):
        assert doc["kind"] != "Secret", f"{name}: Secrets are never committed (see the example)"
        assert not URL_WITH_PASSWORD.search(yaml.safe_dump(doc)), f"{name}: a URL with a password"
        for container in _containers(doc):
            for env in container.get("env", []):
                if SECRET_NAME.search(env["name"]) or env["name"] == "TUNER_STORAGE":
                    assert "value" not in env, f"{name}: {env['name']} needs a secretKeyRef"
                    assert "secretKeyRef" in env["valueFrom"], f"{name}: {env['name']}"
                    storage_refs += env["name"] == "TUNER_STORAGE"
    assert storage_refs == 3      # RayCluster head, RayJob head, dashboard
    for doc in _docs(KUBERAY / "secret.example.yaml"):
        assert all("REPLACE_ME" in v for v in doc["stringData"].values()), "placeholders only"
    assert "kuberay/secret.yaml" in (DEPLOY / ".gitignore").read_text()


def test_images_carry_the_installed_ray_version() -> None:
    images = [c["image"] for _, doc in _manifests() for c in _containers(doc)]
    assert images and all(image.endswith(f":ray{RAY_VERSION}") for image in images), images


def test_rayjob_submits_a_shipped_gpu_spec_to_its_own_cluster() -> None:
    job = _docs(KUBERAY / "rayjob.yaml")[0]["spec"]
    argv = shlex.split(job["entrypoint"])
    assert argv[:2] == ["tuner", "submit"] and argv[2].startswith("/specs/")
    assert argv[argv.index("--address") + 1] == "auto"
    head = job["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in head["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v for v in head["volumes"]}
    assert mounts["specs"] == "/specs"
    configmap = _docs(KUBERAY / "specs-configmap.yaml")[0]
    assert volumes["specs"]["configMap"]["name"] == configmap["metadata"]["name"]
    text = configmap["data"][argv[2].removeprefix("/specs/")]
    spec = tuner.load_spec(yaml.safe_load(text))
    gpus_per_worker = max(int(c["resources"]["limits"]["nvidia.com/gpu"])
                          for g in job["rayClusterSpec"]["workerGroupSpecs"]
                          for c in g["template"]["spec"]["containers"])
    assert 0 < spec.resources.gpus_per_trial <= gpus_per_worker
