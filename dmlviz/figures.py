"""Plotly figures of a run: the feature space, the distance histogram and the training curves.

Pure functions from NumPy arrays to ``go.Figure``. A live page rebuilds them about twice a second,
so traces are passed as plain dicts (validated once, by the figure) and the figures use a small
template: resolving the named ``"plotly_white"`` template costs ~9 ms per figure on its own.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go

from dmlviz import regions
from dmlviz.metrics import PANELS, SCHEDULES, MetricSpec, metric_spec, order

#: The class colours: Matthew Petroff's ten-colour sequence ("Accessible Color Sequences for Data
#: Visualization", arXiv:2107.02270; matplotlib's "petroff10"), chosen by measurement. Of the sets
#: weighed (Paul Tol's, Okabe–Ito, Category10, Tableau 10) it keeps the closest pair farthest apart in
#: CAM02-UCS under simulated deuteranopia, protanopia, tritanopia and a washed-out projector, with no
#: colour too dark for a projector or too light for white paper: tests/test_palette.py measures it.
PALETTE: tuple[str, ...] = ("#3F90DA", "#FFA90E", "#BD1F01", "#94A4A2", "#832DB6", "#A96B59", "#E76300",
                            "#B9AC70", "#717581", "#92DADD")
#: Point shapes that plotly's 2-D and 3-D markers (filled and "-open") and matplotlib all draw.
SHAPES: tuple[str, ...] = ("circle", "square", "diamond")
# The shape of each colour: no ten legible colours keep every pair clearly apart (ΔE' ≥ 20) under
# every simulated dichromacy, so the pairs that come closer than that differ in shape as well.
_SHAPE_OF = (0, 0, 1, 2, 1, 0, 2, 1, 1, 0)

#: Class vectors that are directions (a classifier's weights): drawn as lines from the origin.
DIRECTIONS = frozenset({"weights"})
#: The key of the empirical class means in ``trails`` (K rows, indexed by class id).
MEANS = "class_means"

# The look of plotly's "plotly_white", reduced to what these figures use; the paper stays white so
# the dark labels stay readable on a page with a dark theme.
_AXIS = {"gridcolor": "#EBF0F8", "linecolor": "#EBF0F8", "zerolinecolor": "#EBF0F8", "zerolinewidth": 2,
         "ticks": "", "automargin": False}
_SCENE_AXIS = {"backgroundcolor": "white", "gridcolor": "#DFE8F3", "linecolor": "#EBF0F8",
               "zerolinecolor": "#EBF0F8", "showbackground": True, "ticks": "", "title": {"text": ""}}
# The mode bar (plotly's buttons, top right) keeps what a page uses: save a picture, zoom, pan, turn,
# reset. Fewer buttons make a shorter bar, and it covers less of the figure's top edge; sharing would
# send the run's data to a third-party service.
_MODEBAR_UNUSED = ("select2d", "lasso2d", "zoomIn2d", "zoomOut2d", "autoScale2d", "toggleSpikelines",
                   "hoverClosestCartesian", "hoverCompareCartesian", "hoverClosest3d", "tableRotation",
                   "resetCameraLastSave3d", "sendChartToCloud")
_TEMPLATE = go.layout.Template(layout={
    "font": {"color": "#2a3f5f"}, "paper_bgcolor": "white", "plot_bgcolor": "white",
    "xaxis": _AXIS, "yaxis": _AXIS, "hoverlabel": {"align": "left"},
    "scene": {"xaxis": _SCENE_AXIS, "yaxis": _SCENE_AXIS, "zaxis": _SCENE_AXIS},
    "modebar": {"remove": list(_MODEBAR_UNUSED)},
})
#: The band along the top, in pixels, that the mode bar covers: a title or legend at the right starts below it.
MODEBAR_PX = 30
_MARGIN = {"l": 55, "r": 10, "b": 45}
LEGEND_MARGIN_PX = 140  # a right margin that holds a legend of short names ("different classes")
_PANEL_TOP = MODEBAR_PX + 18  # panel titles (13 px type) sit above their panels, below the mode bar
_OUTLINE = {"color": "#222222", "width": 1.5}
_NOTE = {"showarrow": False, "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5, "font": {"size": 14}}

# Markers of what a loss learns, by kind (centers ★, class means ✚); Scatter3d knows only a few symbols.
_SYMBOLS_2D = {"centers": "star", "proxies": "diamond", "vertices": "star-diamond", MEANS: "cross"}
_SYMBOLS_3D = {"centers": "diamond", "proxies": "diamond", "vertices": "diamond", MEANS: "square"}


def class_color(class_id: int) -> str:
    """The colour of a class, the same in every panel and figure; ids beyond ten repeat a colour."""
    return PALETTE[int(class_id) % len(PALETTE)]


def class_symbol(class_id: int) -> str:
    """The shape of a class's points (plotly's name), the same in every panel and figure; a class
    whose colour repeats an earlier one's (ids beyond ten) takes the next shape."""
    cycle, slot = divmod(int(class_id), len(PALETTE))
    return SHAPES[(_SHAPE_OF[slot] + cycle) % len(SHAPES)]


def class_vector_symbol(kind: str, three_d: bool) -> str:
    """The marker (plotly's name) of a kind of class vector, or of the class means, in every figure."""
    return (_SYMBOLS_3D if three_d else _SYMBOLS_2D).get(kind, "diamond")


def _rgba(color: str, alpha: float) -> str:
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha:.3f})"


def _xyz(coords: np.ndarray) -> dict[str, np.ndarray]:
    """The x, y (and z) entries of a trace for rows of 2-D or 3-D coordinates."""
    return dict(zip("xyz", np.asarray(coords, dtype=float).T, strict=False))


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms > 0, norms, 1.0)


def _weight_scale(weights: np.ndarray | None, points: np.ndarray) -> float:
    """One factor for all weight vectors so the longest reaches the data's extent.

    The extent is the 99th percentile of the points' distances from the origin (robust to a few
    outliers); one common factor keeps the weights' relative lengths, which softmax reads.
    """
    if weights is None or len(points) == 0:
        return 1.0
    longest = float(np.nanmax(np.linalg.norm(weights, axis=1), initial=0.0))
    extent = float(np.percentile(np.linalg.norm(points, axis=1), 99))
    return extent / longest if longest > 0 and extent > 0 else 1.0


def _place(kind: str, vectors: np.ndarray, normalized: bool, weight_scale: float) -> np.ndarray:
    """Where to draw class vectors of a kind: on the unit sphere for a normalised loss, weights scaled."""
    if kind == MEANS:
        return vectors
    if normalized:
        return _unit(vectors)
    return vectors * weight_scale if kind in DIRECTIONS else vectors


def _rows(kind: str, count: int, train_classes: Sequence[int]) -> list[int]:
    """The class id of each row: class means are indexed by class id, class vectors by training class."""
    return list(range(count)) if kind == MEANS else [int(c) for c in train_classes][:count]


def _class_points(coords: np.ndarray, index: np.ndarray, name: str, class_id: int, unseen: bool,
                  three_d: bool) -> dict[str, Any]:
    color, symbol = class_color(class_id), class_symbol(class_id)
    marker = {"color": color, "size": 3 if three_d else 5, "symbol": f"{symbol}-open" if unseen else symbol}
    if unseen:
        marker["line"] = {"color": color, "width": 1}
    return {"type": "scatter3d" if three_d else "scattergl", "mode": "markers", **_xyz(coords),
            "customdata": index, "name": name, "legendgroup": str(class_id), "marker": marker,
            "hovertemplate": f"{name}<br>probe #%{{customdata}}<extra></extra>"}


