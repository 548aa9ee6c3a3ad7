"""deploy/ for real: the CPU images build, the compose stack runs a detached study end to end.

deploy/local/build-images.sh builds the images from Debian's packages and PyPI (no image
registry): a debootstrapped Debian, PostgreSQL from Debian's package, and deploy/Dockerfile on the
Debian base with CPU torch and the installed ray. deploy/compose.yaml with the override
deploy/local/compose.host.yaml then runs PostgreSQL, the Ray head, two CPU Ray workers and the
tuner dashboard in one network namespace whose only interface is loopback (why not the host's
network: compose.host.yaml), with Ray token auth on.

This machine's tuner, run in that namespace (nsenter), sees the stack as a laptop sees it through
an SSH tunnel: ``tuner submit SPEC --detach --address http://127.0.0.1:8265`` (the Ray token and
the database URL in the environment), ``tuner status`` / ``tuner logs`` until the job ends, a
worker container killed with ``docker kill`` mid-study; then the study is checked in the stack's
PostgreSQL and shown by the dashboard container to headless Chromium; every listener of the
stack is on 127.0.0.1 and none on this machine's network; ``down -v`` leaves no container,
volume, process or listener.

Skipped, with the reason, where Docker (a CLI, a daemon, Compose) is not there; .ci/run installs
docker.io, debootstrap and docker-compose and starts dockerd. TUNER_TEST_COMPOSE picks the
Compose command (default: ``docker-compose`` (v1), else ``docker compose`` (v2)).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

import tuner

REPO = Path(__file__).resolve().parents[1]
LOCAL = REPO / "deploy" / "local"
RAY_VERSION = version("ray")
TUNER_IMAGE = f"tuner:ray{RAY_VERSION}-cpu"
POSTGRES_IMAGE = "tuner-postgres:15-bookworm"
SERVICES = ("postgres", "ray-head", "ray-cpu-worker", "dashboard")
WORKERS = 2
TRIALS = 24
HEX64 = re.compile(r"[0-9a-f]{64}")
DIED = re.compile(r"worker (w\d+) died \(\w+\); trial (\S+) re-queued")

pytestmark = pytest.mark.timeout(1800)  # a cold image build is most of it


# ---------------------------------------------------------------------------------- Docker
def _run(cmd: list[str], timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)


def _docker_cli() -> str | None:
    """A docker CLI that talks to the daemon. Debian's /usr/bin/docker first: a newer CLI
    elsewhere on PATH without the buildx plugin cannot do BuildKit builds."""
    for cli in ("/usr/bin/docker", shutil.which("docker")):
        if cli and Path(cli).exists():
            return cli
    return None


def _compose_cmd(docker: str) -> list[str] | None:
    wanted = os.environ.get("TUNER_TEST_COMPOSE")
    candidates = [shlex.split(wanted)] if wanted else [["docker-compose"], [docker, "compose"]]
    for cmd in candidates:
        if shutil.which(cmd[0]) or Path(cmd[0]).exists():
            probe = _run([*cmd, "version"], timeout=30)
            if probe.returncode == 0:
                return cmd
    return None


def _why_no_docker() -> str | None:
    if os.environ.get("TUNER_TEST_DOCKER_STACK") != "1":
        # Off by default: a cold image build is ~10 min on 2 cores, which CI's 20-minute budget
        # cannot hold beside the rest of the suite.
        return ("set TUNER_TEST_DOCKER_STACK=1 to build the images and run the stack "
                "(deploy/README.md, 'Tested for real')")
    docker = _docker_cli()
    if docker is None:
        return "no docker CLI (apt-get install docker.io, then start dockerd)"
    try:
        info = _run([docker, "info", "--format", "{{.ServerVersion}}"], timeout=20)
    except subprocess.TimeoutExpired:
        return "the Docker daemon did not answer `docker info` within 20 s"
    if info.returncode != 0 or not info.stdout.strip():
        return f"no reachable Docker daemon ({(info.stderr.strip().splitlines() or ['?'])[-1]})"
    if _compose_cmd(docker) is None:
        return "no Docker Compose (apt-get install docker-compose, or the Compose v2 plugin)"
    have = _run([docker, "image", "inspect", "tuner-debian:bookworm"], timeout=20).returncode == 0
    if not have and not (shutil.which("debootstrap") or shutil.which("mmdebstrap")):
        return "no debootstrap to build the Debian base image (apt-get install debootstrap)"
    if os.geteuid() != 0 or not (shutil.which("nsenter") and shutil.which("ip")):
        return ("needs root, nsenter and ip (to build the Debian base and enter and inspect the "
                "stack's network namespace)")
    return None


WHY = _why_no_docker()
if WHY:
    pytest.skip(f"compose stack not run: {WHY}", allow_module_level=True)
DOCKER = _docker_cli() or "docker"
COMPOSE = _compose_cmd(DOCKER) or []


# ---------------------------------------------------------------------------------- listeners
def _proc_addr(hex_addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw[::-1])
    return ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))


def _tcp_listeners(pid: str = "self") -> dict[int, list[tuple[str, int]]]:
    """Listening TCP sockets of the network namespace of process ``pid``:
    socket inode -> [(address, port)]."""
    out: dict[int, list[tuple[str, int]]] = {}
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            parts = line.split()
            if parts[3] == "0A":  # LISTEN
                addr, port = parts[1].split(":")
                out.setdefault(int(parts[9]), []).append((str(_proc_addr(addr)), int(port, 16)))
    return out


def _is_loopback(addr: str) -> bool:
    ip = ipaddress.ip_address(addr)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def _container_processes(ids: set[str]) -> list[str]:
    """PIDs (of this machine) of the processes that run in the containers ``ids``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                match = HEX64.search((proc / "cgroup").read_text())
            except OSError:
                continue
            if match and match.group(0) in ids:
                pids.append(proc.name)
    return pids


