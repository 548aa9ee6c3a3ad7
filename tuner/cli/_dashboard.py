"""``tuner dashboard``: start the Streamlit app in ``tuner._dashboard`` on one storage.

The storage URL reaches the app through ``$TUNER_STORAGE`` in the child's environment, not its
command line: a password in argv would show in ``ps`` to every user of the machine. Only the
redacted URL is printed.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from sqlalchemy.engine import make_url

from tuner._errors import StorageError, TunerError
from tuner.storage import ENV_VAR, redact, resolve_url

__all__ = ["MISSING", "dashboard_command", "run_dashboard"]

MISSING = ("the dashboard needs Streamlit and Plotly, which are not installed; install the "
           "dashboard extra: pip install 'tuner[dashboard]'")


def dashboard_command(host: str, port: int) -> list[str]:
    """``python -m streamlit run APP`` with server options fit for a local, read-only viewer."""
    from tuner._dashboard import APP

    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        "--server.runOnSave", "false", "--client.toolbarMode", "viewer",
        # an unexpected error shows its type in the page; message and traceback go to this log
        "--client.showErrorDetails", "type",
    ]


def _check(url: str) -> None:
    """Fail early on what the dashboard could only report page by page."""
    missing = [m for m in ("streamlit", "plotly") if importlib.util.find_spec(m) is None]
    if missing:
        raise TunerError(MISSING)
    try:
        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - any parse failure means the same thing: not a URL
        raise StorageError(f"'{redact(url)}' is not a database URL; use e.g. sqlite:///tuner.db "
                           "or postgresql+psycopg://user@host/db") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if not path.exists():
            raise StorageError(f"no database at {path.resolve()}; run a study first (`tuner "
                               "submit SPEC`) or pass --storage URL")


def run_dashboard(storage: str | None, *, host: str = "127.0.0.1", port: int = 8501,
                  echo: bool = True) -> int:
    """Serve the dashboard until Ctrl-C; returns the exit code (130 after Ctrl-C)."""
    url = resolve_url(storage)
    _check(url)
    env = dict(os.environ, **{ENV_VAR: url})
    env.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    if echo:
        print(f"tuner dashboard: {redact(url)} on http://{host}:{port} (Ctrl-C stops it)",
              file=sys.stderr, flush=True)
    proc = subprocess.Popen(dashboard_command(host, port), env=env)
    previous = None
    if threading.current_thread() is threading.main_thread():
        # `kill`, a service manager or a test stops this process with SIGTERM: stop the server
        # too, or it lives on as an orphan holding the port
        previous = signal.signal(signal.SIGTERM, lambda signum, frame: proc.terminate())
    try:
        return proc.wait()
    except KeyboardInterrupt:  # the child got the same SIGINT; give it a moment to close
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