def _class_vector_traces(kind: str, positions: np.ndarray, classes: list[int], names: dict[int, str],
                         three_d: bool) -> list[dict[str, Any]]:
    """Weights as lines from the origin (a trace each, for the class colour), other kinds as one trace of markers.

    Each kind is one legend entry (its legend group also holds its trails), so the legend hides a kind.
    """
    finite = np.all(np.isfinite(positions), axis=1)
    classes, positions = [c for c, ok in zip(classes, finite, strict=False) if ok], positions[finite]
    label = "class means" if kind == MEANS else kind
    common = {"type": "scatter3d" if three_d else "scattergl", "legendgroup": kind, "name": label}
    if kind in DIRECTIONS:
        return [{**common, "mode": "lines", **_xyz(np.stack([np.zeros_like(tip), tip])), "showlegend": i == 0,
                 "line": {"color": class_color(c), "width": 6 if three_d else 4},
                 "hovertemplate": f"{names[c]}<br>{label}<extra></extra>"}
                for i, (c, tip) in enumerate(zip(classes, positions, strict=False))]
    if not classes:
        return []
    marker = {"color": [class_color(c) for c in classes], "size": 9 if three_d else 16,
              "symbol": class_vector_symbol(kind, three_d), "line": _OUTLINE}
    return [{**common, "mode": "markers", **_xyz(positions), "marker": marker, "text": [names[c] for c in classes],
             "hovertemplate": f"%{{text}}<br>{label}<extra></extra>"}]


def _trail_trace(kind: str, positions: np.ndarray, classes: list[int], three_d: bool) -> dict[str, Any]:
    """Earlier positions (T × rows × k, oldest first) of every class as one trace of fading markers.

    Each point's colour is a number, its class's slot plus its age (0 oldest … 0.9 newest), read
    through a colour scale that ramps each class colour from 15 % to 85 % opaque.
    One trace of numbers draws fast where a trace per class or a colour string per point does not.
    """
    count = len(classes)
    positions = positions[:, :count]
    value = np.arange(count)[None, :] + np.linspace(0, 0.9, len(positions))[:, None]
    keep = np.all(np.isfinite(positions), axis=2)
    scale = []
    for slot, c in enumerate(classes):
        scale += [[slot / count, _rgba(class_color(c), 0.15)], [(slot + 0.9) / count, _rgba(class_color(c), 0.85)]]
    scale.append([1, scale[-1][1]])
    marker = {"color": value[keep], "cmin": 0, "cmax": count, "colorscale": scale, "size": 4 if three_d else 7}
    return {"type": "scatter3d" if three_d else "scattergl", "mode": "markers", **_xyz(positions[keep]),
            "marker": marker, "legendgroup": kind, "showlegend": False, "hoverinfo": "skip", "name": f"{kind} trail"}


def _sphere(resolution: int = 16) -> dict[str, Any]:
    """A translucent low-resolution unit sphere that takes no hover."""
    theta, phi = np.meshgrid(np.linspace(0, 2 * np.pi, 2 * resolution), np.linspace(0, np.pi, resolution))
    return {"type": "surface", "x": np.cos(theta) * np.sin(phi), "y": np.sin(theta) * np.sin(phi), "z": np.cos(phi),
            "opacity": 0.12, "colorscale": [[0, "#888888"], [1, "#888888"]], "showscale": False,
            "hoverinfo": "skip", "name": "unit sphere", "showlegend": False}


Placements = dict[str, tuple[list[int], np.ndarray]]


def placements(points: np.ndarray, train_classes: Sequence[int], *, normalized: bool = False,
               class_vectors: Mapping[str, np.ndarray] | None = None, class_means: np.ndarray | None = None,
               trails: Mapping[str, np.ndarray] | None = None) -> tuple[Placements, Placements]:
    """Where each kind of class vector (and ``MEANS``) is drawn, now and along its trail: kind →
    (the class id of each row, positions: rows × k now, T × rows × k for a trail). Every renderer
    places them alike: on the unit sphere for a ``normalized`` loss, weights scaled to the points."""
    vectors = {kind: np.asarray(v, dtype=float) for kind, v in (class_vectors or {}).items()}
    if class_means is not None:
        vectors[MEANS] = np.asarray(class_means, dtype=float)
    scale = _weight_scale(vectors.get("weights"), np.asarray(points, dtype=float))
    now = {kind: (_rows(kind, len(v), train_classes), _place(kind, v, normalized, scale))
           for kind, v in vectors.items()}
    past: Placements = {}
    for kind, positions in (trails or {}).items():
        positions = np.asarray(positions, dtype=float)
        rows = _rows(kind, positions.shape[1], train_classes) if positions.ndim == 3 else []
        if len(positions) and rows:
            past[kind] = (rows, _place(kind, positions, normalized, scale))
    return now, past


def decision_traces(decision: Mapping[str, np.ndarray], train_classes: Sequence[int]) -> list[dict[str, Any]]:
    """A 2-D decision map (:mod:`dmlviz.regions`) under the features: every cell shaded lightly in the colour
    of the class that wins it, a margin loss's band (where the winner still loses once its margin counts)
    shaded grey, and the boundaries between classes as thin lines. Always these three traces, empty where
    the map has nothing to show, so that the frames of a replay hold the same traces."""
    empty = {"showscale": False, "hoverinfo": "skip", "showlegend": False}
    if "winner" not in decision:
        return [{"type": "heatmap", "z": [[None]], "name": "decision regions", **empty},
                {"type": "heatmap", "z": [[None]], "name": "margin band", **empty},
                {"type": "scattergl", "mode": "lines", "x": [], "y": [], "name": "decision boundaries", **empty}]
    box, winner = np.asarray(decision["box"], dtype=float), np.asarray(decision["winner"])
    rows, cols = winner.shape
    dx, dy = (box[0, 1] - box[0, 0]) / cols, (box[1, 1] - box[1, 0]) / rows
    # The cells' centres as arrays, not x0 and dx: a replay's frames move the grid with the features, and
    # plotly.js animates arrays from frame to frame but keeps a heatmap's first x0 and dx.
    grid = {"x": box[0, 0] + dx * (np.arange(cols) + 0.5), "y": box[1, 0] + dy * (np.arange(rows) + 0.5),
            "zsmooth": False, "showscale": False, "hoverinfo": "skip", "showlegend": False}
    count = len(train_classes)
    # One flat step of the colour scale per training class: cell value i is class train_classes[i]'s colour.
    steps = [[edge / count, class_color(int(train_classes[i]))] for i in range(count) for edge in (i, i + 1)]
    traces = [{"type": "heatmap", "z": winner, "zmin": -0.5, "zmax": count - 0.5, "colorscale": steps,
               "opacity": 0.16, "name": "decision regions", **grid}]
    band = regions.band_of(decision)
    band = np.where(band, 1.0, np.nan) if band is not None else [[None]]
    traces.append({"type": "heatmap", "z": band, "zmin": 0, "zmax": 1, "opacity": 0.22,
                   "colorscale": [[0, "#444444"], [1, "#444444"]], "name": "margin band", **grid})
    traces.append({"type": "scattergl", "mode": "lines", **boundary_lines(winner, box),
                   "line": {"color": "rgba(60, 60, 60, 0.55)", "width": 1}, "name": "decision boundaries",
                   "hoverinfo": "skip", "showlegend": False})
    return traces


