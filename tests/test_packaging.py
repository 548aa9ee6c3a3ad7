"""A wheel built from the checkout works on its own, away from the repository.

The dashboard and the shipped specs are top-level folders of the checkout (``dashboard/``,
``search_spaces/``) that pyproject's ``[tool.setuptools]`` maps into the package as
``tuner._dashboard`` and ``tuner._spaces``; a mistake there shows only once tuner is installed
somewhere else. So the wheel is built from a copy of the checkout (nothing written into the tree
other sessions work in), unpacked into a temporary folder (what ``pip install`` does with a
pure-Python wheel) and run from another folder by ``python -S`` with only that folder and this
venv's site-packages on the path. ``-S`` skips the ``.pth`` files, among them the editable
install's finder, which would otherwise serve ``tuner._dashboard`` and ``tuner._spaces`` from the
checkout and hide a wheel that lacks them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

import tuner
from tests.conftest import REPO, SPACES
from tuner.spec import SAMPLER_KINDS

_INTO_PACKAGE = {"tuner": "tuner", "dashboard": "tuner/_dashboard",
                 "search_spaces": "tuner/_spaces"}
"""Checkout folder -> where its files land in the wheel (pyproject's ``package-dir``)."""

_NOT_COPIED = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".devscratch", "*.db", "*.db-wal", "*.db-shm")
"""What a build does not need: a copy without them takes a fraction of a second."""

_GIVE_UP_S = 90
"""How long the dashboard may take to answer before the test reports it as not starting (a bound
on a wait, not a timing assertion: a busy two-core machine starts Streamlit in seconds)."""


@pytest.fixture(scope="module")
def site() -> Iterator[Path]:
    """The folder the wheel is unpacked into (a short path: ``tuner spaces`` prints it in a table).

    ``--no-build-isolation --no-index``: the build uses this venv's setuptools and never the
    network, which CI and the device machines do not have.
    """
    with tempfile.TemporaryDirectory(prefix="tuner-wheel-") as tmp:
        root = Path(tmp)
        shutil.copytree(REPO, root / "src", ignore=_NOT_COPIED)
        build = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
             "--no-index", "-q", "-w", str(root / "dist"), str(root / "src")],
            capture_output=True, text=True, timeout=300)
        assert build.returncode == 0, build.stderr[-3000:]
        [wheel] = (root / "dist").glob("tuner-*.whl")
        with zipfile.ZipFile(wheel) as z:
            z.extractall(root / "site")
        (root / "run").mkdir()
        yield root / "site"


def _env(site: Path) -> dict[str, str]:
    """The wheel first, then this venv's dependencies; nothing from the checkout."""
    paths = dict.fromkeys([str(site), sysconfig.get_paths()["purelib"],
                           sysconfig.get_paths()["platlib"]])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "TUNER_STORAGE")}
    return env | {"PYTHONPATH": os.pathsep.join(paths), "COLUMNS": "200",
                  "RAY_USAGE_STATS_ENABLED": "0"}


def _python(*args: str) -> list[str]:
    """This venv's interpreter without ``site``: no ``.pth`` file, so no editable finder."""
    return [sys.executable, "-S", *args]


def _tuner(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``tuner ARGS`` from the wheel, run in a folder outside the checkout."""
    return subprocess.run(_python("-m", "tuner", *args), cwd=site.parent / "run",
                          env=_env(site), capture_output=True, text=True, timeout=120)


def test_the_wheel_holds_every_file_of_the_package_and_the_mapped_folders(site: Path) -> None:
    """A subpackage left out of pyproject's explicit ``packages`` list, or a data file no
    ``package-data`` pattern matches, is missing here."""
    missing = []
    for folder, target in _INTO_PACKAGE.items():
        for path in (REPO / folder).rglob("*"):
            rel = path.relative_to(REPO / folder)
            if path.is_file() and "__pycache__" not in rel.parts and path.suffix != ".pyc":
                if not (site / target / rel).is_file():
                    missing.append(f"{folder}/{rel}")
    assert not missing, f"not in the wheel (add them to pyproject's [tool.setuptools]): {missing}"
    [dist_info] = site.glob("tuner-*.dist-info")
    assert "tuner = tuner.cli:main" in (dist_info / "entry_points.txt").read_text()


def test_tuner_imports_from_the_wheel_with_its_dashboard_and_specs(site: Path) -> None:
    code = ("import json, tuner, tuner._dashboard as d, tuner._spaces as s; "
            "print(json.dumps([tuner.__file__, str(d.APP), str(s.DIR)]))")
    run = subprocess.run(_python("-c", code), cwd=site.parent / "run", env=_env(site),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    package, app, spaces = (Path(p) for p in json.loads(run.stdout))
    assert package == site / "tuner" / "__init__.py"
    assert app == site / "tuner" / "_dashboard" / "app.py" and app.is_file()
    assert (app.parent / "views" / "studies.py").is_file()
    assert spaces == site / "tuner" / "_spaces"


def test_spaces_lists_the_shipped_specs(site: Path) -> None:
    run = _tuner(site, "spaces")
    assert run.returncode == 0, run.stderr[-3000:]
    shipped = sorted(SPACES.glob("*.yaml"))
    assert shipped
    for path in shipped:
        assert str(site / "tuner" / "_spaces" / path.name) in run.stdout, run.stdout
        assert yaml.safe_load(path.read_text())["study"] in run.stdout


def test_schema_prints_the_json_schema(site: Path) -> None:
    run = _tuner(site, "schema")
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout) == tuner.spec.spec_json_schema()


def test_submit_help_names_every_sampler(site: Path) -> None:
    """The ``--sampler`` help is derived from the list the spec validates against."""
    run = _tuner(site, "submit", "--help")
    assert run.returncode == 0, run.stderr[-3000:]
    assert " | ".join(SAMPLER_KINDS) in run.stdout


def test_dashboard_starts_headless_and_answers_health(site: Path) -> None:
    pytest.importorskip("streamlit", reason="the dashboard extra is not installed: "
                        "pip install 'tuner[dashboard]'")
    pytest.importorskip("plotly", reason="the dashboard extra is not installed")
    run_dir = site.parent / "run"
    url = f"sqlite:///{run_dir / 'tuner.db'}"
    # the dashboard refuses a missing database file; an empty one is enough to serve /health
    sqlite3.connect(run_dir / "tuner.db").close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = run_dir / "dashboard.log"
    with log.open("w") as out:
        # a session of its own: stopping it stops Streamlit too, whatever happens to the test
        proc = subprocess.Popen(
            _python("-m", "tuner", "dashboard", "--storage", url, "--host", "127.0.0.1",
                    "--port", str(port)),
            cwd=run_dir, env=_env(site), stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    try:
        status = _health(f"http://127.0.0.1:{port}/_stcore/health", proc)
        assert status == 200, log.read_text()[-3000:]
        assert f"on http://127.0.0.1:{port}" in log.read_text()
    finally:
        _stop(proc)


def _health(url: str, proc: subprocess.Popen[bytes]) -> int | None:
    """The health endpoint's HTTP status once it answers; None if the server exits or never
    answers within :data:`_GIVE_UP_S`."""
    deadline = time.monotonic() + _GIVE_UP_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return int(response.status)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.5)
    return None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the dashboard's own process group (tuner and its Streamlit child), then
    SIGKILL if it has not exited: no server outlives the test holding the port."""
    for sig, wait_s in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue
