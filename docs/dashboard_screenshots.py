"""Screenshots of the dashboard for the README: a real study, the real server, headless Chromium.

    python docs/dashboard_screenshots.py            # writes docs/dashboard_<page>.png

Runs ``search_spaces/digits_coarse_to_fine.yaml`` (30 trials, 6 epochs, 2 local Ray workers) into
a scratch SQLite file, starts ``tuner dashboard`` on a free port and photographs each page with
Debian's ``chromium`` through Playwright (``pip install playwright``; no browser download).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs"
CHROMIUM = os.environ.get("TUNER_TEST_CHROMIUM", "/usr/bin/chromium")


def main() -> None:
    import tuner

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    scratch = Path(tempfile.mkdtemp(prefix="tuner-shots-"))
    url = f"sqlite:///{scratch / 'tuner.db'}"
    study = tuner.submit(ROOT / "search_spaces" / "digits_coarse_to_fine.yaml", storage=url,
                         trials=30, epochs=6)
    best = study.best_trial
    runner_up = [t.number for t in study.best_trials(4)]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "tuner", "dashboard", "--storage", url,
                             "--port", str(port)])
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{base}/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.3)
        shoot(base, study.name, best.number, runner_up)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def shoot(base: str, name: str, best: int, others: list[int]) -> None:
    from playwright.sync_api import sync_playwright

    pages = [
        ("studies", "/", name, 900),
        ("study", f"/study?study={name}", "Slices: objective", 2300),
        ("study_pair", f"/study?study={name}&view=Two+parameters", "rectangles: stage boxes", 1500),
        ("trial", f"/trial?study={name}&trial={best}", "Training vs validation loss", 1500),
        ("compare", f"/compare?study={name}&trials={','.join(map(str, others))}", "val_loss", 1300),
    ]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for label, path, wait_for, height in pages:
            tab = browser.new_page(viewport={"width": 1400, "height": height})
            tab.set_default_timeout(90_000)
            tab.goto(base + path)
            tab.get_by_text(wait_for).filter(visible=True).first.wait_for()
            tab.wait_for_timeout(2500)  # let Plotly finish drawing
            tab.screenshot(path=str(OUT / f"dashboard_{label}.png"))
            print(f"docs/dashboard_{label}.png")
            tab.close()
        browser.close()


if __name__ == "__main__":
    main()
