"""The pictures of a sweep's results, from plain data (the rows of ``sweep.results``, arrays of features).

Three views for a researcher comparing losses over seeds: the table of each cell's mean ± 95 % interval,
one metric against one swept axis (a line per combination of the other axes, with error bars), and the
cells' final feature spaces side by side on the same axes. Nothing here imports Streamlit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dmlviz import figures, projection
from dmlviz.sweep import RESULTS

UNSWEPT = "—"  # what sweep.parse puts in a cell for an axis that does not reach its loss
MAX_COLUMNS = 3  # small multiples per row: three panels of an 800 px window are still ~230 px wide
SCENE_EYE = {"x": 1.7, "y": 1.7, "z": 1.2}
#: How each number of ``sweep.RESULTS`` is written: as many decimals as its differences between losses need.
DECIMALS = {"test_acc": 3, "p_at_1": 3, "map_at_r": 3, "fisher_ratio": 2, "intra_angle": 1, "inter_angle": 1,
            "elapsed": 0}


# -- the table -----------------------------------------------------------------------------------------

def mean_text(mean: float | None, half: float | None, decimals: int) -> str:
    """"0.912 ± 0.013"; the mean alone from one run (no interval), "—" before any run has finished."""
    if mean is None:
        return UNSWEPT
    if half is None:
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {half:.{decimals}f}"


def results_table(rows: Sequence[Mapping[str, Any]], axes: Sequence[str], seeds: int) -> list[dict[str, str]]:
    """``sweep.results`` rows as text: the cell's axis values, its finished runs out of its seeds, and each
    result as "mean ± half-width of its 95 % interval"."""
    table = []
    for row in rows:
        line = {axis: str(row[axis]) for axis in axes}
        line["runs"] = f"{row['runs']}/{seeds}"
        for key, column in RESULTS.items():
            line[column] = mean_text(row[column], row[f"{column} ± 95 %"], DECIMALS.get(key, 3))
        table.append(line)
    return table


# -- one metric against one axis -------------------------------------------------------------------------

def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def numeric_axis(values: Sequence[Any]) -> bool:
    """Whether an axis's values are numbers (drawn on a numeric x axis, spaced as the numbers are); the
    "—" of cells it does not reach aside. Loss names and other words are categories."""
    given = [value for value in values if value != UNSWEPT]
    return bool(given) and all(is_number(value) for value in given)


def _groups(rows: Sequence[Mapping[str, Any]], others: Sequence[str]) -> dict[tuple, list[Mapping[str, Any]]]:
    """The rows by their values of the other axes, in the sweep's order (as text: a value may be a list,
    ``classes: [[0, 1], [2, 3]]``)."""
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(tuple(str(row[axis]) for axis in others), []).append(row)
    return groups


def _group_name(others: Sequence[str], key: tuple, metric: str) -> str:
    return ", ".join(f"{axis}={value}" for axis, value in zip(others, key, strict=True)) or metric


def metric_figure(rows: Sequence[Mapping[str, Any]], axes: Sequence[str], x_axis: str, metric: str,
                  height: int = 420) -> go.Figure:
    """``metric`` (a column of ``sweep.RESULTS``) against the swept axis ``x_axis``: a line per combination
    of the other axes' values, each point a cell's mean with its 95 % interval as an error bar.

    On a numeric axis the cells it does not reach ("—": NormFace on a margin axis) are one flat dashed line
    over the axis's range, a baseline for the others. Cells with no finished run are left out."""
    others = [axis for axis in axes if axis != x_axis]
    numeric = numeric_axis([row[x_axis] for row in rows])
    span = [value for row in rows if is_number(value := row[x_axis])]
    figure = go.Figure()
    for key, members in _groups(rows, others).items():
        done = [row for row in members if row[metric] is not None]
        if not done:
            continue
        name = _group_name(others, key, metric)
        placed = [row for row in done if not numeric or is_number(row[x_axis])]
        if placed:
            if numeric:
                placed.sort(key=lambda row: row[x_axis])
            figure.add_trace(_line(placed, x_axis, metric, name, numeric))
        elif numeric and span:
            figure.add_trace(_baseline(done[0], metric, f"{name} ({x_axis} {UNSWEPT})", (min(span), max(span))))
    figure.update_layout(
        template="plotly_white", height=height, margin={"l": 60, "r": 20, "t": 50, "b": 50},
        title={"text": f"{metric} against {x_axis} (mean ± 95 % interval over the seeds)", "font": {"size": 15}},
        xaxis={"title": {"text": x_axis}, "type": "linear" if numeric else "category"},
        yaxis={"title": {"text": metric}}, legend={"title": {"text": ", ".join(others)}}, hovermode="closest")
    return figure