def sphere_decision_traces(decision: Mapping[str, np.ndarray], train_classes: Sequence[int]) -> list[dict[str, Any]]:
    """A decision map on the unit sphere (``regions.sphere_centres``) as the sphere itself, coloured by the
    class that wins each place (darker in a margin loss's band), with the boundaries as arcs just above
    it. Always these two traces, empty without a map, for the frames of a replay."""
    common = {"hoverinfo": "skip", "showlegend": False}
    if "winner" not in decision or "box" in decision:
        return [{"type": "surface", "x": [[0.0]], "y": [[0.0]], "z": [[0.0]], "opacity": 0.0, "showscale": False,
                 "name": "decision regions", **common},
                {"type": "scatter3d", "mode": "lines", "x": [], "y": [], "z": [], "name": "decision boundaries",
                 **common}]
    winner = np.asarray(decision["winner"])
    rows, cols = winner.shape
    count = len(train_classes)
    band = regions.band_of(decision)
    value = winner + (count * band if band is not None else 0)  # a class's band: its own darker colour
    centres = regions.sphere_centres(rows).reshape(rows, cols, 3)
    # Close the seam at azimuth 2π: the last column joins the first.
    surface = np.concatenate([centres, centres[:, :1]], axis=1) * 0.99
    value = np.concatenate([value, value[:, :1]], axis=1)
    colours = [class_color(int(c)) for c in train_classes] + [_darker(class_color(int(c))) for c in train_classes]
    steps = [[edge / (2 * count), colours[i]] for i in range(2 * count) for edge in (i, i + 1)]
    line = boundary_lines(winner, np.array([[0.0, 2 * np.pi], [0.0, np.pi]]))  # x: azimuth, y: polar angle
    p, t = line["x"], line["y"]
    arcs = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=1) * 1.004
    return [{"type": "surface", "name": "decision regions", **common, "x": surface[..., 0], "y": surface[..., 1],
             "z": surface[..., 2], "surfacecolor": value,
             "cmin": -0.5, "cmax": 2 * count - 0.5, "colorscale": steps, "opacity": 0.35, "showscale": False,
             "lighting": {"ambient": 1.0, "diffuse": 0.0, "specular": 0.0}},
            {"type": "scatter3d", "mode": "lines", **_xyz(arcs), "name": "decision boundaries", **common,
             "line": {"color": "rgba(50, 50, 50, 0.7)", "width": 2}}]


def _darker(color: str) -> str:
    """The colour at 55 % of its brightness: a class's margin band on the sphere."""
    red, green, blue = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return f"#{int(red * 0.55):02X}{int(green * 0.55):02X}{int(blue * 0.55):02X}"


@dataclass(frozen=True, eq=False)
class Forces:
    """Where a loss pushes some points, in drawing coordinates: ``bases`` and ``vectors`` (n × k each),
    the points' classes ``labels`` (n)."""

    bases: np.ndarray
    vectors: np.ndarray
    labels: np.ndarray


#: The longest arrows (the 90th percentile of their lengths) are this share of the points' span: long enough
#: to see a direction, short enough not to hide the points.
ARROW_SHARE = 0.08


def force_traces(forces: Forces, points: np.ndarray) -> list[dict[str, Any]]:
    """Arrows from each point of ``forces`` along its push, scaled together (``ARROW_SHARE``), so lengths
    compare within a frame: one line trace of the shafts and one of dots at their heads. Always these two
    traces, empty without forces, so that the frames of a replay hold the same traces."""
    three_d = forces.bases.shape[1] == 3
    kind = "scatter3d" if three_d else "scattergl"
    common = {"type": kind, "hoverinfo": "skip", "showlegend": False, "legendgroup": "forces"}
    lengths = np.linalg.norm(forces.vectors, axis=1)
    if not len(lengths) or not np.isfinite(lengths).all() or np.percentile(lengths, 90) <= 0:
        return [{**common, "mode": "lines", **_xyz(np.empty((0, 3 if three_d else 2))), "name": "forces"},
                {**common, "mode": "markers", **_xyz(np.empty((0, 3 if three_d else 2))), "name": "force heads"}]
    finite = np.asarray(points, dtype=float)
    finite = finite[np.all(np.isfinite(finite), axis=1)]
    span = float((finite.max(0) - finite.min(0)).max()) if len(finite) else 1.0
    heads = forces.bases + forces.vectors * (ARROW_SHARE * span / np.percentile(lengths, 90))
    shafts = np.concatenate([np.stack([forces.bases, heads], 1),
                             np.full((len(heads), 1, heads.shape[1]), np.nan)], 1).reshape(-1, heads.shape[1])
    return [{**common, "mode": "lines", **_xyz(shafts), "name": "forces",
             "line": {"color": "rgba(30, 30, 30, 0.65)", "width": 3 if three_d else 1.5}},
            {**common, "mode": "markers", **_xyz(heads), "name": "force heads",
             "marker": {"size": 3 if three_d else 5, "color": [class_color(int(c)) for c in forces.labels],
                        "line": {"color": "rgba(30, 30, 30, 0.8)", "width": 1}}}]


