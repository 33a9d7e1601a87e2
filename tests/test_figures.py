"""Figure builders: what each trace draws, checked against hand-built features, histograms and curves."""

from __future__ import annotations

import math
import re
from types import SimpleNamespace

import numpy as np
import plotly.graph_objects as go
import pytest

from dmlviz.figures import (
    CURVE_COLORS,
    MEANS,
    MODEBAR_PX,
    PALETTE,
    RUN_COLORS,
    FeaturePanel,
    class_color,
    class_symbol,
    comparison_curves_figure,
    comparison_figure,
    curves_figure,
    feature_figure,
    histogram_figure,
    histogram_overlay_figure,
    placeholder_figure,
    scene_ticks,
    short_number,
)

NAMES = ["zero", "one", "two", "three", "four"]


def _by_name(fig: go.Figure) -> dict[str, object]:
    return {trace.name: trace for trace in fig.data}


def _rgba(color: str) -> tuple[int, int, int, float]:
    r, g, b, a = re.fullmatch(r"rgba\((\d+),(\d+),(\d+),([\d.]+)\)", color).groups()
    return int(r), int(g), int(b), float(a)


def _scale_alpha(colorscale: tuple, value: float) -> float:
    """The opacity a colour scale gives a normalised value, interpolated between its stops as plotly.js does."""
    stops = [(float(s), _rgba(c)[3]) for s, c in colorscale]
    return float(np.interp(value, [s for s, _ in stops], [a for _, a in stops]))


def test_palette_is_fixed_distinct_and_cycles():
    assert len(set(PALETTE)) == len(PALETTE) >= 10
    assert class_color(0) == PALETTE[0]
    assert class_color(len(PALETTE) + 3) == class_color(3) == PALETTE[3]


def test_one_trace_per_class_with_probe_indices_and_a_colour_that_ignores_the_subset():
    points = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0], [6.0, 7.0], [8.0, 9.0]])
    fig = feature_figure(points, np.array([3, 0, 3, 1, 0]), NAMES, [0, 1, 3])
    traces = _by_name(fig)
    assert list(traces) == ["zero", "one", "three"]
    assert all(isinstance(t, go.Scattergl) for t in fig.data)
    three = traces["three"]
    assert three.customdata.tolist() == [0, 2]
    assert three.x.tolist() == [0.0, 4.0] and three.y.tolist() == [1.0, 5.0]
    assert "three" in three.hovertemplate and "%{customdata}" in three.hovertemplate
    assert three.legendgroup != traces["zero"].legendgroup

    other = feature_figure(points[:2], np.array([3, 4]), NAMES, [3, 4])
    assert _by_name(other)["three"].marker.color == three.marker.color == class_color(3)
    assert _by_name(other)["four"].marker.color == class_color(4)


def test_unseen_classes_are_hollow_and_named_unseen():
    fig = feature_figure(np.zeros((3, 2)), np.array([0, 1, 2]), NAMES, [0, 2])
    traces = _by_name(fig)
    assert set(traces) == {"zero", "one (unseen)", "two"}
    assert traces["one (unseen)"].marker.symbol == f"{class_symbol(1)}-open"
    assert [traces[name].marker.symbol for name in ("zero", "two")] == [class_symbol(0), class_symbol(2)]
    assert class_symbol(0) != class_symbol(2)  # each class its shape, as well as its colour
    three_d = _by_name(feature_figure(np.zeros((3, 3)), np.array([0, 1, 2]), NAMES, [0, 2]))
    assert three_d["one (unseen)"].marker.symbol == f"{class_symbol(1)}-open"  # one that Scatter3d draws


def test_unit_circle_and_equal_aspect_in_2d():
    points, labels = np.array([[0.6, 0.8], [-1.0, 0.0]]), np.array([0, 1])
    plain = feature_figure(points, labels, NAMES, [0, 1])
    assert not plain.layout.shapes
    assert plain.layout.yaxis.scaleanchor == "x" and plain.layout.yaxis.scaleratio == 1
    assert plain.layout.uirevision == "features"

    circle, = feature_figure(points, labels, NAMES, [0, 1], normalized=True, uirevision="run-7").layout.shapes
    assert circle.type == "circle"
    assert (circle.x0, circle.y0, circle.x1, circle.y1) == (-1, -1, 1, 1)  # centred on the origin, radius 1


def test_3d_draws_scatter3d_and_a_unit_sphere_only_when_normalized():
    points = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    fig = feature_figure(points, np.array([0, 1, 1]), NAMES, [0, 1], normalized=True, uirevision="r")
    classes = [t for t in fig.data if isinstance(t, go.Scatter3d)]
    assert [t.name for t in classes] == ["zero", "one"]
    assert _by_name(fig)["one"].customdata.tolist() == [1, 2]
    sphere, = [t for t in fig.data if isinstance(t, go.Surface)]
    radius = np.sqrt(np.asarray(sphere.x) ** 2 + np.asarray(sphere.y) ** 2 + np.asarray(sphere.z) ** 2)
    assert np.allclose(radius, 1.0)
    assert sphere.hoverinfo == "skip" and sphere.opacity < 0.5
    assert fig.layout.scene.aspectmode == "data"
    assert fig.layout.uirevision == fig.layout.scene.uirevision == "r"

    raw = feature_figure(points, np.array([0, 1, 1]), NAMES, [0, 1])
    assert not any(isinstance(t, go.Surface) for t in raw.data)


def test_weights_are_lines_from_the_origin_scaled_together_to_the_data():
    # Every point is 2 from the origin, so the longest weight is stretched to length 2, the other alike.
    points = np.array([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -2.0]])
    weights = np.array([[1.0, 0.0], [0.0, 0.5]])  # rows in train_classes order: class 2, then class 0
    fig = feature_figure(points, np.array([0, 0, 2, 2]), NAMES, [2, 0], class_vectors={"weights": weights})
    lines = [t for t in fig.data if t.legendgroup == "weights"]
    assert [t.line.color for t in lines] == [class_color(2), class_color(0)]
    assert [(t.x[0], t.y[0]) for t in lines] == [(0.0, 0.0), (0.0, 0.0)]
    assert [(t.x[1], t.y[1]) for t in lines] == [(2.0, 0.0), (0.0, 1.0)]
    assert [t.showlegend for t in lines] == [True, False]  # one legend entry hides all weights

    unit = feature_figure(points, np.array([0, 0, 2, 2]), NAMES, [2, 0], normalized=True,
                          class_vectors={"weights": weights})
    tips = [(t.x[1], t.y[1]) for t in unit.data if t.legendgroup == "weights"]
    assert tips == [(1.0, 0.0), (0.0, 1.0)]


def test_centers_and_class_means_are_outlined_markers_in_class_colours():
    points = np.array([[1.0, 1.0], [3.0, 1.0], [5.0, 5.0]])
    centers = np.array([[4.0, 4.0], [2.0, 1.0]])  # classes 2 and 0
    means = np.array([[2.0, 1.0], [np.nan, np.nan], [5.0, 5.0]])  # class 1 absent from the probe
    fig = feature_figure(points, np.array([0, 0, 2]), NAMES, [2, 0], class_vectors={"centers": centers},
                         class_means=means)
    traces = _by_name(fig)
    c = traces["centers"]
    assert c.x.tolist() == [4.0, 2.0] and c.y.tolist() == [4.0, 1.0]  # drawn where they are, unscaled
    assert list(c.marker.color) == [class_color(2), class_color(0)]
    assert c.marker.symbol == "star" and c.marker.line.width > 0
    m = traces["class means"]
    assert m.x.tolist() == [2.0, 5.0] and list(m.text) == ["zero", "two"]
    assert list(m.marker.color) == [class_color(0), class_color(2)]
    assert m.marker.symbol not in (c.marker.symbol, "circle")


def test_trails_have_t_points_per_class_growing_more_opaque():
    T = 3
    centers_then = np.stack([[[t, 0.0], [0.0, t]] for t in (1.0, 2.0, 3.0)])  # T × 2 classes × 2
    means_then = np.full((T, 5, 2), np.nan)
    means_then[:, 4] = [[-1.0, -1.0], [-2.0, -2.0], [-3.0, -3.0]]
    fig = feature_figure(np.ones((2, 2)), np.array([1, 4]), NAMES, [1, 4],
                         class_vectors={"centers": centers_then[-1]},
                         trails={"centers": centers_then, MEANS: means_then})
    trail, = [t for t in fig.data if t.name == "centers trail"]
    assert trail.legendgroup == "centers" and trail.hoverinfo == "skip"
    values = np.asarray(trail.marker.color)
    span = trail.marker.cmax - trail.marker.cmin
    x, y = np.asarray(trail.x), np.asarray(trail.y)
    for slot, (c, axis) in enumerate(((1, x), (4, y))):  # class 1 moves along x, class 4 along y
        mine = np.floor(values) == slot
        assert mine.sum() == T
        assert axis[mine].tolist() == [1.0, 2.0, 3.0]  # oldest first
        alphas = [_scale_alpha(trail.marker.colorscale, (v - trail.marker.cmin) / span) for v in values[mine]]
        assert alphas == sorted(alphas) and alphas[0] < alphas[-1] - 0.5
        stop = next(col for s, col in trail.marker.colorscale if math.isclose(s, (slot + 0.9) / 2))
        assert _rgba(stop)[:3] == tuple(int(class_color(c)[i:i + 2], 16) for i in (1, 3, 5))

    means_trail, = [t for t in fig.data if t.name == f"{MEANS} trail"]
    assert np.asarray(means_trail.x).tolist() == [-1.0, -2.0, -3.0]  # absent classes' NaN rows left out


