"""Studies: every study in the storage with its state, counts and best value; live while one runs."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from tuner._dashboard import _data as d


def _elapsed(started: dt.datetime | None, last: dt.datetime | None, running: bool) -> str:
    """First trial start to last completion (to now while the study runs).

    Under a minute it is shown in seconds with three significant digits: once Ray is up, small
    trials run back to back in milliseconds (16 digits trials in about 0.3 s), and whole seconds
    alone showed such a finished study as ``0:00:00``, as if it had never run.
    """
    if started is None:
        return "—"
    end = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) if running or last is None else last
    exact = max(0.0, (end - started).total_seconds())
    if exact < 60:
        return f"{exact:.3g} s"
    seconds = round(exact)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    clock = f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
    return f"{days} d {clock}" if days else clock


def _table(url: str) -> bool:
    """Draw the table; return whether any study is running (the caller keeps refreshing then)."""
    rows = d.summaries(url)
    if not rows:
        st.info(f"No studies in {d.shown_url()} yet: run `tuner submit SPEC` and they appear here.")
        return False
    frame = pd.DataFrame([{
        "study": s.name, "state": s.state, "direction": s.direction,
        "complete": s.counts.get("COMPLETE", 0), "running": s.counts.get("RUNNING", 0),
        "pruned": s.counts.get("PRUNED", 0), "failed": s.counts.get("FAIL", 0),
        "waiting": s.counts.get("WAITING", 0), "best value": d.fmt(s.best_value),
        "started (UTC)": s.started, "elapsed": _elapsed(s.started, s.last, s.state == "running"),
        "open": f"study?study={s.name}",
    } for s in rows])
    running = int((frame["state"] == "running").sum())
    c = st.columns(4)
    c[0].metric("studies", len(frame))
    c[1].metric("running", running)
    c[2].metric("trials", int(frame[["complete", "running", "pruned", "failed", "waiting"]]
                              .to_numpy().sum()))
    c[3].metric("complete", int(frame["complete"].sum()))
    st.dataframe(frame, hide_index=True, column_config={
        "open": st.column_config.LinkColumn("open", display_text="open"),
        "started (UTC)": st.column_config.DatetimeColumn(format="YYYY-MM-DD HH:mm:ss"),
    })
    st.caption("Open a study:")
    links = st.columns(min(len(rows), 4))
    for i, s in enumerate(rows[-40:]):
        links[i % len(links)].page_link("views/study.py", label=f"{s.name} ({s.state})",
                                        query_params={"study": s.name})
    if running:
        st.caption(f"Refreshing every {d.LIVE_S:g} s while a study runs.")
    return bool(running)


@d.page
def body() -> None:
    st.title("Studies")
    url = d.storage_url()
    running = any(s.state == "running" for s in d.summaries(url))

    def live() -> None:
        if _table(url) != running:
            st.rerun()  # start or stop the timer: run_every is fixed for one fragment call

    st.fragment(live, run_every=d.LIVE_S if running else None)()


body()