def boundary_lines(winner: np.ndarray, box: np.ndarray) -> dict[str, np.ndarray]:
    """The edges between cells won by different classes, as one line trace's x and y (NaN between lines);
    edges that continue one another are one line, so a straight boundary costs two points, not a hundred."""
    rows, cols = winner.shape
    xs = np.linspace(box[0, 0], box[0, 1], cols + 1)
    ys = np.linspace(box[1, 0], box[1, 1], rows + 1)
    # Vertical lines between columns c and c + 1, over runs of rows; horizontal ones between rows r and r + 1.
    column, start, stop = _runs(winner[:, 1:] != winner[:, :-1])
    vertical = np.stack([np.stack([xs[column + 1]] * 2, 1), np.stack([ys[start], ys[stop]], 1)], 2)
    row, start, stop = _runs((winner[1:, :] != winner[:-1, :]).T)
    horizontal = np.stack([np.stack([xs[start], xs[stop]], 1), np.stack([ys[row + 1]] * 2, 1)], 2)
    lines = np.concatenate([vertical, horizontal])  # L × 2 ends × (x, y)
    line = np.concatenate([lines, np.full((len(lines), 1, 2), np.nan)], 1).reshape(-1, 2)
    return {"x": line[:, 0], "y": line[:, 1]}


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The runs of True down each column of ``mask``: (column, first row, row after the last) of each."""
    steps = np.diff(np.pad(mask, ((1, 1), (0, 0))).astype(np.int8), axis=0).T  # columns × rows + 1
    starts, stops = np.argwhere(steps == 1), np.argwhere(steps == -1)  # both in (column, row) order: they pair
    return starts[:, 0], starts[:, 1], stops[:, 1]


def feature_traces(points: np.ndarray, labels: np.ndarray, class_names: Sequence[str], train_classes: Sequence[int],
                   *, normalized: bool = False, class_vectors: Mapping[str, np.ndarray] | None = None,
                   class_means: np.ndarray | None = None, trails: Mapping[str, np.ndarray] | None = None,
                   selected: int | None = None, decision: Mapping[str, np.ndarray] | None = None,
                   forces: Forces | None = None) -> list[dict[str, Any]]:
    """The traces of :func:`feature_figure` (without the unit sphere), for one panel or several; a 2-D
    ``decision`` map (:func:`decision_traces`) goes under everything else, ``forces`` (:func:`force_traces`)
    over the points."""
    points = np.asarray(points, dtype=float)
    labels = np.asarray(labels)
    if points.ndim != 2 or points.shape[1] not in (2, 3):
        raise ValueError(f"points must be P × 2 or P × 3, got shape {points.shape}")
    three_d = points.shape[1] == 3
    trained = {int(c) for c in train_classes}
    names = {c: str(class_names[c]) + ("" if c in trained else " (unseen)") for c in range(len(class_names))}

    traces = [] if decision is None else (sphere_decision_traces if three_d else decision_traces)(decision,
                                                                                                  train_classes)
    for c in np.unique(labels).tolist():
        index = np.flatnonzero(labels == c)
        traces.append(_class_points(points[index], index, names[c], c, c not in trained, three_d))

    vectors, past = placements(points, train_classes, normalized=normalized, class_vectors=class_vectors,
                               class_means=class_means, trails=trails)
    for kind, (rows, positions) in past.items():
        traces.append(_trail_trace(kind, positions, rows, three_d))
    for kind, (rows, positions) in vectors.items():
        traces += _class_vector_traces(kind, positions, rows, names, three_d)

    if forces is not None:
        traces += force_traces(forces, points)
    if selected is not None and 0 <= selected < len(points):
        ring = {"color": "#111111", "size": 12 if three_d else 18, "symbol": "circle-open",
                "line": {"color": "#111111", "width": 2}}
        traces.append({"type": "scatter3d" if three_d else "scattergl", "mode": "markers",
                       **_xyz(points[selected][None]), "marker": ring, "name": f"probe #{selected}",
                       "showlegend": False, "hoverinfo": "skip"})
    return traces


def feature_figure(points: np.ndarray, labels: np.ndarray, class_names: Sequence[str], train_classes: Sequence[int],
                   *, normalized: bool = False, class_vectors: Mapping[str, np.ndarray] | None = None,
                   class_means: np.ndarray | None = None, trails: Mapping[str, np.ndarray] | None = None,
                   selected: int | None = None, uirevision: str = "features", height: int | None = None,
                   title: str | None = None, axis_range: np.ndarray | None = None,
                   decision: Mapping[str, np.ndarray] | None = None, forces: Forces | None = None) -> go.Figure:
    """The probe features (P × 2 or P × 3), one trace per class, with what the loss learns drawn on top.

    Classes outside ``train_classes`` are unseen: hollow markers, named "… (unseen)". Each point's
    ``customdata`` is its probe index (its row in ``points``), so a selection maps back to the probe.
    Weights are lines from the origin (unit length for a ``normalized`` loss, else see
    ``_weight_scale``); other class vectors are outlined markers, the class means plus signs (squares in 3-D).
    ``trails`` maps a class-vector kind (or ``MEANS``) to its earlier positions, T × rows × k, oldest
    first. The legend toggles each class's points and each kind of class vector (with its trails).
    ``axis_range``: the view, k × 2 (low, high of each axis; see ``AxisFollower``); None fits the axes to the
    data. In 3-D it is the scene's range. In 2-D the axes stay autoranged, held open by an invisible line
    across the view: a range sent with every frame would undo a person's pan or zoom whenever the view
    moves, while an autoranged axis that they zoomed stays as they left it (``uirevision``) until they reset it.
    """
    traces = feature_traces(points, labels, class_names, train_classes, normalized=normalized,
                            class_vectors=class_vectors, class_means=class_means, trails=trails, selected=selected,
                            decision=decision, forces=forces)
    three_d = np.shape(points)[1] == 3
    layout: dict[str, Any] = {"template": _TEMPLATE, "uirevision": uirevision, "height": height,
                              "title": {"text": title} if title else None,
                              "margin": {**_MARGIN, "t": MODEBAR_PX + (15 if title else 5)},
                              "legend": {"itemsizing": "constant", "x": 1.02, "y": 1}}
    if three_d:
        if normalized:
            traces.append(_sphere())
        layout["scene"] = {"aspectmode": "data", "uirevision": uirevision}
        if axis_range is not None:
            layout["scene"].update(scene_ranges(axis_range))
    else:
        layout["yaxis"] = {"scaleanchor": "x", "scaleratio": 1}
        if axis_range is not None:
            traces.insert(0, _view_anchor(axis_range))
        if normalized:
            layout["shapes"] = [_unit_circle("x", "y")]
    return go.Figure(data=traces, layout=layout)


# -- axis ranges --------------------------------------------------------------------------------------

def cartesian_ranges(axis_range: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
    """The x and y axis of a 2-D view (k × 2: low, high), autorange off. With the y axis anchored to
    x (equal scale), plotly widens one range to the plot's shape, never narrows it."""
    box = np.asarray(axis_range, dtype=float)
    return ({"range": box[0].tolist(), "autorange": False},
            {"range": box[1].tolist(), "autorange": False})


def scene_ranges(axis_range: np.ndarray) -> dict[str, Any]:
    """A 3-D scene's axes for a view (3 × 2: low, high), autorange off, drawn in true proportions:
    a cube when the three spans are equal (as ``AxisFollower(square=True)`` makes them)."""
    box = np.asarray(axis_range, dtype=float)
    spans = box[:, 1] - box[:, 0]
    scene: dict[str, Any] = {f"{axis}axis": {"range": box[i].tolist(), "autorange": False}
                             for i, axis in enumerate("xyz")}
    if np.allclose(spans, spans.max()):
        scene["aspectmode"] = "cube"
    else:
        ratio = spans / spans.max()
        scene.update(aspectmode="manual", aspectratio=dict(zip("xyz", ratio.tolist(), strict=True)))
    return scene


def _box(coords: np.ndarray, k: int) -> np.ndarray | None:
    """The low and high of each of the k axes over the finite rows of ``coords`` (… × k), or None."""
    rows = np.asarray(coords, dtype=float).reshape(-1, k)
    rows = rows[np.all(np.isfinite(rows), axis=1)]
    return np.stack([rows.min(0), rows.max(0)], axis=1) if len(rows) else None


def hull(*boxes: np.ndarray | None) -> np.ndarray | None:
    """The smallest box that holds every given box (None ones left out), or None."""
    given = [np.asarray(b, dtype=float) for b in boxes if b is not None]
    if not given:
        return None
    return np.stack([np.min([b[:, 0] for b in given], axis=0), np.max([b[:, 1] for b in given], axis=0)], axis=1)


def drawing_box(points: np.ndarray, train_classes: Sequence[int] = (), *, normalized: bool = False,
                class_vectors: Mapping[str, np.ndarray] | None = None, class_means: np.ndarray | None = None,
                trails: Mapping[str, np.ndarray] | None = None) -> np.ndarray | None:
    """Everything :func:`feature_figure` draws, as a box (k × 2: low, high of each axis): the points,
    the class means and class vectors where they are placed (see :func:`placements`; weights as lines
    from the origin), and their trails. A ``normalized`` drawing is held by the unit circle (sphere),
    so its box is the unit box (or more, should something lie outside it). None: nothing finite to draw."""
    points = np.asarray(points, dtype=float)
    k = points.shape[1]
    now, past = placements(points, train_classes, normalized=normalized, class_vectors=class_vectors,
                           class_means=class_means, trails=trails)
    boxes = [_box(points, k)]
    boxes += [_box(positions, k) for _, positions in (*now.values(), *past.values())]
    if any(kind in DIRECTIONS for kind in now):
        boxes.append(np.zeros((k, 2)))  # the lines start at the origin
    if normalized:
        boxes.append(np.tile([-1.0, 1.0], (k, 1)))
    return hull(*boxes)


def panels_box(panels: Sequence[FeaturePanel], train_classes: Sequence[int] = ()) -> np.ndarray | None:
    """The box that holds everything drawn in every panel (see :func:`drawing_box`)."""
    return hull(*(drawing_box(p.points, train_classes, normalized=p.normalized, class_vectors=p.class_vectors,
                              class_means=p.class_means, trails=p.trails) for p in panels if len(p.points)))


def _unit_circle(xref: str, yref: str) -> dict[str, Any]:
    return {"type": "circle", "x0": -1, "y0": -1, "x1": 1, "y1": 1, "layer": "below", "xref": xref, "yref": yref,
            "line": {"color": "#999999", "width": 1}}


