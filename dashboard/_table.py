"""The trial table of the study page: sorted, filtered, searched and paged in SQL.

Only one page of trials (50 by default) leaves the database per render, whatever the study's
size; the filters are widgets whose values key the cached query.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import streamlit as st

from tuner._dashboard import _data as d
from tuner._study import SORT_KEYS, STATES

__all__ = ["trial_table"]

_SORTS = {key.replace("_", " "): key for key in SORT_KEYS}  # label shown -> the API's sort key


def _rows(records: list[Any], name: str) -> pd.DataFrame:
    out = []
    for t in records:
        row: dict[str, Any] = {
            "trial": t.number, "state": t.state, "value": t.value, "stage": t.stage,
            "duration_s": None if t.duration_s is None else round(t.duration_s, 2),
            "epochs": t.epochs_run, "reason": t.reason, "host": t.host, "device": t.device,
        }
        # params as text: a value is data, never markup
        row.update({f"{k}": d.fmt(v) for k, v in t.params.items()})
        row["open"] = f"trial?study={name}&trial={t.number}"
        out.append(row)
    return pd.DataFrame(out)


def trial_table(url: str, name: str, param_names: list[str], stage_numbers: list[int]) -> None:
    """Filters, one page of trials and the pager, all keyed in the session per study."""
    key = f"tt_{name}"
    c = st.columns([3, 1, 2, 2, 1])
    states = c[0].multiselect("state", list(STATES), key=f"{key}_states", placeholder="any state")
    stage = None
    if stage_numbers:
        picked = c[1].selectbox("stage", ["any", *stage_numbers], key=f"{key}_stage")
        stage = None if picked == "any" else int(picked)
    search = c[2].text_input("search", key=f"{key}_search",
                             placeholder="reason, host, device or trial number")
    sorts = list(_SORTS) + [f"param: {p}" for p in param_names]
    sort = c[3].selectbox("sort by", sorts, key=f"{key}_sort")
    descending = c[4].toggle("descending", key=f"{key}_desc")
    size = 50
    filters = (tuple(states), stage, search, sort, descending)
    if st.session_state.get(f"{key}_filters") != filters:  # new filters: back to page 1
        st.session_state[f"{key}_filters"] = filters
        st.session_state[f"{key}_page"] = 1
    page_no = int(st.session_state.get(f"{key}_page", 1))
    sort_key = _SORTS.get(sort) or "param:" + sort.split(": ", 1)[1]
    result = d.trial_page(url, name, tuple(states), stage, search, sort_key, descending, size,
                          (page_no - 1) * size)
    pages = max(1, math.ceil(result.total / size))
    if page_no > pages:
        page_no = st.session_state[f"{key}_page"] = pages
        result = d.trial_page(url, name, tuple(states), stage, search, sort_key, descending,
                              size, (page_no - 1) * size)
    if not result.trials:
        st.info("No trials match these filters.")
    else:
        st.dataframe(_rows(result.trials, name), hide_index=True, column_config={
            "open": st.column_config.LinkColumn("open", display_text="open"),
            "value": st.column_config.NumberColumn(format="%.6g"),
        })
    p = st.columns([1, 3])
    p[0].number_input("page", min_value=1, max_value=pages, step=1, key=f"{key}_page")
    first = result.offset + 1 if result.trials else 0
    p[1].caption(f"trials {first}–{result.offset + len(result.trials)} of {result.total:,} "
                 f"matching (page {page_no} of {pages:,})")
