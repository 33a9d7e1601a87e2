"""Still images of a run, drawn with matplotlib: the feature space (a PNG, and the frames of a GIF or
an MP4), the distance histogram and the training curves.

The pages draw with plotly in the browser; a file made on the server or from the CLI needs a
renderer without a browser (kaleido ≥ 1 drives a local Chrome, which public hosts and CI lack).
These draw the same content as ``figures``, with its colours, markers and placements, on
matplotlib's Agg canvas (no pyplot: nothing global, safe beside Streamlit's threads).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from dmlviz import figures, regions
from dmlviz.metrics import SCHEDULES, metric_spec

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from dmlviz.geometry import DistanceHistogram

#: Frames for slides: 4:3, a multiple of 16 on each side (what H.264 encodes without padding).
SIZE = (960, 720)
_DPI = 100
# matplotlib's marker for each plotly symbol the pages draw (figures.class_symbol, figures.class_vector_symbol),
# so a file shows what the app shows: in 2-D, class means a plus and centers a star.
_MARKERS = {"circle": "o", "square": "s", "diamond": "D", "star": "*", "star-diamond": (4, 1, 0), "cross": "P"}


def _canvas(size: tuple[int, int]) -> tuple[Figure, FigureCanvasAgg]:
    figure = Figure(figsize=(size[0] / _DPI, size[1] / _DPI), dpi=_DPI)
    return figure, FigureCanvasAgg(figure)


def _pixels(canvas: FigureCanvasAgg) -> np.ndarray:
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def feature_image(panel: figures.FeaturePanel, labels: np.ndarray, class_names: Sequence[str],
                  train_classes: Sequence[int], *, title: str, extent: float | None = None,
                  size: tuple[int, int] = SIZE) -> np.ndarray:
    """The feature space of ``panel`` (2-D or 3-D points) as an H × W × 3 uint8 image: each class in
    its colour (unseen classes hollow), class vectors and means, trails, the unit circle (sphere)
    of a normalised loss, a legend, and ``title``. ``extent``: fixed axes ± extent (else fitted)."""
    points, labels = np.asarray(panel.points, dtype=float), np.asarray(labels)
    three_d = points.shape[1] == 3
    figure, canvas = _canvas(size)
    axes = figure.add_axes((0.06, 0.06, 0.68, 0.84), projection="3d" if three_d else None)
    trained = {int(c) for c in train_classes}
    if panel.decision and "winner" in panel.decision and not three_d:
        _decision(axes, panel.decision, train_classes)
    handles = []
    for c in np.unique(labels).tolist():
        color, shape, rows = figures.class_color(c), _MARKERS[figures.class_symbol(c)], points[labels == c]
        unseen = c not in trained
        # 2-D points about as wide as the app's (5 px), so that their shapes read.
        axes.scatter(*rows.T, s=5 if three_d else 12, marker=shape, linewidths=0.8 if unseen else 0,
                     facecolors="none" if unseen else color, edgecolors=color,
                     **({"depthshade": False} if three_d else {}))
        handles.append(Line2D([], [], ls="", marker=shape, markersize=6, markerfacecolor="none" if unseen else color,
                              markeredgecolor=color, label=str(class_names[c]) + ("" if not unseen else " (unseen)")))
    vectors, trails = figures.placements(points, train_classes, normalized=panel.normalized,
                                         class_vectors=panel.class_vectors, class_means=panel.class_means,
                                         trails=panel.trails)
    for classes, positions in trails.values():
        for slot, c in enumerate(classes):
            path = positions[:, slot]
            path = path[np.all(np.isfinite(path), axis=1)]
            axes.plot(*path.T, color=figures.class_color(c), alpha=0.5, linewidth=1.2)
    for kind, (classes, positions) in vectors.items():
        handles.append(_class_vectors(axes, kind, classes, positions, three_d))
    if panel.forces is not None and len(panel.forces.bases):
        _forces(axes, panel.forces, points)
    if panel.normalized:
        _unit_shape(axes, three_d)
    extent = extent or figures.panel_extent([panel])
    for limits in ("set_xlim", "set_ylim", "set_zlim") if three_d else ("set_xlim", "set_ylim"):
        getattr(axes, limits)(-extent, extent)
    if three_d:
        axes.set_box_aspect((1, 1, 1))
        axes.view_init(elev=25, azim=45)
    else:
        axes.set_aspect("equal")
        axes.grid(color="#EBF0F8")
    figure.legend(handles=handles, loc="upper left", bbox_to_anchor=(0.76, 0.9), frameon=False, fontsize=10)
    figure.suptitle(title, fontsize=13)
    return _pixels(canvas)


def _decision(axes: Axes, decision: Mapping[str, np.ndarray], train_classes: Sequence[int]) -> None:
    """The decision map under the points, as the pages shade it (``figures.decision_traces``)."""
    box, winner = np.asarray(decision["box"], dtype=float), np.asarray(decision["winner"])
    colours = np.array([to_rgb(figures.class_color(int(c))) for c in train_classes])
    extent = (box[0, 0], box[0, 1], box[1, 0], box[1, 1])
    axes.imshow(colours[winner], extent=extent, origin="lower", alpha=0.16, interpolation="nearest", zorder=0)
    if (cells := regions.band_of(decision)) is not None:
        band = np.zeros((*winner.shape, 4))
        band[cells] = (0.27, 0.27, 0.27, 0.22)
        axes.imshow(band, extent=extent, origin="lower", interpolation="nearest", zorder=0)
    line = figures.boundary_lines(winner, box)
    axes.plot(line["x"], line["y"], color=(0.24, 0.24, 0.24, 0.55), linewidth=0.6, zorder=0)


def _forces(axes: Axes, forces: figures.Forces, points: np.ndarray) -> None:
    """The arrows as the pages draw them (``figures.force_traces``: the same scale), heads in class colours."""
    shafts, heads = figures.force_traces(forces, points)
    coords = [np.asarray(shafts[axis], dtype=float) for axis in "xyz" if axis in shafts]
    axes.plot(*coords, color=(0.12, 0.12, 0.12, 0.65), linewidth=0.9)
    axes.scatter(*(np.asarray(heads[axis], dtype=float) for axis in "xyz" if axis in heads),
                 s=10, c=[figures.class_color(int(c)) for c in forces.labels], edgecolors=(0.12, 0.12, 0.12, 0.8),
                 linewidths=0.5)


def _class_vectors(axes: Axes, kind: str, classes: list[int], positions: np.ndarray, three_d: bool) -> Line2D:
    """Weights as lines from the origin, other kinds as outlined markers; returns the legend handle."""
    finite = np.all(np.isfinite(positions), axis=1)
    colors = [figures.class_color(c) for c, ok in zip(classes, finite, strict=False) if ok]
    positions = positions[finite]
    label = "class means" if kind == figures.MEANS else kind
    if kind in figures.DIRECTIONS:
        for color, tip in zip(colors, positions, strict=True):
            axes.plot(*np.stack([np.zeros_like(tip), tip]).T, color=color, linewidth=2.5)
        return Line2D([], [], color="#444444", linewidth=2.5, label=label)
    marker = _MARKERS[figures.class_vector_symbol(kind, three_d)]
    axes.scatter(*positions.T, s=160, c=colors, marker=marker, edgecolors="#222222", linewidths=1.2, zorder=5)
    return Line2D([], [], ls="", marker=marker, markersize=11, markerfacecolor="#888888",
                  markeredgecolor="#222222", label=label)


def _unit_shape(axes: Axes, three_d: bool) -> None:
    """The unit circle (sphere) that a normalised loss's features live on."""
    if three_d:
        theta, phi = np.meshgrid(np.linspace(0, 2 * np.pi, 25), np.linspace(0, np.pi, 13))
        axes.plot_wireframe(np.cos(theta) * np.sin(phi), np.sin(theta) * np.sin(phi), np.cos(phi),
                            color="#999999", linewidth=0.4, alpha=0.5)
    else:
        angle = np.linspace(0, 2 * np.pi, 200)
        axes.plot(np.cos(angle), np.sin(angle), color="#999999", linewidth=1)