@dataclass(frozen=True, eq=False)
class FeaturePanel:
    """One run's feature space in a comparison grid."""

    title: str
    points: np.ndarray  # P × 2 or P × 3, rows in probe order (the same probe set in every panel)
    normalized: bool = False
    class_vectors: Mapping[str, np.ndarray] | None = None
    class_means: np.ndarray | None = None
    trails: Mapping[str, np.ndarray] | None = None
    decision: Mapping[str, np.ndarray] | None = None  # a 2-D decision map to shade under the points
    forces: Forces | None = None  # arrows on some of the points: where the loss pushes them


def comparison_figure(panels: Sequence[FeaturePanel], labels: np.ndarray, class_names: Sequence[str],
                      train_classes: Sequence[int], *, selected: int | None = None, uirevision: str = "compare",
                      height: int | None = None, axis_range: np.ndarray | None = None) -> go.Figure:
    """Several runs' feature spaces side by side (one row up to three, else two columns) on the same axes:
    2-D panels share their ranges and zoom (``matches``), 3-D scenes get the same ranges (the live
    chart gives them one camera). Classes keep their colours; one legend toggles a class (or a kind
    of class vector) in every panel, and ``selected`` rings the same probe point everywhere.
    ``axis_range``: the view of every panel (k × 2: low, high of each axis), as an ``AxisFollower`` keeps
    it; None: a square (cube) about the origin that holds the panels' points."""
    if not panels:
        raise ValueError("a comparison figure needs at least one panel")
    three_d = np.shape(panels[0].points)[1] == 3
    cols = 2 if len(panels) == 4 else len(panels)
    rows = math.ceil(len(panels) / cols)
    traces: list[dict[str, Any]] = []
    # The legend in rows under the panels, not beside them: three panels then share the whole width.
    # 3-D scenes have no tick labels at their edges, so they need no margin at the sides either.
    margin = {"l": 0, "r": 0, "b": 0} if three_d else _MARGIN
    layout: dict[str, Any] = {"template": _TEMPLATE, "uirevision": uirevision, "height": height,
                              "margin": {**margin, "t": _PANEL_TOP}, "annotations": [], "shapes": [],
                              "legend": {"itemsizing": "constant", "orientation": "h", "x": 0.5, "xanchor": "center",
                                         "y": 0 if three_d else -0.08, "yanchor": "top"}}
    if not three_d:
        layout["grid"] = {"rows": rows, "columns": cols, "pattern": "independent", "xgap": 0.06, "ygap": 0.12}
    if axis_range is None:
        extent = panel_extent(panels)
        axis_range = np.tile([-extent, extent], (3 if three_d else 2, 1))
    for i, panel in enumerate(panels):
        suffix = "" if i == 0 else str(i + 1)
        panel_traces = feature_traces(panel.points, labels, class_names, train_classes, normalized=panel.normalized,
                                      class_vectors=panel.class_vectors, class_means=panel.class_means,
                                      trails=panel.trails, selected=selected, decision=panel.decision,
                                      forces=panel.forces)
        if three_d and panel.normalized:
            panel_traces.append(_sphere())
        for trace in panel_traces:
            if three_d:
                trace["scene"] = f"scene{suffix}"
            else:
                trace.update(xaxis=f"x{suffix}", yaxis=f"y{suffix}")
            if i > 0:
                trace["showlegend"] = False
        traces += panel_traces
        row, col = divmod(i, cols)
        x0, x1 = col / cols, (col + 1) / cols
        y1, y0 = 1 - row / rows, 1 - (row + 1) / rows
        if three_d:
            scene = {"domain": {"x": [x0, x1], "y": [y0, y1]}, "uirevision": uirevision, **scene_ranges(axis_range)}
            for i_axis, axis in enumerate("xyz"):
                scene[f"{axis}axis"].update(scene_ticks(axis_range[i_axis], panel.normalized))
            layout[f"scene{suffix}"] = scene
            title = {"xref": "paper", "yref": "paper", "x": (x0 + x1) / 2, "y": y1}
        else:
            # Every panel on the first one's axes: the same ranges, and a zoom in one zooms them all. The
            # view holds them open as in feature_figure, so a person's zoom survives the view's moves.
            if i == 0:
                traces.insert(0, {**_view_anchor(axis_range), "xaxis": "x", "yaxis": "y"})
            layout[f"xaxis{suffix}"] = {"matches": "x"} if i else {}
            layout[f"yaxis{suffix}"] = {"matches": "y"} if i else {"scaleanchor": "x", "scaleratio": 1}
            if panel.normalized:
                layout["shapes"].append(_unit_circle(f"x{suffix}", f"y{suffix}"))
            title = {"xref": f"x{suffix} domain", "yref": f"y{suffix} domain", "x": 0.5, "y": 1}
        layout["annotations"].append({**title, "text": panel.title, "showarrow": False, "yanchor": "bottom",
                                      "font": {"size": 14}})
    return go.Figure(data=traces, layout=layout)


def scene_ticks(axis_range: Sequence[float], normalized: bool) -> dict[str, Any]:
    """A comparison scene's tick labels, set on purpose: plotly's own crowd a small scene and leave a
    stray "0" at its edge. None on the unit sphere (its scale is known); elsewhere the multiples of a
    round step, three to five of them in the view."""
    if normalized:
        return {"showticklabels": False}
    low, high = (float(v) for v in axis_range)
    step = _round_step((high - low) / 3)
    values = np.arange(math.ceil(low / step), math.floor(high / step) + 1) * step
    return {"tickvals": values.tolist(), "tickformat": ".3~g"}


def _round_step(value: float) -> float:
    """The largest 1, 2 or 5 × 10^k that is at most ``value`` (> 0)."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return max(m * power for m in (1, 2, 5) if m * power <= value)


def panel_extent(panels: Sequence[FeaturePanel]) -> float:
    """Half the side of the square (cube) that holds every panel's points, 5 % to spare."""
    largest = max((float(np.nanpercentile(np.abs(p.points), 99.5)) for p in panels if len(p.points)), default=1.0)
    return 1.05 * max(largest, 1.05 if any(p.normalized for p in panels) else 1e-6)


def placeholder_figure(text: str, height: int | None = None, webgl: bool = False) -> go.Figure:
    """An empty chart with a note, in the place a run's figure will take. ``webgl``: with an empty
    WebGL trace, so the browser has its WebGL context ready when the first frame arrives."""
    data = [{"type": "scattergl", "x": [], "y": [], "showlegend": False, "hoverinfo": "skip"}] if webgl else []
    return go.Figure(data=data, layout={
        "template": _TEMPLATE, "height": height, "margin": _MARGIN | {"t": 10}, "xaxis": {"visible": False},
        "yaxis": {"visible": False}, "annotations": [_NOTE | {"text": text, "font": {"size": 14, "color": "#777777"}}],
    })


def histogram_figure(hist: Any, uirevision: str = "hist") -> go.Figure:
    """Distances within and between classes as two overlaid histograms, titled with their overlap.

    ``hist`` is a ``geometry.DistanceHistogram``: ``metric`` ("euclidean" or "angular", in degrees),
    bin ``edges``, ``intra`` and ``inter`` (fractions per bin), ``overlap``, ``gap`` and the two means.
    """
    angular = hist.metric == "angular"
    layout: dict[str, Any] = {
        "template": _TEMPLATE, "uirevision": uirevision, "barmode": "overlay", "bargap": 0,
        "margin": {**_MARGIN, "t": MODEBAR_PX + 30},
        "xaxis": {"title": {"text": "angle (°)" if angular else "Euclidean distance"}},
        "yaxis": {"title": {"text": "fraction of pairs"}, "tickformat": ".0%"},
        # The title at the top left, beside the mode bar; the legend in a row of its own below both.
        "legend": {"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"},
    }
    edges, intra, inter = (np.asarray(a, dtype=float) for a in (hist.edges, hist.intra, hist.inter))
    if len(edges) < 2 or intra.size == 0 or inter.size == 0:
        layout.update(annotations=[_NOTE | {"text": "not enough classes"}], xaxis={"visible": False},
                      yaxis={"visible": False})
        return go.Figure(layout=layout)

    shapes = [{"type": "line", "x0": mean, "x1": mean, "y0": 0, "y1": 1, "yref": "paper",
               "line": {"color": color, "dash": "dash", "width": 1.5}}
              for mean, color in zip((hist.intra_mean, hist.inter_mean), HISTOGRAM_COLORS, strict=True)
              if math.isfinite(mean)]
    layout.update(shapes=shapes, title={"text": histogram_summary(hist), "x": 0.01, "y": 1, "yref": "container",
                                        "yanchor": "top", "pad": {"t": 8}, "font": {"size": 14}})
    return go.Figure(data=histogram_traces(hist), layout=layout)