def _line(rows: Sequence[Mapping[str, Any]], x_axis: str, metric: str, name: str, numeric: bool) -> go.Scatter:
    halves = [row[f"{metric} ± 95 %"] for row in rows]
    return go.Scatter(
        x=[row[x_axis] if numeric else str(row[x_axis]) for row in rows], y=[row[metric] for row in rows],
        error_y={"type": "data", "array": halves, "visible": True, "thickness": 1.5, "width": 5},
        mode="lines+markers", name=name, customdata=[[half, row["runs"]] for half, row in zip(halves, rows,
                                                                                              strict=True)],
        hovertemplate="%{x}: %{y:.4g} ± %{customdata[0]:.3g} (%{customdata[1]} runs)")


def _baseline(row: Mapping[str, Any], metric: str, name: str, span: tuple[float, float]) -> go.Scatter:
    """A cell the x axis does not reach, drawn at its value across the whole axis (error bars at both ends)."""
    half = row[f"{metric} ± 95 %"]
    return go.Scatter(x=list(span), y=[row[metric]] * 2, mode="lines+markers", name=name,
                      line={"dash": "dash"}, error_y={"type": "data", "array": [half, half], "visible": True,
                                                      "thickness": 1.5, "width": 5},
                      customdata=[[half, row["runs"]]] * 2,
                      hovertemplate=f"{name}: %{{y:.4g}} ± %{{customdata[0]:.3g}} (%{{customdata[1]}} runs)")


# -- small multiples -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CellSpace:
    """One cell's final feature space, as its run stored it: probe features (P × d) and their labels."""

    title: str
    features: np.ndarray
    labels: np.ndarray
    class_names: Sequence[str]


def drawing_dims(spaces: Sequence[CellSpace]) -> int:
    """3-D scenes when every cell's features are 3-D, else 2-D (wider features by PCA): one kind of panel."""
    return 3 if spaces and all(space.features.shape[1] == 3 for space in spaces) else 2


def drawn(features: np.ndarray, dims: int, directions: bool) -> tuple[np.ndarray, float | None]:
    """Features in drawing coordinates (P × dims) and the share of variance PCA kept (None: no PCA).
    ``directions``: unit-length rows first, and PCA about the origin, where the unit circle is."""
    x = np.asarray(features, dtype=np.float32)
    if directions:
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    if x.shape[1] < dims:  # 1-D features on a line
        return np.pad(x, ((0, 0), (0, dims - x.shape[1]))), None
    if x.shape[1] == dims:
        return x, None
    linear = projection.pca_map(x, dims, center=not directions)
    return linear(x), linear.explained


def shared_extent(points: Sequence[np.ndarray]) -> float:
    """Half the side of the square (cube) about the origin that holds every panel's finite points, with a
    little room: every panel gets it, so a cell's spread reads against the others'."""
    values = [np.abs(p[np.isfinite(p).all(axis=1)]).max() for p in points if np.isfinite(p).all(axis=1).any()]
    largest = max(values, default=1.0)
    return float(1.05 * largest) if largest > 0 else 1.0


def _subsample(count: int, most: int) -> np.ndarray:
    """Evenly spread rows of the probe (the same rows in every panel: the probe is the same set)."""
    return np.arange(count) if count <= most else np.linspace(0, count - 1, most).round().astype(int)


