"""Plotly figures for the study and trial pages: pure functions of the frames the API returns.

Nothing here reads the database or imports Streamlit, so each figure can be built and checked in
a plain test. Points are coloured by coarse-to-fine stage when the study has stages, and every
stage's search box is drawn on the views of the parameters it constrains.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from tuner._dashboard._axes import Axis

__all__ = [
    "STAGE_COLORS",
    "curves",
    "history",
    "importance",
    "pair",
    "parallel",
    "progress",
    "slices",
]

STAGE_COLORS = qualitative.Plotly
_BEST = "#d62728"
_LAYOUT: dict[str, Any] = {"margin": {"l": 10, "r": 10, "t": 40, "b": 10}}  # Streamlit themes it


def _stage_color(stage: Any) -> str:
    if stage is None or (isinstance(stage, float) and math.isnan(stage)):
        return "#7f7f7f"
    return STAGE_COLORS[int(stage) % len(STAGE_COLORS)]


def _groups(frame: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """``(legend name, colour, rows)`` per stage (one group when the study has no stages)."""
    if "stage" not in frame or frame["stage"].isna().all():
        return [("trials", STAGE_COLORS[0], frame)]
    out = []
    for stage, rows in frame.groupby(frame["stage"].fillna(-1).astype(int), sort=True):
        label = "no stage" if stage < 0 else f"stage {stage}"
        out.append((label, _stage_color(None if stage < 0 else stage), rows))
    return out


def history(sample: pd.DataFrame, best: pd.DataFrame, last_number: int | None,
            objective: str) -> go.Figure:
    """Objective per trial number (a sample at large scale) and the exact best-so-far steps."""
    fig = go.Figure()
    done = sample[sample["value"].notna()]
    for label, color, rows in _groups(done):
        fig.add_trace(go.Scatter(x=rows["number"], y=rows["value"], mode="markers", name=label,
                                 marker={"color": color, "size": 5, "opacity": 0.6}))
    if len(best):
        xs, ys = list(best["number"]), list(best["value"])
        if last_number is not None and last_number > xs[-1]:
            xs.append(last_number)
            ys.append(ys[-1])
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"shape": "hv", "color": _BEST},
                                 name="best so far"))
    fig.update_layout(title="Optimization history", xaxis_title="trial", yaxis_title=objective,
                      **_LAYOUT)
    return fig


def progress(done: pd.DataFrame, best: pd.DataFrame, objective: str) -> go.Figure:
    """Finished trials over time and the best value so far over time (second axis)."""
    fig = go.Figure()  # two y axes by hand: make_subplots costs more than the data here
    if len(done):
        fig.add_trace(go.Scatter(x=done["datetime_complete"], y=done["finished"], mode="lines",
                                 name="finished trials", line={"color": STAGE_COLORS[0]}))
    timed = best.dropna(subset=["datetime_complete"]) if len(best) else best
    if len(timed):
        xs, ys = list(timed["datetime_complete"]), list(timed["value"])
        if len(done) and done["datetime_complete"].iloc[-1] > xs[-1]:
            xs.append(done["datetime_complete"].iloc[-1])
            ys.append(ys[-1])
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"shape": "hv", "color": _BEST},
                                 name="best so far", yaxis="y2"))
    fig.update_layout(title="Progress over time (UTC)", legend={"orientation": "h", "y": -0.2},
                      yaxis={"title": {"text": "finished trials"}},
                      yaxis2={"title": {"text": f"best {objective}"}, "overlaying": "y",
                              "side": "right", "showgrid": False},
                      **_LAYOUT)
    return fig


def _axis_layout(axis: Axis) -> dict[str, Any]:
    """Plotly axis settings for ``axis``: type, title, power-of-two ticks, category order."""
    out: dict[str, Any] = {"type": axis.kind, "title": {"text": axis.label}}
    if axis.ticks:
        out |= {"tickvals": list(axis.ticks), "ticktext": [str(t) for t in axis.ticks]}
    if axis.kind == "category" and axis.choices:
        out |= {"categoryorder": "array", "categoryarray": [str(c) for c in axis.choices]}
    return out


def _apply_axis(fig: go.Figure, axis: Axis, which: str = "x") -> None:
    fig.update_layout({f"{which}axis": _axis_layout(axis)})


def _box_edges(axis: Axis, box: dict[str, Any]) -> tuple[float, float] | None:
    entry = box.get(axis.name)
    if axis.kind == "category" or not isinstance(entry, (tuple, list)) or len(entry) != 2:
        return None
    if not all(isinstance(v, (int, float)) for v in entry):
        return None
    lo, hi = axis.plot_range(float(entry[0]), float(entry[1]))
    if axis.kind == "log" and lo <= 0:
        return None
    return lo, hi


def slices(frame: pd.DataFrame, axes: Sequence[Axis], stages: Sequence[Any],
           objective: str, best_number: int | None, columns: int = 3) -> go.Figure:
    """Objective against each parameter, each on its own scale, with every stage's box as a band.

    Traces, bands and axis settings go in as whole lists (one ``add_traces``, one layout update):
    Plotly's per-call ``row=, col=`` helpers cost more than the data on a 1,000-trial sample.
    """
    rows = max(1, math.ceil(len(axes) / columns))
    fig = make_subplots(rows=rows, cols=columns, shared_yaxes=True,
                        horizontal_spacing=0.04, vertical_spacing=0.16)
    done = frame[frame["value"].notna()]
    groups = _groups(done)
    top = done[done["number"] == best_number] if best_number is not None else done.iloc[:0]
    traces: list[go.Scatter] = []
    shapes: list[dict[str, Any]] = []
    layout: dict[str, Any] = {}
    for i, axis in enumerate(axes):
        ref = "" if i == 0 else str(i + 1)
        where = {"xaxis": f"x{ref}", "yaxis": f"y{ref}"}
        for label, color, part in groups:
            traces.append(go.Scatter(
                x=axis.plot_values(part[f"params_{axis.name}"]), y=part["value"], mode="markers",
                name=label, legendgroup=label, showlegend=i == 0,
                marker={"color": color, "size": 5, "opacity": 0.6}, customdata=part["number"],
                hovertemplate="trial %{customdata}<br>%{x}: %{y}", **where))
        if len(top):
            traces.append(go.Scatter(
                x=axis.plot_values(top[f"params_{axis.name}"]), y=top["value"], mode="markers",
                name="best", legendgroup="best", showlegend=i == 0,
                marker={"color": _BEST, "size": 12, "symbol": "star"}, **where))
        for info in stages:
            edges = _box_edges(axis, info.box)
            if edges is None or info.stage == 0:
                continue  # stage 0 is the whole declared range
            shapes.append({"type": "rect", "xref": f"x{ref}", "yref": f"y{ref} domain",
                           "x0": edges[0], "x1": edges[1], "y0": 0, "y1": 1, "layer": "below",
                           "fillcolor": _stage_color(info.stage), "opacity": 0.12,
                           "line": {"width": 1, "color": _stage_color(info.stage)}})
        layout[f"xaxis{ref}"] = _axis_layout(axis)
        if i % columns == 0:
            layout[f"yaxis{ref}"] = {"title": {"text": objective}}
    fig.add_traces(traces)
    fig.update_layout(title="Slices: objective against each parameter on its own scale"
                      " (bands: coarse-to-fine stage boxes)", height=320 * rows, shapes=shapes,
                      **layout, **_LAYOUT)
    return fig


def pair(frame: pd.DataFrame, x: Axis, y: Axis, stages: Sequence[Any], objective: str,
         maximize: bool) -> go.Figure:
    """Two parameters against each other, coloured by objective, each stage's box a rectangle."""
    done = frame[frame["value"].notna()]
    fig = go.Figure(go.Scatter(
        x=x.plot_values(done[f"params_{x.name}"]), y=y.plot_values(done[f"params_{y.name}"]),
        mode="markers", customdata=done["number"],
        hovertemplate="trial %{customdata}<br>" + objective + " %{marker.color:.4g}",
        marker={"color": done["value"], "colorscale": "Viridis", "reversescale": not maximize,
                "size": 7, "showscale": True, "colorbar": {"title": {"text": objective}}},
        name="trials", showlegend=False))
    for info in stages:
        ex, ey = _box_edges(x, info.box), _box_edges(y, info.box)
        if info.stage == 0 or ex is None or ey is None:
            continue
        fig.add_shape(type="rect", x0=ex[0], x1=ex[1], y0=ey[0], y1=ey[1],
                      line={"color": _stage_color(info.stage), "width": 2},
                      fillcolor=_stage_color(info.stage), opacity=0.15)
        fig.add_trace(go.Scatter(x=[ex[0]], y=[ey[1]], mode="text", text=[f"stage {info.stage}"],
                                 textposition="top right", showlegend=False, hoverinfo="skip"))
    _apply_axis(fig, x, "x")
    _apply_axis(fig, y, "y")
    fig.update_layout(title=f"{x.label} vs {y.label} (rectangles: stage boxes)", height=480,
                      **_LAYOUT)
    return fig