#: Within and between classes: Paul Tol's "bright" blue and red, apart from the class palette on purpose.
HISTOGRAM_COLORS = ("#4477AA", "#EE6677")


def histogram_traces(hist: Any) -> list[dict[str, Any]]:
    """The two bar traces of :func:`histogram_figure` (empty bars when there is nothing to count)."""
    edges, unit = np.asarray(hist.edges, dtype=float), "°" if hist.metric == "angular" else ""
    centres, widths = ((edges[:-1] + edges[1:]) / 2, np.diff(edges)) if len(edges) > 1 else ([], [])
    return [{"type": "bar", "x": centres, "y": np.asarray(fractions, dtype=float) if len(centres) else [],
             "width": widths, "name": name, "opacity": 0.6, "marker": {"color": color},
             "hovertemplate": f"{name}<br>%{{x:.3g}}{unit}: %{{y:.1%}}<extra></extra>"}
            for name, fractions, color in (("same class", hist.intra, HISTOGRAM_COLORS[0]),
                                           ("different classes", hist.inter, HISTOGRAM_COLORS[1]))]


def short_number(value: float) -> str:
    """A number as a page shows it: three significant digits ("0.00214", "2.35", "123"), whole
    thousands with separators ("12,345"), "—" for a missing or infinite value."""
    if not math.isfinite(value):
        return "—"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def histogram_summary(hist: Any) -> str:
    """"overlap 3.2 % · gap 0.41": how far apart the two histograms are."""
    text = f"overlap {hist.overlap:.1%}"
    if hist.gap > 0:
        text += f" · gap {hist.gap:.3g}{'°' if hist.metric == 'angular' else ''}"
    return text


# Paul Tol's "bright" scheme: the lines of one panel.
CURVE_COLORS = ("#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB")


def curve_panels(series: Mapping[str, np.ndarray]) -> list[tuple[str, list[str]]]:
    """The panels that have at least one finite value, each with its metrics that do, in the catalog's
    order (``metrics.PANELS``, then panels of metrics it does not know)."""
    drawn = [spec for name, values in series.items()
             if (spec := metric_spec(name)).panel and np.isfinite(np.asarray(values, dtype=float)).any()]
    panels: dict[str, list[str]] = {}
    for spec in sorted(drawn, key=lambda spec: (_panel_order(spec.panel), order(spec.name))):
        panels.setdefault(spec.panel, []).append(spec.name)
    return list(panels.items())


def _panel_order(panel: str | None) -> int:
    return PANELS.index(panel) if panel in PANELS else len(PANELS)


def _y_axis(specs: Sequence[MetricSpec], *, whole_scale: bool) -> dict[str, Any]:
    """A panel's y axis from what its metrics are: scores that are fractions on their whole scale (runs
    and panels compare at a glance), a fraction to drive down (the histograms' overlap, a few per cent)
    in per cent from zero, anything else as its data ranges."""
    if not specs or not all(spec.fraction for spec in specs):
        return {}
    if all(spec.higher_is_better for spec in specs):
        return {"range": [0, 1.02]} if whole_scale else {}
    return {"tickformat": ".0%", "rangemode": "tozero"}


def _curve(name: str, steps: np.ndarray, values: np.ndarray, panel: str, color: str,
           epochs_per_step: float | None) -> dict[str, Any]:
    """One metric's line (its finite values), divided by its largest magnitude on the schedules panel,
    where its name says its current value."""
    keep = np.isfinite(values)
    x, raw = steps[keep], values[keep]
    spec = metric_spec(name)
    label, y = spec.legend, raw
    if panel == SCHEDULES:
        peak = float(np.max(np.abs(raw)))
        y = raw / peak if peak > 0 else raw
        label = f"{spec.legend} = {short_number(float(raw[-1]))}"
    columns = [raw] if epochs_per_step is None else [raw, x * epochs_per_step]
    hover = f"{spec.legend}: %{{customdata[0]:.4g}}"  # the unified hover names the step
    if epochs_per_step is not None:
        hover += "<br>epoch %{customdata[1]:.2f}"
    mode = "lines+markers" if name == "test_acc" else "markers" if len(x) == 1 else "lines"
    return {"type": "scatter", "x": x, "y": y, "customdata": np.column_stack(columns), "mode": mode, "name": label,
            "line": {"color": color, "width": 1.5}, "marker": {"color": color, "size": 7}, "showlegend": False,
            "hovertemplate": hover + "<extra></extra>"}


def _panel_title(title: str, traces: list[dict[str, Any]]) -> str:
    """A panel's title that names its lines in their colours ("Accuracy: train · probe · test"): the
    curves' legend, beside the lines it explains, in no box that could scroll. A panel of one metric
    is named by its title alone; the schedules panel always says which schedules it draws."""
    if len(traces) == 1 and title != SCHEDULES:
        return title
    names = (f"<span style='color:{t['line']['color']}'>{html.escape(t['name'])}</span>" for t in traces)
    return f"{title}: {' · '.join(names)}"


def curves_figure(steps: np.ndarray, series: Mapping[str, np.ndarray], *, epochs_per_step: float | None = None,
                  uirevision: str = "curves", height: int | None = None) -> go.Figure:
    """Training curves against the step, in small panels that zoom together; only panels with data appear.

    ``series`` maps a metric name to values aligned with ``steps`` (NaN where not recorded); the
    catalog (:mod:`dmlviz.metrics`) says which panel draws each. The schedules share one panel with
    ``lr``, each divided by its largest magnitude and named with its current value. Each panel's title names
    its lines in their colours (no legend box: it scrolled when it outgrew the chart).
    The panels are a ``layout.grid`` that plotly.js lays out, not ``make_subplots``, whose full
    axis objects cost ~20 ms per figure to build and validate.
    """
    steps = np.asarray(steps, dtype=float)
    panels = curve_panels(series)
    cols = min(3, len(panels)) or 1
    rows = math.ceil(len(panels) / cols) or 1
    layout: dict[str, Any] = {"template": _TEMPLATE, "uirevision": uirevision, "margin": {**_MARGIN, "t": _PANEL_TOP},
                              "height": height or 60 + 200 * rows, "hovermode": "x unified", "annotations": [],
                              "grid": {"rows": rows, "columns": cols, "pattern": "independent",
                                       "xgap": 0.12, "ygap": 0.35}}
    if not panels:
        layout.update(annotations=[_NOTE | {"text": "no data yet"}], xaxis={"visible": False}, yaxis={"visible": False})
    traces = []
    for i, (title, names) in enumerate(panels):
        axis = "" if i == 0 else str(i + 1)
        panel = [{**_curve(name, steps, np.asarray(series[name], dtype=float), title,
                           CURVE_COLORS[j % len(CURVE_COLORS)], epochs_per_step),
                  "xaxis": f"x{axis}", "yaxis": f"y{axis}"} for j, name in enumerate(names)]
        traces += panel
        xaxis: dict[str, Any] = {} if i == 0 else {"matches": "x"}
        if i + cols >= len(panels):  # nothing below this panel
            xaxis["title"] = {"text": "step"}
        yaxis = _y_axis([metric_spec(name) for name in names], whole_scale=True)
        layout.update({f"xaxis{axis}": xaxis, f"yaxis{axis}": yaxis})
        layout["annotations"].append({"text": _panel_title(title, panel), "showarrow": False, "xref": f"x{axis} domain",
                                      "yref": f"y{axis} domain", "x": 0.5, "y": 1, "yanchor": "bottom",
                                      "font": {"size": 13}})
    return go.Figure(data=traces, layout=layout)