def test_selected_probe_gets_a_ring_and_bad_shapes_are_refused():
    points = np.array([[0.0, 0.0], [3.0, 4.0]])
    ring, = [t for t in feature_figure(points, np.array([0, 1]), NAMES, [0, 1], selected=1).data
             if t.name == "probe #1"]
    assert (ring.x[0], ring.y[0]) == (3.0, 4.0) and ring.marker.symbol == "circle-open"
    with pytest.raises(ValueError, match="P × 2 or P × 3"):
        feature_figure(np.zeros((2, 4)), np.array([0, 1]), NAMES, [0, 1])


def _hist(**overrides) -> SimpleNamespace:
    fields = dict(metric="angular", edges=np.array([0.0, 30.0, 60.0, 90.0]), intra=np.array([0.5, 0.5, 0.0]),
                  inter=np.array([0.0, 0.25, 0.75]), overlap=0.125, gap=0.0, intra_mean=30.0, inter_mean=67.5,
                  pairs=40)
    return SimpleNamespace(**{**fields, **overrides})


def test_histogram_overlays_two_bar_traces_titled_with_the_overlap():
    fig = histogram_figure(_hist(), uirevision="h")
    intra, inter = fig.data
    assert all(isinstance(t, go.Bar) for t in fig.data) and fig.layout.barmode == "overlay"
    assert intra.x.tolist() == [15.0, 45.0, 75.0] and intra.width.tolist() == [30.0, 30.0, 30.0]
    assert sum(intra.y) == pytest.approx(1) and sum(inter.y) == pytest.approx(1)
    assert 0 < intra.opacity < 1
    assert "12.5%" in fig.layout.title.text and "gap" not in fig.layout.title.text
    assert fig.layout.xaxis.title.text == "angle (°)" and fig.layout.uirevision == "h"
    assert sorted(shape.x0 for shape in fig.layout.shapes) == [30.0, 67.5]  # the two means

    euclidean = histogram_figure(_hist(metric="euclidean", gap=0.25))
    assert euclidean.layout.xaxis.title.text == "Euclidean distance"
    assert "gap 0.25" in euclidean.layout.title.text


def test_histogram_without_pairs_says_so():
    empty = np.array([])
    fig = histogram_figure(_hist(edges=empty, intra=empty, inter=empty, overlap=math.nan, intra_mean=math.nan,
                                 inter_mean=math.nan, pairs=0))
    assert not fig.data
    assert [a.text for a in fig.layout.annotations] == ["not enough classes"]


def _panel_titles(fig: go.Figure) -> list[str]:
    return [a.text for a in fig.layout.annotations]


def test_curves_show_only_panels_with_data_and_skip_missing_values():
    steps = np.array([0, 10, 20, 30])
    nan = math.nan
    fig = curves_figure(steps, {"loss": np.array([2.0, nan, 1.0, 0.5]), "train_acc": np.array([0.1, 0.5, 0.7, 0.9]),
                                "test_acc": np.array([nan, nan, nan, 0.8]), "fisher_ratio": np.full(4, nan),
                                "images_per_s": np.full(4, 900.0)}, uirevision="c")
    # The panel titles are the legend: a panel of several lines names each in its colour.
    assert _panel_titles(fig) == ["Loss", f"Accuracy: <span style='color:{CURVE_COLORS[0]}'>train</span> · "
                                          f"<span style='color:{CURVE_COLORS[1]}'>test</span>"]
    assert not any(t.showlegend for t in fig.data)
    traces = _by_name(fig)
    assert set(traces) == {"loss", "train", "test"}
    assert traces["loss"].x.tolist() == [0, 20, 30] and traces["loss"].y.tolist() == [2.0, 1.0, 0.5]
    assert (traces["loss"].xaxis, traces["train"].xaxis, traces["test"].xaxis) == ("x", "x2", "x2")
    assert traces["test"].x.tolist() == [30] and "markers" in traces["test"].mode
    assert fig.layout.xaxis2.matches == "x"  # panels zoom together
    assert tuple(fig.layout.yaxis2.range) == (0, 1.02)
    assert fig.layout.uirevision == "c"
    assert fig.layout.grid.rows == 1 and fig.layout.grid.columns == 2


