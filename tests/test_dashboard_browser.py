"""End to end in a real browser: ``tuner dashboard`` as a subprocess on a free localhost port,
Debian's headless Chromium driven by Playwright, a study made by a real run."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tuner

CHROMIUM = next((p for p in (os.environ.get("TUNER_TEST_CHROMIUM"), shutil.which("chromium"),
                             "/usr/bin/chromium") if p and Path(p).exists()), None)
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium: apt-get install chromium "
                       "(or set TUNER_TEST_CHROMIUM to a chromium binary)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed: "
                               "pip install playwright (the browser is Debian's chromium)")
pytest.importorskip("streamlit", reason="the dashboard extra is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(dashboard_study: tuple[str, str]) -> Iterator[tuple[str, str, str]]:
    """``(base URL, storage URL, study)``: the dashboard running as ``tuner dashboard`` does."""
    url, name = dashboard_study
    port = _free_port()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("TUNER_STORAGE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tuner", "dashboard", "--storage", url, "--port", str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read() if proc.stdout else ""
                pytest.fail(f"tuner dashboard did not come up on {base}: {out[-2000:]}")
            time.sleep(0.3)
        yield base, url, name
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def page(served: tuple[str, str, str]) -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        tab = browser.new_page(viewport={"width": 1400, "height": 1000})
        tab.set_default_timeout(60_000)
        yield tab
        browser.close()


def test_browser_finds_the_study_and_its_best_value(served: tuple[str, str, str],
                                                    page: Any) -> None:
    base, url, name = served
    best = tuner.load_study(name, url).best_trial
    page.goto(base)
    link = page.get_by_role("link", name=f"{name} (idle)")
    link.wait_for()
    link.click()
    page.get_by_text("Optimization history").first.wait_for()
    assert f"study={name}" in page.url
    metric = page.get_by_test_id("stMetric").filter(has_text="best value")
    assert f"{best.value:.6g}" in metric.inner_text()
    assert page.get_by_test_id("stException").count() == 0
    assert "Traceback" not in page.locator("body").inner_text()


def test_browser_trial_page_by_link(served: tuple[str, str, str], page: Any) -> None:
    base, url, name = served
    best = tuner.load_study(name, url).best_trial
    page.goto(f"{base}/trial?study={name}&trial={best.number}")
    page.get_by_text(f"{name} · trial {best.number}").first.wait_for()
    page.get_by_text("Training vs validation loss").first.wait_for()
    assert "complete after 2 epochs" in page.locator("body").inner_text()
    assert url.split("///")[-1] in page.locator("body").inner_text()