# -- comparisons --------------------------------------------------------------------------------------

#: Colours of the runs of a comparison: Paul Tol's "vibrant" scheme, apart from the class palette.
RUN_COLORS = ("#0077BB", "#EE7733", "#009988", "#CC3311")
#: The metrics compared over time, one panel each, titled by the catalog.
COMPARED_METRICS: tuple[str, ...] = ("loss", "probe_acc", "p_at_1", "map_at_r", "fisher_ratio", "overlap",
                                     "intra_angle", "inter_angle")


def run_color(slot: int) -> str:
    return RUN_COLORS[slot % len(RUN_COLORS)]


def histogram_overlay_figure(histograms: Sequence[tuple[str, Any]], uirevision: str = "hist-compare",
                             height: int | None = None) -> go.Figure:
    """The intra- and inter-class distance histograms of several runs on shared axes: a run's colour,
    solid within classes, dashed between (the title says so). One legend entry per run, with its
    overlap, toggles both of its lines; the entries sit in a row above the plot, as in
    :func:`histogram_figure`, so the plot keeps the chart's width."""
    metric = histograms[0][1].metric if histograms else "euclidean"
    layout: dict[str, Any] = {
        "template": _TEMPLATE, "uirevision": uirevision, "height": height, "margin": {**_MARGIN, "t": MODEBAR_PX + 30},
        "xaxis": {"title": {"text": "angle (°)" if metric == "angular" else "Euclidean distance"}},
        "yaxis": {"title": {"text": "fraction of pairs"}, "tickformat": ".0%", "rangemode": "tozero"},
        "title": {"text": "Distances: solid within a class, dashed between classes", "x": 0.01, "y": 1,
                  "yref": "container", "yanchor": "top", "pad": {"t": 8}, "font": {"size": 14}},
        "legend": {"groupclick": "togglegroup", "orientation": "h", "x": 1, "xanchor": "right", "y": 1.02,
                   "yanchor": "bottom"},
    }
    traces = []
    for slot, (label, hist) in enumerate(histograms):
        edges = np.asarray(hist.edges, dtype=float)
        if len(edges) < 2:
            continue
        centres = (edges[:-1] + edges[1:]) / 2
        for part, fractions, dash in (("same class", hist.intra, "solid"), ("different classes", hist.inter, "dash")):
            within = part == "same class"
            name = f"{label} · overlap {hist.overlap:.1%}" if within else f"{label} · {part}"
            traces.append({"type": "scatter", "mode": "lines", "x": centres, "y": np.asarray(fractions, dtype=float),
                           "name": name, "legendgroup": label, "showlegend": within,
                           "line": {"color": run_color(slot), "dash": dash, "width": 2, "shape": "hvh"},
                           "hovertemplate": f"{label} · {part}<br>%{{x:.3g}}: %{{y:.1%}}<extra></extra>"})
    return go.Figure(data=traces, layout=layout)


def comparison_curves_figure(runs: Sequence[tuple[str, np.ndarray, Mapping[str, np.ndarray]]],
                             uirevision: str = "curves-compare", height: int | None = None) -> go.Figure:
    """One panel per metric (``COMPARED_METRICS`` that any run recorded), every run a line of its colour.

    ``runs``: (label, steps, series) per run, as ``RunStore.series`` gives them.
    """
    shown = [(name, metric_spec(name).title) for name in COMPARED_METRICS
             if any(np.isfinite(np.asarray(series.get(name, []), dtype=float)).any() for _, _, series in runs)]
    cols = min(4, len(shown)) or 1
    rows = math.ceil(len(shown) / cols) or 1
    layout: dict[str, Any] = {"template": _TEMPLATE, "uirevision": uirevision, "height": height or 60 + 200 * rows,
                              "margin": {**_MARGIN, "t": _PANEL_TOP}, "hovermode": "x unified", "annotations": [],
                              "grid": {"rows": rows, "columns": cols, "pattern": "independent",
                                       "xgap": 0.1, "ygap": 0.3}}
    traces = []
    for i, (name, title) in enumerate(shown):
        axis = "" if i == 0 else str(i + 1)
        for slot, (label, steps, series) in enumerate(runs):
            values = np.asarray(series.get(name, np.full(len(steps), np.nan)), dtype=float)
            keep = np.isfinite(values)
            traces.append({"type": "scatter", "mode": "lines", "x": np.asarray(steps, dtype=float)[keep],
                           "y": values[keep], "name": label, "legendgroup": label, "showlegend": i == 0,
                           "line": {"color": run_color(slot), "width": 1.5}, "xaxis": f"x{axis}",
                           "yaxis": f"y{axis}", "hovertemplate": f"{label}: %{{y:.4g}}<extra></extra>"})
        layout[f"xaxis{axis}"] = {"matches": "x"} if i else {}
        layout[f"yaxis{axis}"] = _y_axis([metric_spec(name)], whole_scale=False)
        layout["annotations"].append({"text": title, "showarrow": False, "xref": f"x{axis} domain",
                                      "yref": f"y{axis} domain", "x": 0.5, "y": 1, "yanchor": "bottom",
                                      "font": {"size": 13}})
    return go.Figure(data=traces, layout=layout)


# -- replays ----------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class ReplayFrame:
    """One frame of a replay: the slider's label, the feature traces, the distance histogram, what the
    title says of this frame and, when the view follows the run, this frame's view (k × 2: low, high)."""

    label: str
    traces: list[dict[str, Any]]
    histogram: Any  # a geometry.DistanceHistogram
    caption: str
    axis_range: np.ndarray | None = None


def histogram_ranges(histograms: Sequence[Any]) -> tuple[list[float], list[float]]:
    """The x and y ranges that hold every one of these distance histograms (a whole run's): from 0
    to the largest distance, and to the tallest bar with 5 % to spare."""
    top = max((float(np.max(h.edges)) for h in histograms if len(h.edges)), default=1.0)
    highest = max((float(np.max([*h.intra, *h.inter], initial=0.0)) for h in histograms), default=0.0) or 1.0
    return [0.0, top], [0.0, 1.05 * highest]


def _view_anchor(axis_range: np.ndarray) -> dict[str, Any]:
    """An invisible line across a 2-D view (k × 2), so that autorange shows at least that view."""
    box = np.asarray(axis_range, dtype=float)
    return {"type": "scattergl", "mode": "lines", "x": box[0], "y": box[1], "name": "view", "showlegend": False,
            "hoverinfo": "skip", "line": {"width": 0, "color": "rgba(0,0,0,0)"}}