def test_schedules_share_a_panel_normalised_with_their_current_value_named():
    steps = np.array([0, 1, 2, 3])
    fig = curves_figure(steps, {"lr": np.array([0.1, 0.1, 0.05, 0.01]), "margin": np.array([0.0, 0.1, 0.2, 0.35]),
                                "scale": np.array([math.nan, math.nan, 30.0, math.nan])}, epochs_per_step=0.5)
    traces = _by_name(fig)
    assert set(traces) == {"lr = 0.01", "margin = 0.35", "scale = 30"}
    title, = _panel_titles(fig)
    assert title.startswith("Schedules (÷ max): ") and all(name in title for name in traces)
    assert traces["margin = 0.35"].y.tolist() == pytest.approx([0, 0.1 / 0.35, 0.2 / 0.35, 1])
    assert traces["scale = 30"].mode == "markers"  # a single value is a marker, not an invisible line
    assert np.asarray(traces["margin = 0.35"].customdata)[:, 1].tolist() == [0, 0.5, 1, 1.5]  # epochs for hover


def test_numbers_keep_three_significant_digits():
    assert [short_number(v) for v in (0.002137, 0.98123, 2.3456, 123.45, 12345.6, -0.5, math.nan)] == \
        ["0.00214", "0.981", "2.35", "123", "12,346", "-0.5", "—"]


def test_titles_and_legends_start_below_the_mode_bar():
    hist = _hist()
    steps, series = np.array([0, 1]), {"loss": np.array([2.0, 1.0]), "train_acc": np.array([0.1, 0.5])}
    panel = FeaturePanel("a run", np.zeros((2, 2)))
    # Panel titles above their panels, a legend from the top of the plot: both below the bar's band.
    for fig in (curves_figure(steps, series), comparison_figure([panel, panel], np.array([0, 1]), NAMES, [0, 1]),
                comparison_curves_figure([("a", steps, series)]), histogram_overlay_figure([("a", hist)]),
                feature_figure(np.zeros((2, 2)), np.array([0, 1]), NAMES, [0, 1])):
        assert fig.layout.margin.t > MODEBAR_PX
    # The histogram's title at the top left, beside the bar; its legend in a row below the bar.
    fig = histogram_figure(hist)
    assert (fig.layout.title.x, fig.layout.title.y, fig.layout.title.yref) == (0.01, 1, "container")
    assert fig.layout.legend.yanchor == "bottom" and fig.layout.margin.t >= MODEBAR_PX + 20
    assert "sendChartToCloud" in fig.layout.template.layout.modebar.remove  # the run's data stays here


def test_curves_without_data_say_so():
    fig = curves_figure(np.array([0]), {"loss": np.array([math.nan])})
    assert not fig.data and _panel_titles(fig) == ["no data yet"]


def test_placeholder_figure_is_an_empty_chart_with_a_note():
    figure = placeholder_figure("waiting", height=300, webgl=True)
    assert figure.layout.height == 300 and figure.layout.annotations[0].text == "waiting"
    assert len(figure.data) == 1 and figure.data[0].type == "scattergl" and len(figure.data[0].x) == 0
    assert placeholder_figure("waiting").data == ()


def test_comparison_grid_shares_axes_legend_and_selection_across_panels():
    points = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    labels = np.array([0, 1, 0])
    panels = [FeaturePanel("softmax", points), FeaturePanel("center", points * 2, class_means=points[:2])]
    fig = comparison_figure(panels, labels, NAMES, [0, 1], selected=2)
    by_axis = {}
    for trace in fig.data:
        by_axis.setdefault(trace.xaxis, []).append(trace)
    assert set(by_axis) == {"x", "x2"}
    assert all(t.yaxis == ("y" if axis == "x" else "y2") for axis, ts in by_axis.items() for t in ts)
    # One legend: the second panel's traces stay out of it, and share the first's legend groups.
    assert not any(t.showlegend for t in by_axis["x2"])
    assert {t.legendgroup for t in by_axis["x"] if t.legendgroup} >= {"0", "1"}
    # The same ranges and zoom everywhere; the extent covers the larger panel.
    assert fig.layout.xaxis2.matches == "x" and fig.layout.yaxis2.matches == "y"
    assert view_of(fig)[0][1] >= 10.0
    # The selected probe point ringed in both panels, at its own place in each.
    rings = [t for t in fig.data if t.name == "probe #2"]
    assert [(t.x[0], t.y[0]) for t in rings] == [(4.0, 5.0), (8.0, 10.0)]
    assert [a.text for a in fig.layout.annotations] == ["softmax", "center"]