def parallel(frame: pd.DataFrame, axes: Sequence[Axis], objective: str,
             maximize: bool) -> go.Figure:
    """Parallel coordinates in each parameter's sampling coordinate, coloured by objective."""
    done = frame[frame["value"].notna()]
    dims = []
    for axis in axes:
        coord = axis.coordinate(done[f"params_{axis.name}"])
        dim: dict[str, Any] = {"values": coord, "label": _coord_label(axis)}
        if axis.kind == "category":
            order = list(axis.choices) if axis.choices else sorted(
                {str(v) for v in done[f"params_{axis.name}"]})
            dim |= {"tickvals": list(range(len(order))), "ticktext": [str(o) for o in order]}
        dims.append(dim)
    dims.append({"values": done["value"], "label": objective})
    fig = go.Figure(go.Parcoords(line={"color": done["value"], "colorscale": "Viridis",
                                       "reversescale": not maximize, "showscale": True},
                                 dimensions=dims))
    fig.update_layout(title="Parallel coordinates (each axis in its sampling coordinate)",
                      **(_LAYOUT | {"margin": {"l": 60, "r": 60, "t": 80, "b": 20}}))
    return fig


def _coord_label(axis: Axis) -> str:
    if axis.scale == "pow2":
        return f"log2 {axis.name}"
    if axis.scale == "one_minus_log":
        return f"log10(1-{axis.name})"
    if axis.kind == "log":
        return f"log10 {axis.name}"
    return axis.name