def _socket_inodes(pids: list[str]) -> set[int]:
    out = set()
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                out.add(int(target[8:-1]))
    return out


# ---------------------------------------------------------------------------------- the stack
@dataclass
class Stack:
    project: str
    file: Path
    password: str
    token: str
    timings: dict[str, float] = field(default_factory=dict)
    netns_pid: str = ""

    storage = property(lambda self: f"postgresql+psycopg://tuner:{self.password}@127.0.0.1:5432/tuner")
    ray_address = "http://127.0.0.1:8265"
    dashboard = "http://127.0.0.1:8501"

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return _run([*COMPOSE, "-p", self.project, "-f", str(self.file), *args],
                    timeout=timeout, cwd=REPO)

    def containers(self, service: str | None = None, *, all: bool = False) -> list[str]:
        args = [DOCKER, "ps", "-q", "--no-trunc", *(["-a"] if all else []),
                "--filter", f"label=com.docker.compose.project={self.project}"]
        if service:
            args += ["--filter", f"label=com.docker.compose.service={service}"]
        return _run(args, timeout=60).stdout.split()

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "40", timeout=120).stdout[-6000:]

    def inside(self, *cmd: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """A command of this machine, run in the stack's network namespace: there
        127.0.0.1:8265 is Ray's job API and 127.0.0.1:8501 the dashboard, as an SSH tunnel gives
        them to a laptop. The stack's database and the Ray token come from the environment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "TUNER_"))}
        env.update(TUNER_STORAGE=self.storage, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=self.token,
                   RAY_USAGE_STATS_ENABLED="0", PYTHONUNBUFFERED="1")
        return _run(["nsenter", f"--net=/proc/{self.netns_pid}/ns/net", "--", *cmd],
                    timeout=timeout, env=env)

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return self.inside(sys.executable, "-m", "tuner", *args, timeout=timeout)

    def python(self, code: str, *args: str) -> Any:
        """Run ``code`` (which prints one JSON document) in the stack's namespace."""
        result = self.inside(sys.executable, "-c", code, *args)
        assert result.returncode == 0, result.stderr[-3000:]
        return json.loads(result.stdout.strip().splitlines()[-1])


_RAY_NODES = """
import json, os, sys, urllib.request
req = urllib.request.Request("http://127.0.0.1:8265/api/v0/nodes?limit=100",
                             headers={"Authorization": "Bearer " + os.environ["RAY_AUTH_TOKEN"]})
print(json.dumps(json.load(urllib.request.urlopen(req, timeout=10))["data"]["result"]["result"]))
"""

_RAY_ACTORS = _RAY_NODES.replace("/nodes?", "/actors?")


def _node_ids(container: str) -> set[str]:
    """The Ray node ids a worker container has had (its session directory names files by them;
    a restarted container keeps the old one's files)."""
    out = _run([DOCKER, "exec", container, "ls", "/tmp/ray/session_latest"]).stdout
    return {m.group(1) for m in re.finditer(r"^metrics_export_port_([0-9a-f]{56})$", out, re.M)}


_TRIALS = """
import json, os, sys, tuner
study = tuner.load_study(sys.argv[1], os.environ["TUNER_STORAGE"])
node = {t.number: t.user_attrs.get("ray_node") for t in study.to_optuna().trials}
print(json.dumps({"counts": study.counts(), "best": study.best_trial.value, "trials": [
    {"number": t.number, "state": t.state, "value": t.value, "reason": t.reason,
     "params": t.params, "node": node.get(t.number)} for t in study.trials()]}))
"""

_BROWSER = """
import json, re, sys
from playwright.sync_api import sync_playwright
chromium, base, name = sys.argv[1:4]
with sync_playwright() as p:
    browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(60_000)
    page.goto(base)
    link = page.get_by_role("link", name=re.compile(re.escape(name))).first
    link.wait_for()
    link.click()
    page.get_by_text("Optimization history").first.wait_for()
    metric = page.get_by_test_id("stMetric").filter(has_text="best value").inner_text()
    print(json.dumps({"url": page.url, "metric": metric,
                      "exceptions": page.get_by_test_id("stException").count(),
                      "body": page.locator("body").inner_text()}))
    browser.close()
"""


def _wait(what: str, cond: Any, stack: Stack, timeout: float = 300, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = cond()
        except (OSError, ValueError, KeyError, AssertionError, subprocess.TimeoutExpired):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; stack logs:\n{stack.logs()}")
        time.sleep(every)


def _resolved_stack_file(project: str, env_file: Path, out: Path) -> None:
    """compose.yaml + compose.host.yaml, resolved by Compose itself (`config`), without the
    `ports:` of the services that join the stack's namespace (see compose.host.yaml)."""
    cmd = [*COMPOSE, "-p", project, "-f", str(REPO / "deploy" / "compose.yaml"),
           "-f", str(LOCAL / "compose.host.yaml"), "--env-file", str(env_file), "config"]
    resolved = _run(cmd, timeout=120, cwd=REPO)
    assert resolved.returncode == 0, resolved.stderr
    config = yaml.safe_load(resolved.stdout)
    for name, service in config["services"].items():
        if str(service.get("network_mode", "")).startswith("service:"):
            for port in service.pop("ports", []):  # compose.yaml's, all on 127.0.0.1
                assert str(port.get("host_ip", port) if isinstance(port, dict) else port
                           ).startswith("127.0.0.1"), (name, port)
        else:
            assert name == "netns" and service["network_mode"] == "none", name
    out.touch(mode=0o600)  # it holds the resolved credentials
    out.write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("stack")
    timings: dict[str, float] = {}
    started = time.monotonic()
    build = _run(["bash", str(LOCAL / "build-images.sh")], timeout=1500,
                 env=dict(os.environ, DOCKER=DOCKER, TUNER_IMAGE=TUNER_IMAGE,
                          POSTGRES_IMAGE=POSTGRES_IMAGE))
    assert build.returncode == 0, f"deploy/local/build-images.sh failed:\n{build.stderr[-4000:]}"
    timings["build"] = time.monotonic() - started
    for line in build.stdout.splitlines():
        if line.startswith("timing "):
            _, step, seconds = line.split()
            timings[f"build.{step}"] = float(seconds)

    password, token = secrets.token_hex(24), secrets.token_hex(32)
    env_file = tmp / "stack.env"
    env_file.touch(mode=0o600)
    env_file.write_text(f"POSTGRES_PASSWORD={password}\nRAY_AUTH_TOKEN={token}\n"
                        f"TUNER_IMAGE={TUNER_IMAGE}\nPOSTGRES_IMAGE={POSTGRES_IMAGE}\n")
    project = f"tunertest{secrets.token_hex(4)}"
    _resolved_stack_file(project, env_file, tmp / "stack.yaml")
    st = Stack(project, tmp / "stack.yaml", password, token, timings)
    try:
        started = time.monotonic()
        up = st.compose("up", "-d", "--scale", f"ray-cpu-worker={WORKERS}", *SERVICES,
                        timeout=600)
        assert up.returncode == 0, f"compose up failed:\n{up.stderr[-3000:]}\n{st.logs()}"
        netns = st.containers("netns")
        assert len(netns) == 1
        st.netns_pid = _run([DOCKER, "inspect", "-f", "{{.State.Pid}}", netns[0]]).stdout.strip()
        alive = lambda: [n for n in st.python(_RAY_NODES) if n["state"] == "ALIVE"]  # noqa: E731
        # up to 10 min: on an overloaded machine the head can miss Ray's fixed 30 s start-up wait
        # and is restarted by its policy, and the workers with it
        _wait(f"the head and {WORKERS} workers in Ray", lambda: len(alive()) == 1 + WORKERS, st,
              timeout=600)
        _wait("the tuner dashboard", lambda: st.inside(
            "python3", "-c", "import urllib.request; urllib.request.urlopen("
            "'http://127.0.0.1:8501/_stcore/health', timeout=3)").returncode == 0, st)
        timings["up"] = time.monotonic() - started
        yield st
    finally:
        st.compose("down", "-v", "--remove-orphans", "--timeout", "10", timeout=300)
        print("compose stack timings (s):",
              json.dumps({k: round(v, 1) for k, v in timings.items()}))


# ---------------------------------------------------------------------------------- the study
def _spec(name: str) -> dict[str, Any]:
    return {
        "study": name, "trainable": "builtin:mlp",
        "dataset": {"name": "digits", "validation_fraction": 0.2, "normalize": "zscore"},
        "objective": {"metric": "val_accuracy", "direction": "maximize"},
        "sampler": {"kind": "random", "seed": 0}, "pruner": {"kind": "none"},
        "trials": TRIALS, "epochs": 20, "seed": 0,
        "resources": {"workers": WORKERS, "cpus_per_trial": 1, "gpus_per_trial": 0},
        "params": {"lr": {"type": "float", "low": 1e-3, "high": 0.1, "scale": "log"},
                   "dropout": {"type": "float", "low": 0.0, "high": 0.3}},
        "fixed": {"optimizer": "sgd", "momentum": 0.9, "batch_size": 16, "layers": 2,
                  "hidden_units": 128, "activation": "relu"},
    }


def _status(stack: Stack, name: str) -> dict[str, Any] | None:
    result = stack.cli("status", "--format", "json", "--address", stack.ray_address)
    assert result.returncode == 0, result.stderr
    rows = [r for r in json.loads(result.stdout) if r["name"] == name]
    return rows[0] if rows else None


@dataclass
class Run:
    name: str
    job_id: str
    final: dict[str, Any]
    logs: str
    killed: str
    seen: list[dict[str, Any]]
    killed_node: str
    deaths: list[re.Match[str]]


@pytest.fixture(scope="module")
def study_run(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """A detached study on the stack, one worker container killed in the middle of it."""
    name = f"compose-{secrets.token_hex(3)}"
    path = tmp_path_factory.mktemp("spec") / "spec.yaml"
    path.write_text(yaml.safe_dump(_spec(name)))
    started = time.monotonic()
    submit = stack.cli("submit", str(path), "--detach", "--address", stack.ray_address)
    assert submit.returncode == 0, submit.stdout + submit.stderr
    job_id = submit.stdout.strip()
    assert job_id.startswith(f"tuner-{name}-"), submit.stdout
    seen: list[dict[str, Any]] = []

    def busy() -> bool:
        """Mid-study, both workers busy: each worker container holds one running trial."""
        row = _status(stack, name)
        if row:
            seen.append(row)
        return bool(row and row["complete"] >= 3 and row["running"] == WORKERS)

    def death() -> re.Match[str] | bool | None:
        """The driver's line for a dead worker (or the job's end)."""
        out = stack.cli("logs", name, "--address", stack.ray_address).stdout
        found = list(DIED.finditer(out))
        if len(found) > len(deaths):
            return found[len(deaths)]
        row = _status(stack, name)
        return bool(row and row.get("job_status") in ("SUCCEEDED", "FAILED", "STOPPED"))

    # Kill a worker container in the middle of a trial. Its trial is failed (worker_lost) and
    # re-queued; the other worker carries on. The operator then starts the container again
    # (Docker's restart policy would after a crash; `docker kill` is a manual stop): tuner's driver
    # waits for the replacement worker it asked Ray for, which needs a free CPU (deploy/README.md,
    # "What the stack test found"). A kill that lands between two trials loses none; then again.
    deaths: list[re.Match[str]] = []
    victim, workers = "", {}
    for _ in range(3):
        _wait("both workers running trials", busy, stack, timeout=600, every=0.2)
        # The victim: a worker whose Ray node does not hold the study's coordinator actor (tuner
        # asks Ray to place it beside the driver, on the head, but only softly; a node that takes
        # the coordinator with it stops the study, for `tuner resume`: not this test's case).
        actors = stack.python(_RAY_ACTORS)
        coordinator = [a["node_id"] for a in actors
                       if a["class_name"] == "Coordinator" and a["state"] == "ALIVE"]
        assert len(coordinator) == 1, actors
        alive = {n["node_id"] for n in stack.python(_RAY_NODES) if n["state"] == "ALIVE"}
        workers = {c: _node_ids(c) & alive for c in stack.containers("ray-cpu-worker")}
        assert all(len(ids) == 1 for ids in workers.values()), (workers, alive)
        workers = {c: ids.pop() for c, ids in workers.items()}
        victim = next(c for c, node in workers.items() if node != coordinator[0])
        kill = _run([DOCKER, "kill", victim], timeout=60)
        assert kill.returncode == 0, kill.stderr
        died = _wait("the driver to see its worker die", death, stack, timeout=300, every=1.0)
        start = _run([DOCKER, "start", victim], timeout=120)
        assert start.returncode == 0, start.stderr
        if not isinstance(died, re.Match):
            break  # the study ended first
        deaths.append(died)
        if died.group(2) != "None":
            break  # a running trial was lost and re-queued
        _wait("the restarted worker in Ray", lambda: sum(
            n["state"] == "ALIVE" for n in stack.python(_RAY_NODES)) == 1 + WORKERS, stack)

    def ended() -> dict[str, Any] | None:
        row = _status(stack, name)
        if row:
            seen.append(row)
        return row if row and row.get("job_status") in ("SUCCEEDED", "FAILED", "STOPPED") else None
    final = _wait("the detached study to end", ended, stack, timeout=900, every=2.0)
    stack.timings["study"] = time.monotonic() - started
    logs = stack.cli("logs", name, "--address", stack.ray_address)
    assert logs.returncode == 0, logs.stderr
    return Run(name, job_id, final, logs.stdout, victim, seen, workers[victim], deaths)


def test_stack_listens_on_loopback_only(stack: Stack) -> None:
    ids = set(stack.containers())
    assert len(ids) == len(SERVICES) + WORKERS  # netns, postgres, head, dashboard + workers
    # The stack's namespace has loopback as its only interface ...
    interfaces = {line.split(":")[0].strip() for line in
                  Path(f"/proc/{stack.netns_pid}/net/dev").read_text().splitlines()[2:]}
    assert interfaces == {"lo"}
    # with loopback addresses only (127.0.0.0/8, ::1) ...
    addrs = json.loads(stack.inside("ip", "-j", "addr").stdout)
    assert [a["local"] for i in addrs for a in i.get("addr_info", [])
            if not _is_loopback(a["local"])] == [], addrs
    # ... the services are bound to 127.0.0.1 explicitly, and every other listener (a Ray
    # worker node's, on its own 127.x.y.z, or on the wildcard, which there is loopback alone)
    # to nothing but loopback.
    inside = [entry for entries in _tcp_listeners(stack.netns_pid).values() for entry in entries]
    for port in (5432, 6379, 8265, 10001, 8501):
        assert {a for a, p in inside if p == port} == {"127.0.0.1"}, (port, inside)
    assert [e for e in inside if not (_is_loopback(e[0]) or e[0] in ("0.0.0.0", "::"))] == []
    # No process of the stack listens in this machine's own namespace,
    mine = _socket_inodes(_container_processes(ids))
    assert mine  # (the stack's processes were found)
    assert not mine & set(_tcp_listeners()), "a stack process listens on the host's network"
    # and Docker made no network for it: no bridge, no private-range address.
    nets = _run([DOCKER, "network", "ls", "-q", "--filter",
                 f"label=com.docker.compose.project={stack.project}"]).stdout.split()
    assert nets == []
    modes = _run([DOCKER, "inspect", "-f", "{{.HostConfig.NetworkMode}}", *ids]).stdout.split()
    assert sorted(set(m.split(":")[0] for m in modes)) == ["container", "none"]


def test_detached_study_completes_exactly_despite_a_killed_worker(
        stack: Stack, study_run: Run) -> None:
    assert any(r.get("job_status") == "RUNNING" for r in study_run.seen)
    assert study_run.final["job"] == study_run.job_id
    assert study_run.final["job_status"] == "SUCCEEDED", study_run.logs[-3000:]
    assert study_run.final["complete"] == TRIALS and study_run.final["running"] == 0
    assert f"study '{study_run.name}': {TRIALS} trials, {WORKERS} workers" in study_run.logs
    assert f"done: {TRIALS} complete" in study_run.logs, study_run.logs[-3000:]

    # In the stack's PostgreSQL: exactly TRIALS complete; the trials the dead worker held are
    # FAIL (worker_lost, not counted) and their params ran again.
    data = stack.python(_TRIALS, study_run.name)
    counts, trials = data["counts"], data["trials"]
    assert counts["COMPLETE"] == TRIALS and counts["RUNNING"] == 0 and counts["WAITING"] == 0, counts
    failed = [t for t in trials if t["state"] == "FAIL"]
    assert failed and all(t["reason"] == "worker_lost" for t in failed), failed
    assert study_run.seen[-1]["failed"] == len(failed)
    lost = {int(d.group(2)) for d in study_run.deaths if d.group(2) != "None"}
    assert lost and lost <= {t["number"] for t in failed}, (lost, failed)
    assert len(trials) == TRIALS + len(failed) == counts["COMPLETE"] + counts["FAIL"]
    done = {json.dumps(t["params"], sort_keys=True) for t in trials if t["state"] == "COMPLETE"}
    for t in failed:
        assert json.dumps(t["params"], sort_keys=True) in done, t
    nodes = {t["node"] for t in trials if t["state"] == "COMPLETE"} - {None}
    assert len(nodes) >= WORKERS  # both worker containers ran trials (a restarted one: a new node)
    assert data["best"] == max(t["value"] for t in trials if t["state"] == "COMPLETE")

    # Ray saw the killed node die; the head, the other worker and the restarted container (a
    # new Ray node) are alive.
    nodes = {n["node_id"]: n["state"] for n in stack.python(_RAY_NODES)}
    assert nodes.pop(study_run.killed_node) == "DEAD"
    assert sorted(nodes.values()) == ["ALIVE"] * (WORKERS + 1)
    assert (_node_ids(study_run.killed) - {study_run.killed_node}) & set(nodes)  # its new node


def test_dashboard_container_serves_the_study_to_chromium(stack: Stack, study_run: Run) -> None:
    chromium = next((p for p in (os.environ.get("TUNER_TEST_CHROMIUM"), shutil.which("chromium"),
                                 "/usr/bin/chromium") if p and Path(p).exists()), None)
    if chromium is None:
        pytest.skip("no Chromium: apt-get install chromium")
    pytest.importorskip("playwright.sync_api", reason="Playwright is not installed")
    best = stack.python(_TRIALS, study_run.name)["best"]
    result = stack.inside(sys.executable, "-c", _BROWSER, chromium, stack.dashboard,
                          study_run.name, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    page = json.loads(result.stdout.strip().splitlines()[-1])
    assert f"study={study_run.name}" in page["url"]
    assert f"{best:.6g}" in page["metric"], page["metric"]
    assert page["exceptions"] == 0 and "Traceback" not in page["body"]
    assert stack.password not in page["body"]


def test_down_removes_everything(stack: Stack, study_run: Run) -> None:
    ids = set(stack.containers(all=True))
    assert ids
    started = time.monotonic()
    down = stack.compose("down", "-v", "--remove-orphans", "--timeout", "10")
    assert down.returncode == 0, down.stderr
    stack.timings["down"] = time.monotonic() - started
    assert stack.containers(all=True) == []
    volumes = _run([DOCKER, "volume", "ls", "-q", "--filter",
                    f"label=com.docker.compose.project={stack.project}"]).stdout.split()
    assert volumes == []
    assert _container_processes(ids) == []  # no process left, hence no listener
    assert not Path(f"/proc/{stack.netns_pid}").exists()  # the namespace went with its holder