def histogram_image(hist: DistanceHistogram, *, title: str, size: tuple[int, int] = SIZE) -> np.ndarray:
    """Distances within and between classes, as on the pages."""
    figure, canvas = _canvas(size)
    axes = figure.add_subplot()
    edges = np.asarray(hist.edges, dtype=float)
    if len(edges) > 1:
        for name, fractions, mean, color in (("same class", hist.intra, hist.intra_mean, figures.HISTOGRAM_COLORS[0]),
                                             ("different classes", hist.inter, hist.inter_mean,
                                              figures.HISTOGRAM_COLORS[1])):
            axes.stairs(fractions, edges, fill=True, alpha=0.6, color=color, label=name)
            if np.isfinite(mean):
                axes.axvline(mean, color=color, linestyle="--", linewidth=1.5)
        axes.legend(frameon=False)
    else:
        axes.text(0.5, 0.5, "not enough classes", ha="center", va="center", transform=axes.transAxes)
    axes.set_xlabel("angle (°)" if hist.metric == "angular" else "Euclidean distance")
    axes.set_ylabel("fraction of pairs")
    axes.yaxis.set_major_formatter(lambda value, _: f"{value:.0%}")
    figure.suptitle(f"{title}\n{figures.histogram_summary(hist)}", fontsize=12)
    return _pixels(canvas)


def curves_image(steps: np.ndarray, series: Mapping[str, np.ndarray], *, title: str, step: int | None = None,
                 size: tuple[int, int] = SIZE) -> np.ndarray:
    """The training curves in the pages' panels, with a line at ``step`` (the frame shown)."""
    panels = figures.curve_panels(series)
    cols = min(3, len(panels)) or 1
    rows = -(-len(panels) // cols) or 1
    figure, canvas = _canvas(size)
    steps = np.asarray(steps, dtype=float)
    for i, (panel, names) in enumerate(panels):
        axes = figure.add_subplot(rows, cols, i + 1)
        for j, name in enumerate(names):
            values = np.asarray(series[name], dtype=float)
            keep = np.isfinite(values)
            if panel == SCHEDULES:  # each schedule divided by its largest magnitude, as on the pages
                values = values / (np.nanmax(np.abs(values)) or 1.0)
            axes.plot(steps[keep], values[keep], color=figures.CURVE_COLORS[j % len(figures.CURVE_COLORS)],
                      linewidth=1.3, marker="o" if keep.sum() == 1 else None, label=metric_spec(name).legend)
        if step is not None:
            axes.axvline(step, color="#777777", linewidth=1, linestyle=":")
        axes.set_title(panel, fontsize=10)
        axes.tick_params(labelsize=8)
        if len(names) > 1:
            axes.legend(fontsize=7, frameon=False)
    figure.suptitle(title, fontsize=12)
    figure.tight_layout()
    return _pixels(canvas)