def importance(scores: dict[str, float]) -> go.Figure:
    """Horizontal bars, most important on top."""
    names = sorted(scores, key=scores.get)  # type: ignore[arg-type]
    fig = go.Figure(go.Bar(x=[scores[n] for n in names], y=names, orientation="h",
                           marker={"color": STAGE_COLORS[0]}))
    fig.update_layout(title="Parameter importance (first-order fANOVA, each parameter on its "
                      "own scale)", xaxis_title="share of the explained variance",
                      height=120 + 40 * len(names), **_LAYOUT)
    return fig


def curves(frame: pd.DataFrame, metrics: Sequence[str], title: str,
           labels: dict[int, str] | None = None) -> go.Figure:
    """Per-epoch metrics of one or more trials; each trial one colour, each metric one dash."""
    fig = go.Figure()
    dashes = ["solid", "dash", "dot", "dashdot", "longdash"]
    for i, (number, rows) in enumerate(frame.groupby("number", sort=False)):
        color = STAGE_COLORS[i % len(STAGE_COLORS)]
        name = (labels or {}).get(int(number), f"trial {number}")
        for j, metric in enumerate(metrics):
            if metric not in rows or rows[metric].isna().all():
                continue
            fig.add_trace(go.Scatter(
                x=rows["epoch"], y=rows[metric], mode="lines+markers",
                name=f"{name}: {metric}" if len(metrics) > 1 else name,
                line={"color": color, "dash": dashes[j % len(dashes)]}))
    fig.update_layout(title=title, xaxis_title="epoch", **_LAYOUT)
    return fig
