"""Study: progress, best so far, where the good trials sit on each axis, and every trial (paged)."""

from __future__ import annotations

import streamlit as st

from tuner._dashboard import _data as d
from tuner._dashboard import _plots as plots
from tuner._dashboard._axes import axes_for
from tuner._dashboard._importance import MIN_TRIALS, importance
from tuner._dashboard._table import trial_table

VIEWS = ["Slices", "Two parameters", "Parallel coordinates", "Importance", "Stages"]


@st.cache_data(show_spinner=False, ttl=30)
def _importance(url: str, name: str) -> dict[str, float]:
    sample = d.param_table(url, name)
    return importance(sample, axes_for(sample, d.spec(url, name)))


def _header(url: str, name: str) -> bool:
    """Counts, best value and progress; returns whether the study is running."""
    head = d.headline(url, name)
    counts, best = head["counts"], head["best"]
    spec = d.spec(url, name)
    finished = counts["COMPLETE"] + counts["PRUNED"] + counts["FAIL"]
    c = st.columns(6)
    c[0].metric("best value", d.fmt(best[0].value) if best else "—",
                help="best complete trial" + (f": #{best[0].number}" if best else ""))
    c[1].metric("complete", counts["COMPLETE"])
    c[2].metric("running", counts["RUNNING"])
    c[3].metric("pruned", counts["PRUNED"])
    c[4].metric("failed", counts["FAIL"])
    c[5].metric("waiting", counts["WAITING"])
    if spec is not None and spec.trials:
        st.progress(min(1.0, finished / spec.trials),
                    text=f"{finished:,} of {spec.trials:,} trials finished")
    if best:
        st.page_link("views/trial.py", label=f"best trial: #{best[0].number}",
                     query_params={"study": name, "trial": str(best[0].number)})
    objective = spec.objective.metric if spec is not None else "objective"
    last, so_far = head["progress"], head["best_so_far"]
    c = st.columns(2)
    c[0].plotly_chart(plots.progress(last, so_far, objective), key="progress")
    sample = d.param_table(url, name)
    last_number = sum(counts.values()) - 1 if sum(counts.values()) else None
    c[1].plotly_chart(plots.history(sample, so_far, last_number, objective), key="history")
    return counts["RUNNING"] > 0


def _analysis(url: str, name: str) -> None:
    s = d.study(url, name)
    spec = d.spec(url, name)
    objective = spec.objective.metric if spec is not None else "objective"
    sample = d.param_table(url, name)
    done = sample[sample["value"].notna()]
    stages = d.stages(url, name)
    axes = axes_for(sample, spec)
    head = d.headline(url, name)
    best, complete = head["best"], head["counts"]["COMPLETE"]
    if len(done) < complete:
        st.caption(f"Plots show {len(done):,} of the {complete:,} complete trials (every k-th "
                   "trial plus the 100 best); counts, best values and the table cover all.")
    if not axes or done.empty:
        st.info("No complete trials with parameters yet: the plots appear with the first one.")
        return
    # lazy tabs: only the open one runs (a first render pays for one view, not five), and the
    # open tab is in the URL (?view=...) so a view is linkable
    tabs = st.tabs(VIEWS, key="view", on_change="rerun", bind="query-params")
    if tabs[0].open:
        with tabs[0]:
            st.plotly_chart(plots.slices(sample, axes, stages, objective,
                                         best[0].number if best else None), key="slices")
    if tabs[1].open:
        with tabs[1]:
            _pair(sample, axes, stages, objective, s.maximize, name)
    if tabs[2].open:
        with tabs[2]:
            st.plotly_chart(plots.parallel(sample, axes, objective, s.maximize), key="parallel")
    if tabs[3].open:
        with tabs[3]:
            _importance_view(url, name, len(done))
    if tabs[4].open:
        with tabs[4]:
            _stages_view(url, name, stages)


def _pair(sample: object, axes: list, stages: list, objective: str, maximize: bool,
          name: str) -> None:
    if len(axes) < 2:
        st.info("The study has one parameter: see its slice.")
        return
    names = [a.name for a in axes]
    c = st.columns(2)
    x = c[0].selectbox("x", names, index=0, key=f"pair_x_{name}")
    y = c[1].selectbox("y", names, index=1, key=f"pair_y_{name}")
    by = {a.name: a for a in axes}
    st.plotly_chart(plots.pair(sample, by[x], by[y], stages, objective, maximize), key="pair")


def _importance_view(url: str, name: str, complete: int) -> None:
    if complete < MIN_TRIALS:
        st.info(f"Importance needs at least {MIN_TRIALS} complete trials; this study has "
                f"{complete}.")
        return
    scores = _importance(url, name)
    if scores:
        st.plotly_chart(plots.importance(scores), key="importance")
    else:
        st.info("No parameter varies across the complete trials (or their values are all "
                "equal): nothing to attribute.")


def _stages_view(url: str, name: str, stages: list) -> None:
    if not stages:
        st.info("Not a coarse-to-fine study: it has no stages.")
        return
    counts = d.stage_counts(url, name)
    for info in stages:
        st.markdown(f"**Stage {info.stage}**: {counts.get(info.stage, 0):,} trials"
                    + (f", box from the best trials {info.top_trials}" if info.top_trials
                       else ", the whole declared range"))
        st.dataframe({k: [d.fmt(v) if not isinstance(v, (list, tuple)) else
                          " – ".join(d.fmt(x) for x in v) if isinstance(v, tuple) else
                          ", ".join(map(str, v))] for k, v in info.box.items()},
                     hide_index=True)


@d.page
def body() -> None:
    url = d.storage_url()
    name = d.query_study(url)
    spec = d.spec(url, name)
    st.title(name)
    if spec is not None:
        st.caption(f"{spec.objective.direction} {spec.objective.metric} · sampler "
                   f"{spec.sampler.kind} · pruner {spec.pruner.kind} · {spec.epochs} epochs")
    running = d.headline(url, name)["counts"]["RUNNING"] > 0

    def live() -> None:
        if _header(url, name) != running:
            st.rerun()

    st.fragment(live, run_every=d.LIVE_S if running else None)()
    _analysis(url, name)
    st.subheader("Trials")
    sample = d.param_table(url, name)
    params = [c[len("params_"):] for c in sample.columns if c.startswith("params_")]
    if spec is not None:
        params = list(spec.params) + [p for p in params if p not in spec.params]
    trial_table(url, name, params, [i.stage for i in d.stages(url, name)])


body()