def small_multiples(spaces: Sequence[CellSpace], *, directions: bool = False, max_points: int = 1000,
                    panel_height: int = 300) -> go.Figure:
    """Each cell's final feature space in a grid, titled with the cell, on the same axis ranges: 2-D
    scatters, 3-D scenes, or wider features projected to 2-D by PCA (each cell its own PCA, so the axes of two
    panels are not the same directions; the titles say how much variance each keeps). A class has one
    colour and one legend entry for every panel. ``directions`` draws unit-length features, on the unit circle."""
    if not spaces:
        raise ValueError("small multiples need at least one cell")
    dims = drawing_dims(spaces)
    drawings = [drawn(space.features, dims, directions) for space in spaces]
    extent = shared_extent([points for points, _ in drawings])
    cols = min(MAX_COLUMNS, len(spaces))
    rows = math.ceil(len(spaces) / cols)
    titles = [space.title + (f" · PCA {explained:.0%}" if explained is not None else "")
              for space, (_, explained) in zip(spaces, drawings, strict=True)]
    kind = {"type": "scene" if dims == 3 else "xy"}
    specs = [[kind if r * cols + c < len(spaces) else None for c in range(cols)] for r in range(rows)]
    # A title may take several lines (one per swept value): room above each row for the tallest.
    title_px = 16 * max(title.count("<br>") + 1 for title in titles)
    figure = make_subplots(rows=rows, cols=cols, specs=specs, subplot_titles=titles, horizontal_spacing=0.04,
                           vertical_spacing=min(0.3 / rows, (title_px + 10) / (rows * panel_height)))
    legend: set[int] = set()
    for i, (space, (points, _)) in enumerate(zip(spaces, drawings, strict=True)):
        row, col = divmod(i, cols)
        rows_drawn = _subsample(len(points), max_points)
        for trace in _class_traces(points[rows_drawn], space.labels[rows_drawn], space.class_names, legend):
            figure.add_trace(trace, row=row + 1, col=col + 1)
    _share_ranges(figure, len(spaces), dims, extent, directions)
    figure.update_annotations(font={"size": 12})
    figure.update_layout(template="plotly_white", height=rows * (panel_height + title_px) + 30,
                         uirevision="sweep-grid", margin={"l": 10, "r": 10, "t": title_px + 14, "b": 10},
                         legend={"itemsizing": "constant"})
    return figure


def _class_traces(points: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                  legend: set[int]) -> list[go.Scatter | go.Scatter3d]:
    """A trace per class present; the first panel that has a class gives it its legend entry (one
    ``legendgroup`` toggles the class in every panel)."""
    traces = []
    for class_id in np.unique(labels).tolist():
        mine = points[labels == class_id]
        name = class_names[class_id] if class_id < len(class_names) else str(class_id)
        common = {"name": name, "legendgroup": f"class-{class_id}", "showlegend": class_id not in legend,
                  "mode": "markers", "hovertemplate": f"{name}<extra></extra>"}
        legend.add(class_id)
        color = figures.class_color(class_id)
        if points.shape[1] == 3:
            traces.append(go.Scatter3d(x=mine[:, 0], y=mine[:, 1], z=mine[:, 2],
                                       marker={"size": 2, "color": color}, **common))
        else:
            traces.append(go.Scattergl(x=mine[:, 0], y=mine[:, 1], marker={"size": 3, "color": color}, **common))
    return traces


def _share_ranges(figure: go.Figure, panels: int, dims: int, extent: float, directions: bool) -> None:
    """The same square (cube) about the origin in every panel; 2-D panels zoom together."""
    box = [-extent, extent]
    for i in range(panels):
        suffix = "" if i == 0 else str(i + 1)
        if dims == 3:
            # The camera farther out than plotly's default: a panel is narrower than tall on a laptop, and
            # the default view cut the cube at its sides there.
            figure.layout[f"scene{suffix}"].update(aspectmode="cube", camera={"eye": SCENE_EYE}, **{
                f"{axis}axis": {"range": box, "autorange": False, "title": {"text": ""}} for axis in "xyz"})
            continue
        figure.layout[f"xaxis{suffix}"].update(range=box, autorange=False, **({"matches": "x"} if i else {}))
        # As in figures.comparison_figure: the first panel keeps its scale square, the others follow it.
        figure.layout[f"yaxis{suffix}"].update(range=box, autorange=False,
                                               **({"matches": "y"} if i else {"scaleanchor": "x", "scaleratio": 1}))
        if directions:
            figure.add_shape(type="circle", xref=f"x{suffix}", yref=f"y{suffix}", x0=-1, y0=-1, x1=1, y1=1,
                             line={"color": "rgba(0,0,0,0.3)", "width": 1})
