"""The dashboard's reads: tuner's public API behind Streamlit caches, plus error handling.

Every read is cached with a short TTL keyed by storage URL and study name, so a page that reruns
on every click (or every few seconds while a study runs) costs a query only when the TTL expires.
``Study`` objects hold a database engine and are cached as resources; everything else is data.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st

import tuner
from tuner._secrets import scrub
from tuner.storage import redact, resolve_url

__all__ = [
    "LIVE_S",
    "DashboardError",
    "best",
    "best_so_far",
    "counts",
    "curves",
    "fmt",
    "headline",
    "numbers_tuple",
    "page",
    "param_table",
    "progress",
    "query_int",
    "query_ints",
    "query_study",
    "safe",
    "shown_url",
    "spec",
    "stage_counts",
    "stages",
    "storage_url",
    "study",
    "summaries",
    "trial",
    "trial_page",
]

_log = logging.getLogger("tuner.dashboard")
T = TypeVar("T")
LIVE_S = 3.0
"""Seconds between live refreshes, and the TTL of what changes while a study runs."""
_SLOW_TTL = 30.0  # samples for plots, importance: a few seconds stale is fine


class DashboardError(Exception):
    """Something the person at the dashboard can fix; shown as one line, never a traceback."""


def storage_url() -> str:
    """The storage ``tuner dashboard`` was started on (``$TUNER_STORAGE``; see ``resolve_url``).

    Checking it is tuner's job, not the page's: every read opens it without creating or
    migrating anything, and a bad URL or a missing SQLite file is a one-line ``TunerError``.
    """
    return resolve_url(None)


def shown_url() -> str:
    """The storage URL without its password: the only form that reaches a page or a log."""
    return redact(resolve_url(None))


def safe(message: str) -> str:
    """``message`` with the storage's passwords (user info or ``?password=``, anywhere in it)
    replaced by ``***``."""
    return scrub(message, [resolve_url(None)])


def page(body: Callable[[], None]) -> Callable[[], None]:
    """Run a page body; any error becomes one ``st.error`` line (password-free), not a traceback.

    Streamlit's own control flow (``st.stop``, ``st.switch_page``) raises ``BaseException``
    subclasses and passes through untouched.
    """
    @functools.wraps(body)
    def run() -> None:
        try:
            body()
        except (DashboardError, tuner.TunerError) as e:
            st.error(safe(str(e)))
        except Exception as e:  # noqa: BLE001 - shown and logged, not swallowed: a database
            # that went away, a driver error: say what, without the password or a traceback
            reason = str(getattr(e, "orig", None) or e).strip().splitlines()
            _log.error("dashboard page failed: %s: %s", type(e).__name__,
                       safe(reason[0] if reason else ""))
            st.error(safe(f"cannot read the study database ({shown_url()}): "
                          f"{type(e).__name__}: {reason[0] if reason else 'no detail'}; "
                          "check that the database is reachable, then reload"))
    return run


@st.cache_resource(show_spinner=False, ttl=600, max_entries=32)
def study(url: str, name: str) -> tuner.Study:
    """The open study (one engine per storage and study, reused by every session)."""
    return tuner.load_study(name, url)


@st.cache_data(show_spinner=False, ttl=LIVE_S)
def summaries(url: str) -> list[tuner.StudySummary]:
    return tuner.list_studies(url)


@st.cache_data(show_spinner=False, ttl=LIVE_S)
def counts(url: str, name: str) -> dict[str, int]:
    return study(url, name).counts()


@st.cache_data(show_spinner=False, ttl=_SLOW_TTL)  # short: a study's spec row lands just after it
def spec(url: str, name: str) -> tuner.StudySpec | None:
    return study(url, name).spec


@st.cache_data(show_spinner=False, ttl=_SLOW_TTL)
def stages(url: str, name: str) -> list[tuner.StageInfo]:
    return study(url, name).stages(trials=False)  # boxes only: trial lists cost a row each


@st.cache_data(show_spinner=False, ttl=_SLOW_TTL)
def stage_counts(url: str, name: str) -> dict[int, int]:
    return study(url, name).stage_counts()


@st.cache_data(show_spinner=False, ttl=LIVE_S)
def best(url: str, name: str, k: int = 1) -> list[tuner.TrialRecord]:
    return study(url, name).best_trials(k)


@st.cache_data(show_spinner=False, ttl=LIVE_S)
def headline(url: str, name: str) -> dict[str, Any]:
    """What the top of the study page shows: ``counts``, ``best`` (a list of at most one
    trial), ``progress`` and ``best_so_far``, read concurrently (each query on its own pooled
    connection; the drivers release the GIL while the database works), so the page waits for the
    slowest of the four instead of their sum."""
    s = study(url, name)
    reads: dict[str, Callable[[], Any]] = {
        "counts": s.counts, "best": lambda: s.best_trials(1), "progress": s.progress,
        "best_so_far": s.best_so_far}
    with ThreadPoolExecutor(max_workers=len(reads), thread_name_prefix="tuner-dash") as pool:
        futures = {key: pool.submit(read) for key, read in reads.items()}
        return {key: future.result() for key, future in futures.items()}


@st.cache_data(show_spinner=False, ttl=LIVE_S)
def best_so_far(url: str, name: str) -> Any:
    return study(url, name).best_so_far()


@st.cache_data(show_spinner=False, ttl=LIVE_S)
def progress(url: str, name: str) -> Any:
    return study(url, name).progress()


@st.cache_data(show_spinner=False, ttl=_SLOW_TTL)
def param_table(url: str, name: str, max_trials: int = 1000,
                states: tuple[str, ...] = ("COMPLETE",)) -> Any:
    return study(url, name).param_table(max_trials, states=states)


@st.cache_data(show_spinner=False, ttl=LIVE_S)
def trial_page(url: str, name: str, states: tuple[str, ...], stage: int | None, search: str,
               sort: str, descending: bool, limit: int, offset: int) -> tuner.TrialPage:
    return study(url, name).trial_page(states=states, stage=stage, search=search, sort=sort,
                                       descending=descending, limit=limit, offset=offset)


@st.cache_data(show_spinner=False, ttl=LIVE_S)
def trial(url: str, name: str, number: int) -> tuner.TrialRecord | None:
    return study(url, name).trial(number)


@st.cache_data(show_spinner=False, ttl=LIVE_S)
def curves(url: str, name: str, numbers: tuple[int, ...]) -> Any:
    return study(url, name).curves(list(numbers))


def query_study(url: str) -> str:
    """The study named by ``?study=``, else a picker over the stored studies (kept in the URL)."""
    names = [s.name for s in summaries(url)]
    wanted = st.query_params.get("study")
    if wanted and wanted not in names:  # created since the cached list? ask the database again
        summaries.clear()
        names = [s.name for s in summaries(url)]
    if wanted and wanted not in names:
        raise DashboardError(f"study '{wanted}' not found in {shown_url()}; the Studies page "
                             "lists the studies there")
    if not names:
        raise DashboardError(f"no studies in {shown_url()} yet; run `tuner submit SPEC`")
    chosen = st.sidebar.selectbox("Study", names,
                                  index=names.index(wanted) if wanted else len(names) - 1)
    if chosen != wanted:
        st.query_params["study"] = chosen
    return str(chosen)


def query_int(key: str) -> int | None:
    """An integer query parameter (``?trial=12``); None when absent or not a number."""
    raw = st.query_params.get(key)
    try:
        return int(raw) if raw not in (None, "") else None
    except ValueError:
        return None


def query_ints(key: str) -> list[int]:
    """A comma-separated integer list (``?trials=3,8,12``); what does not parse is dropped."""
    out: list[int] = []
    for part in (st.query_params.get(key) or "").split(","):
        if part.strip().lstrip("-").isdigit():
            out.append(int(part))
    return out


def fmt(v: Any, digits: int = 6) -> str:
    """A value for a metric card or a label: floats to ``digits`` significant digits."""
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def numbers_tuple(numbers: Sequence[int]) -> tuple[int, ...]:
    """Trial numbers as a sorted, duplicate-free tuple (a stable cache key)."""
    return tuple(sorted({int(n) for n in numbers}))