def test_comparison_grid_in_3d_gives_every_scene_the_same_cube_and_a_sphere_when_normalised():
    rng = np.random.default_rng(0)
    panels = [FeaturePanel(name, rng.normal(size=(6, 3)), normalized=True) for name in ("a", "b", "c", "d")]
    fig = comparison_figure(panels, np.arange(6) % 2, NAMES, [0, 1])
    scenes = [fig.layout[name] for name in ("scene", "scene2", "scene3", "scene4")]
    assert len({tuple(s.xaxis.range) for s in scenes}) == 1 and scenes[0].aspectmode == "cube"
    assert scenes[0].domain.x == (0.0, 0.5) and scenes[3].domain.y == (0.0, 0.5)  # two columns for four runs
    assert sum(1 for t in fig.data if t.type == "surface") == 4


def test_histogram_overlay_draws_each_run_in_its_colour():
    from dmlviz.geometry import distance_histogram

    rng = np.random.default_rng(1)
    labels = np.arange(40) % 2
    hists = [("softmax", distance_histogram(rng.normal(size=(40, 2)), labels)),
             ("center", distance_histogram(rng.normal(size=(40, 2)) * 0.1 + labels[:, None], labels))]
    fig = histogram_overlay_figure(hists)
    assert len(fig.data) == 4
    assert [t.line.color for t in fig.data] == [RUN_COLORS[0]] * 2 + [RUN_COLORS[1]] * 2
    assert [t.line.dash for t in fig.data] == ["solid", "dash"] * 2
    assert f"overlap {hists[1][1].overlap:.1%}" in fig.data[2].name


def test_histogram_overlay_names_each_run_once_in_a_row_above_the_plot():
    from dmlviz.geometry import distance_histogram

    rng = np.random.default_rng(2)
    labels = np.arange(40) % 2
    hists = [(name, distance_histogram(rng.normal(size=(40, 2)), labels))
             for name in ("normface", "cosface", "arcface")]
    fig = histogram_overlay_figure(hists)
    shown = [t for t in fig.data if t.showlegend is not False]
    assert [t.name for t in shown] == [f"{name} · overlap {hist.overlap:.1%}" for name, hist in hists]
    assert {t.legendgroup for t in fig.data} == {"normface", "cosface", "arcface"}  # one click hides both lines
    # A horizontal row above the plot, not a column beside it; the title says which line is which.
    assert fig.layout.legend.orientation == "h" and fig.layout.legend.yanchor == "bottom"
    assert "solid" in fig.layout.title.text and "dashed" in fig.layout.title.text


def test_comparison_grid_puts_its_legend_under_the_panels_and_sets_3d_ticks_on_purpose():
    rng = np.random.default_rng(3)
    for three_d in (False, True):
        panels = [FeaturePanel(name, rng.normal(size=(6, 3 if three_d else 2))) for name in ("a", "b", "c")]
        fig = comparison_figure(panels, np.arange(6) % 2, NAMES, [0, 1])
        assert fig.layout.legend.orientation == "h" and fig.layout.legend.yanchor == "top"
        assert fig.layout.legend.y <= 0  # below the panels, which keep the figure's width
    assert fig.layout.margin.l == fig.layout.margin.r == 0  # 3-D scenes need no room for tick labels
    raw = fig.layout.scene2.xaxis
    assert raw.tickvals and all(raw.range[0] <= v <= raw.range[1] for v in raw.tickvals)
    sphere = comparison_figure([FeaturePanel("a", rng.normal(size=(6, 3)), normalized=True)], np.arange(6) % 2,
                               NAMES, [0, 1])
    assert sphere.layout.scene.xaxis.showticklabels is False


def test_scene_ticks_are_round_multiples_inside_the_view():
    assert scene_ticks([-10.5, 10.5], normalized=False)["tickvals"] == [-10.0, -5.0, 0.0, 5.0, 10.0]
    assert scene_ticks([2.0, 8.0], normalized=False)["tickvals"] == [2.0, 4.0, 6.0, 8.0]
    assert scene_ticks([-1.1, 1.1], normalized=True) == {"showticklabels": False}