def replay_figure(frames: Sequence[ReplayFrame], *, three_d: bool, normalized: bool, title: str,
                  axis_range: np.ndarray | None = None, histogram_range: tuple[Sequence[float], Sequence[float]]
                  | None = None, height: int | None = None) -> go.Figure:
    """A run played back in the browser: plotly frames (the same traces in the same order in each) of
    the feature space and, beside it, the distance histogram, with a slider and play / pause buttons.
    Needs no server once drawn.

    The feature space's axes: ``axis_range`` (k × 2), one view for every frame (a whole run's), or else
    each frame's own ``axis_range`` (a view that follows the run). The histogram's axes: ``histogram_range``
    ((x low, high), (y low, high)) for every frame, or else fitted to each frame.

    A frame's new axis ranges are not sent as ``xaxis.range``: plotly.js animates those apart from the
    redraw and, when the next frame arrives before that animation ends (a slow redraw, a slider
    dragged along), puts the old range back, so the axes would stay at the first frame's. Per-frame
    axes are therefore autoranged, held open in 2-D by an invisible line across the frame's view;
    3-D scenes take their ranges with the redraw itself.
    """
    follow = axis_range is None and all(frame.axis_range is not None for frame in frames)

    def data(frame: ReplayFrame) -> list[dict[str, Any]]:
        bars = [{**bar, "xaxis": "x2", "yaxis": "y2", "legendgroup": "histogram"}
                for bar in histogram_traces(frame.histogram)]
        anchor = [_view_anchor(frame.axis_range)] if follow and not three_d else []
        return [*frame.traces, *anchor, *bars]

    def frame_layout(frame: ReplayFrame) -> dict[str, Any]:
        layout: dict[str, Any] = {
            "title": {"text": f"{title}<br><sub>{frame.caption} · {histogram_summary(frame.histogram)}</sub>"}}
        if histogram_range is None:
            # Fitted to this frame (distances grow over a run). Explicit: plotly.js's animate does not
            # recompute an autoranged axis, so "autorange" here would leave the first frame's range.
            x, y = histogram_ranges([frame.histogram])
            layout.update(xaxis2={"range": x, "autorange": False}, yaxis2={"range": y, "autorange": False})
        if follow and three_d:
            layout["scene"] = scene_ranges(frame.axis_range)
        return layout

    first = data(frames[0])
    if three_d and normalized:
        first.append(_sphere())  # after every animated trace: frames leave it alone
    steps = [{"args": [[frame.label], {"frame": {"duration": 0, "redraw": True}, "mode": "immediate"}],
              "label": frame.label, "method": "animate"} for frame in frames]
    play = {"frame": {"duration": 120, "redraw": True}, "fromcurrent": True, "transition": {"duration": 0}}
    metric = frames[0].histogram.metric
    x2: dict[str, Any] = {"domain": [0.72, 1], "anchor": "y2",
                          "title": {"text": "angle (°)" if metric == "angular" else "Euclidean distance"}}
    y2: dict[str, Any] = {"domain": [0.1, 0.9], "anchor": "x2", "tickformat": ".0%", "rangemode": "tozero",
                          "title": {"text": "fraction of pairs"}}
    if histogram_range is not None:
        x2.update(range=list(histogram_range[0]), autorange=False)
        y2.update(range=list(histogram_range[1]), autorange=False)
    layout: dict[str, Any] = {
        "template": _TEMPLATE, "height": height, "barmode": "overlay", "bargap": 0,
        # The legend right of both plots, in a margin of its own: between them it covered the histogram's
        # axis on a narrow screen.
        "margin": {**_MARGIN, "t": 70, "b": 90, "r": LEGEND_MARGIN_PX},
        "legend": {"itemsizing": "constant", "x": 1.02, "xanchor": "left", "y": 1},
        "sliders": [{"steps": steps, "currentvalue": {"prefix": ""}, "pad": {"t": 30}, "len": 0.9, "x": 0.1}],
        "updatemenus": [{"type": "buttons", "showactive": False, "x": 0.0, "y": 0, "xanchor": "left",
                         "yanchor": "top", "pad": {"t": 30},
                         "buttons": [{"label": "▶", "method": "animate", "args": [None, play]},
                                     {"label": "❚❚", "method": "animate",
                                      "args": [[None], {"frame": {"duration": 0}, "mode": "immediate"}]}]}],
        "xaxis2": x2, "yaxis2": y2,
    }
    view = axis_range if axis_range is not None else frames[0].axis_range if follow else None
    if three_d:
        layout["scene"] = {"domain": {"x": [0, 0.58], "y": [0, 1]}, "aspectmode": "cube",
                           "camera": {"eye": {"x": 1.4, "y": 1.4, "z": 1.0}},
                           **(scene_ranges(view) if view is not None else {})}
    else:
        layout["xaxis"] = {"domain": [0, 0.58]}
        layout["yaxis"] = {"scaleanchor": "x", "scaleratio": 1}
        if axis_range is not None:
            x, y = cartesian_ranges(axis_range)
            layout["xaxis"].update(x)
            layout["yaxis"].update(y)
        if normalized:
            layout["shapes"] = [_unit_circle("x", "y")]
    figure = go.Figure(data=first, layout=layout, frames=[{"name": frame.label, "data": data(frame),
                                                           "layout": frame_layout(frame)} for frame in frames])
    return figure.update_layout(frame_layout(frames[0]))


def target_logit_figure(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], *, reference_scale: float = 1.0,
                        y_title: str = "target logit ÷ s", height: int | None = None,
                        angles: np.ndarray | None = None) -> go.Figure:
    """Target logits against θ in degrees (0–180), one line per entry of ``curves`` (a label to θ in
    radians and the values), over a dashed grey reference ``reference_scale``·cos θ: the plain
    normalised softmax, from which every margin bends the curve down. ``angles`` (degrees): samples' angles
    to their own class weight, as a histogram under the curves on the same θ axis."""
    reference = np.linspace(0.0, np.pi, 181)
    name = "cos θ" if reference_scale == 1 else f"{reference_scale:g}·cos θ"
    traces = [{"type": "scatter", "mode": "lines", "x": np.degrees(reference), "y": reference_scale * np.cos(reference),
               "name": name, "line": {"color": "#777777", "dash": "dash", "width": 1.5},
               "hovertemplate": f"{name}: %{{y:.3f}}<extra></extra>"}]
    for slot, (label, (thetas, values)) in enumerate(curves.items()):
        traces.append({"type": "scatter", "mode": "lines", "x": np.degrees(np.asarray(thetas, dtype=float)),
                       "y": np.asarray(values, dtype=float), "name": label,
                       "line": {"color": PALETTE[slot % len(PALETTE)], "width": 2},
                       "hovertemplate": f"{label}: %{{y:.3f}}<extra></extra>"})
    layout: dict[str, Any] = {
        "template": _TEMPLATE, "height": height, "margin": {**_MARGIN, "t": MODEBAR_PX + 30}, "hovermode": "x unified",
        "xaxis": {"title": {"text": "θ, angle to the own class weight (°)"}, "range": [0, 180], "dtick": 30},
        "yaxis": {"title": {"text": y_title}},
        # In a row above the plot, as the distance histograms' legend, so the plot keeps the chart's width.
        "legend": {"orientation": "h", "x": 1, "xanchor": "right", "y": 1.02, "yanchor": "bottom"},
    }
    if angles is not None:
        layout["yaxis"]["domain"] = [0.4, 1.0]
        layout["xaxis2"] = {**layout.pop("xaxis"), "anchor": "y2"}
        layout["xaxis"] = {"matches": "x2", "showticklabels": False, "range": [0, 180], "dtick": 30}
        layout["yaxis2"] = {"domain": [0.0, 0.3], "title": {"text": "probe images"}, "anchor": "x2"}
        traces.append({"type": "histogram", "x": np.asarray(angles, dtype=float), "xaxis": "x2", "yaxis": "y2",
                       "xbins": {"start": 0, "end": 180, "size": 2}, "name": "θ_y of the probe images",
                       "marker": {"color": "#94A4A2"}, "showlegend": False,
                       "hovertemplate": "θ_y %{x}°: %{y} images<extra></extra>"})
    return go.Figure(data=traces, layout=layout)
