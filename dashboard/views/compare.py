"""Compare: pick several trials and overlay their per-epoch curves."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from tuner._dashboard import _data as d
from tuner._dashboard import _plots as plots


@d.page
def body() -> None:
    url = d.storage_url()
    name = d.query_study(url)
    st.title(f"Compare trials of {name}")
    best = d.best(url, name, 10)
    chosen = d.query_ints("trials") or [t.number for t in best[:3]]
    # the options: the 10 best plus whatever was asked for (a 100k-trial list would not do)
    options = list(dict.fromkeys([*chosen, *(t.number for t in best)]))
    extra = st.text_input("add trials by number", placeholder="e.g. 12, 40, 7",
                          help="The list offers the 10 best trials; type any other numbers here.")
    for part in extra.replace(" ", ",").split(","):
        if part.strip().isdigit() and int(part) not in options:
            options.append(int(part))
            chosen.append(int(part))
    picked = st.multiselect("trials", options, default=[n for n in chosen if n in options],
                            format_func=lambda n: f"#{n}")
    if ",".join(map(str, picked)) != st.query_params.get("trials", ""):
        st.query_params["trials"] = ",".join(map(str, picked))
    if not picked:
        st.info("Pick one or more trials to overlay their curves.")
        return
    frame = d.curves(url, name, d.numbers_tuple(picked))
    missing = sorted(set(picked) - set(frame["number"]) if not frame.empty else set(picked))
    if missing:
        st.warning(f"No curve recorded for trial(s) {', '.join(map(str, missing))} (they may "
                   "not exist, or be still waiting).")
    if frame.empty:
        return
    metrics = [m for m in frame.columns if m not in ("number", "epoch")]
    default = [m for m in ("train_loss", "val_loss") if m in metrics] or metrics[:1]
    shown = st.multiselect("metrics", metrics, default=default)
    if shown:
        st.plotly_chart(plots.curves(frame, shown, ", ".join(shown)), key="compare")
        for n, rows in frame.groupby("number"):
            blank = [m for m in shown if m not in rows or rows[m].isna().all()]
            if blank:
                st.caption(f"trial {n}: {', '.join(blank)} NaN or missing at every epoch "
                           "(a diverged trial has no finite loss to draw)")
    rows = []
    for n in picked:
        t = d.trial(url, name, n)
        if t is not None:
            rows.append({"trial": t.number, "state": t.state, "value": d.fmt(t.value),
                         "reason": t.reason or "", "stage": d.fmt(t.stage),
                         **{k: d.fmt(v) for k, v in t.params.items()}})
    st.dataframe(pd.DataFrame(rows), hide_index=True)


body()