def test_comparison_curves_put_every_run_on_one_panel_per_metric():
    steps = np.array([0, 10, 20])
    runs = [("a", steps, {"loss": np.array([2.0, 1.0, 0.5]), "p_at_1": np.array([np.nan, 0.5, 0.6])}),
            ("b", steps, {"loss": np.array([2.0, 1.5, 1.0])})]
    fig = comparison_curves_figure(runs)
    assert [a.text for a in fig.layout.annotations] == ["Loss", "P@1"]
    loss = [t for t in fig.data if t.xaxis == "x"]
    assert [t.name for t in loss] == ["a", "b"] and [t.showlegend for t in loss] == [True, True]
    p_at_1 = [t for t in fig.data if t.xaxis == "x2"]
    assert p_at_1[0].x.tolist() == [10.0, 20.0] and len(p_at_1[1].x) == 0


def view_of(figure) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The view a 2-D figure holds open: its invisible anchor line's x and y."""
    (anchor,) = [t for t in figure.data if t.name == "view"]
    return tuple(anchor.x), tuple(anchor.y)


def test_an_explicit_axis_range_holds_the_view_open_and_keeps_a_persons_zoom():
    points, labels = np.array([[0.6, 0.8], [-1.0, 0.0]]), np.array([0, 1])
    view = np.array([[-2.0, 3.0], [-1.5, 1.5]])
    fig = feature_figure(points, labels, NAMES, [0, 1], uirevision="run-7", axis_range=view)
    # 2-D: an invisible line across the view, the axes autoranged, so plotly keeps a person's zoom
    # (uirevision) however the view moves; no range is sent that would undo it.
    assert view_of(fig) == ((-2.0, 3.0), (-1.5, 1.5))
    (anchor,) = [t for t in fig.data if t.name == "view"]
    assert anchor.line.width == 0 and anchor.hoverinfo == "skip" and anchor.showlegend is False
    assert anchor.customdata is None  # not a probe point: clicks and counts ignore it
    assert fig.layout.xaxis.range is None and fig.layout.xaxis.autorange is not False
    assert fig.layout.yaxis.scaleanchor == "x" and fig.layout.uirevision == "run-7"
    assert not [t for t in feature_figure(points, labels, NAMES, [0, 1]).data if t.name == "view"]

    cube = np.array([[-1.0, 1.0], [0.0, 2.0], [-3.0, -1.0]])
    fig = feature_figure(np.zeros((3, 3)), np.array([0, 1, 1]), NAMES, [0, 1], uirevision="r", axis_range=cube)
    scene = fig.layout.scene
    assert scene.aspectmode == "cube" and scene.uirevision == "r"
    assert [tuple(scene[a].range) for a in ("xaxis", "yaxis", "zaxis")] == [(-1, 1), (0, 2), (-3, -1)]
    assert all(scene[a].autorange is False for a in ("xaxis", "yaxis", "zaxis"))
    # Unequal spans are drawn in true proportions.
    flat = feature_figure(np.zeros((3, 3)), np.array([0, 1, 1]), NAMES, [0, 1],
                          axis_range=np.array([[-2.0, 2.0], [-1.0, 1.0], [-1.0, 1.0]]))
    assert flat.layout.scene.aspectmode == "manual" and flat.layout.scene.aspectratio.y == 0.5


def test_a_comparison_grid_takes_one_view_for_every_panel():
    points = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 5.0]])
    panels = [FeaturePanel("a", points), FeaturePanel("b", points * 2)]
    view = np.array([[-1.0, 9.0], [-2.0, 11.0]])
    fig = comparison_figure(panels, np.array([0, 1, 0]), NAMES, [0, 1], axis_range=view)
    assert view_of(fig) == ((-1, 9), (-2, 11)) and fig.layout.xaxis.range is None
    assert fig.layout.xaxis2.matches == "x" and fig.layout.yaxis2.matches == "y"
    cube = np.tile([-3.0, 3.0], (3, 1))
    panels3 = [FeaturePanel(n, np.zeros((3, 3))) for n in "ab"]
    fig3 = comparison_figure(panels3, np.array([0, 1, 0]), NAMES, [0, 1], axis_range=cube)
    assert tuple(fig3.layout.scene2.zaxis.range) == (-3, 3) and fig3.layout.scene2.aspectmode == "cube"
