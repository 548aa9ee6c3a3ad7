"""Trial: its params, outcome and why, where it ran, its curves, and how it differs from the best."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pandas as pd
import streamlit as st

import tuner
from tuner._dashboard import _data as d
from tuner._dashboard import _plots as plots

_LOSSES = ["train_loss", "val_loss"]


def _why(t: tuner.TrialRecord) -> str:
    """The outcome in words: what a person reads first."""
    state, reason, epochs = t.state, t.reason, t.epochs_run
    if state == "PRUNED":
        if reason and reason != "pruned":
            return reason  # "pruned at epoch N", as the pruner recorded it
        return f"pruned at epoch {epochs}" if epochs else "pruned"
    if state == "FAIL":
        detail = {"diverged": "the training loss became NaN/inf (learning rate too high?)",
                  "oom": "out of device memory (smaller batch size or model?)"}.get(reason or "")
        return f"failed: {reason or 'no reason recorded'}" + (f" — {detail}" if detail else "")
    if state == "COMPLETE":
        return f"complete after {epochs} epochs" if epochs else "complete"
    return state.lower()


def _when(t: dt.datetime | None) -> str:
    return "—" if t is None else f"{t:%Y-%m-%d %H:%M:%S}"


def _text_table(mapping: dict[str, Any]) -> pd.DataFrame:
    """Keys and values as plain text (a user attribute is data, never markup)."""
    return pd.DataFrame({"name": list(mapping),
                         "value": [v if isinstance(v, str) else json.dumps(v, default=str)
                                   for v in mapping.values()]})


@d.page
def body() -> None:
    url = d.storage_url()
    name = d.query_study(url)
    best = d.best(url, name, 1)
    wanted = d.query_int("trial")
    if wanted is None:
        wanted = best[0].number if best else 0
    number = int(st.number_input("trial", min_value=0, value=wanted, step=1))
    if number != d.query_int("trial"):
        st.query_params["trial"] = str(number)
    t = d.trial(url, name, number)
    if t is None:
        total = sum(d.counts(url, name).values())
        raise d.DashboardError(f"study '{name}' has no trial {number}; its trials are numbered "
                               f"0 to {total - 1}")
    st.title(f"{name} · trial {t.number}")
    st.text(_why(t))
    c = st.columns(5)
    c[0].metric("value", d.fmt(t.value))
    c[1].metric("state", t.state)
    c[2].metric("epochs run", d.fmt(t.epochs_run))
    c[3].metric("duration", "—" if t.duration_s is None else f"{t.duration_s:.1f} s")
    c[4].metric("stage", d.fmt(t.stage))
    st.text(f"host: {t.host or '—'}   device: {t.device or '—'}   started: "
            f"{_when(t.datetime_start)}   finished: {_when(t.datetime_complete)} (UTC)")
    ref = best[0] if best and best[0].number != t.number else None
    numbers = [t.number] + ([ref.number] if ref else [])
    frame = d.curves(url, name, d.numbers_tuple(numbers))
    labels = {t.number: f"trial {t.number}"} | ({ref.number: f"best #{ref.number}"} if ref else {})
    if frame.empty:
        st.info("No per-epoch curve was recorded for this trial.")
    else:
        mine = frame[frame["number"] == t.number]
        metrics = [m for m in mine.columns if m not in ("number", "epoch")]
        c = st.columns(2)
        c[0].plotly_chart(plots.curves(frame, [m for m in _LOSSES if m in metrics],
                                       "Training vs validation loss (gap = variance, "
                                       "high train = bias)", labels), key="losses")
        others = [m for m in metrics if m not in _LOSSES]
        if others:
            pick = c[1].selectbox("metric", others, key="trial_metric")
            c[1].plotly_chart(plots.curves(frame, [pick], pick, labels), key="metric")
    st.subheader("Parameters" + (f" compared with the best trial #{ref.number}" if ref else ""))
    names = list(dict.fromkeys([*t.params, *(ref.params if ref else {})]))
    diff = pd.DataFrame({
        "param": names,
        "this trial": [d.fmt(t.params.get(n)) for n in names],
        **({"best trial": [d.fmt(ref.params.get(n)) for n in names],
            "differs": ["yes" if t.params.get(n) != ref.params.get(n) else "" for n in names]}
           if ref else {}),
    })
    st.dataframe(diff, hide_index=True)
    if ref:
        st.page_link("views/trial.py", label=f"open the best trial #{ref.number}",
                     query_params={"study": name, "trial": str(ref.number)})
    st.page_link("views/compare.py", label="compare with other trials",
                 query_params={"study": name, "trials": ",".join(map(str, numbers))})
    if t.user_attrs:
        st.subheader("User attributes")
        st.dataframe(_text_table(t.user_attrs), hide_index=True)


body()
