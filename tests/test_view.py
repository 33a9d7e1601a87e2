"""A run's view: snapshots from the store to figures, with projection and trails kept between frames;
and the presets behind the one-click pictures."""

import numpy as np
import plotly.graph_objects as go
import pytest

from dmlviz import figures
from dmlviz.config import RunConfig
from dmlviz.presets import DEMO, PRESETS, get_preset
from dmlviz.snapshot import Snapshot
from dmlviz.store import RunStore
from dmlviz.view import RunView, ViewOptions, normalize_rows

CLASSES = 3
PER_CLASS = 20


def recorded_run(tmp_path, dim: int, frames: int = 4, loss: str = "center") -> tuple[RunStore, int]:
    """A run whose classes drift apart along fixed directions, frame after frame."""
    rng = np.random.default_rng(0)
    store = RunStore(tmp_path)
    run_id = store.create_run(RunConfig(loss=loss, feature_dim=dim, dataset="digits").to_dict(), status="finished")
    labels = np.repeat(np.arange(CLASSES), PER_CLASS)
    store.put_info(run_id, "probe_labels", labels)
    store.put_info(run_id, "probe_index", np.arange(len(labels)))
    store.put_info(run_id, "class_names", ["a", "b", "c"])
    store.put_info(run_id, "train_classes", [0, 1, 2])
    store.put_info(run_id, "total_steps", frames * 10)
    directions = rng.normal(size=(CLASSES, dim))
    noise = rng.normal(size=(len(labels), dim)) * 0.3
    for frame in range(frames):
        features = (directions[labels] * (1 + frame) + noise).astype(np.float32)
        means = np.stack([features[labels == c].mean(0) for c in range(CLASSES)])
        store.add_snapshot(run_id, Snapshot(frame * 10, frame / 2, float(frame), "tick", {"loss": 2.0 - frame / 4},
                                            features, means, {"centers": means * 0.9}))
    return store, run_id


def test_a_frame_draws_every_probe_point_with_its_trails(tmp_path):
    store, run_id = recorded_run(tmp_path, dim=2)
    view = RunView(store, run_id)
    index = view.snapshots()
    frame = view.frame(index, len(index) - 1, ViewOptions(trail=2))
    assert frame.info.step == 30 and frame.explained is None  # 2-D is drawn as it is
    np.testing.assert_array_equal(frame.points, store.get_snapshot(run_id, index[-1].seq).features)
    class_traces = [t for t in frame.features_figure.data if t.customdata is not None]
    assert sum(len(t.x) for t in class_traces) == CLASSES * PER_CLASS
    assert frame.histogram.pairs[0] == CLASSES * PER_CLASS * (PER_CLASS - 1) // 2
    trails = view._trails(index[1:], lambda x: x)
    assert trails[figures.MEANS].shape == (3, CLASSES, 2) and trails["centers"].shape == (3, CLASSES, 2)


def test_wide_features_are_projected_without_flipping_between_frames(tmp_path):
    store, run_id = recorded_run(tmp_path, dim=16, frames=6)
    view = RunView(store, run_id)
    index = view.snapshots()
    frames = [view.frame(index, i, ViewOptions(dims=2)) for i in range(len(index))]
    assert all(f.points.shape == (CLASSES * PER_CLASS, 2) and 0 < f.explained <= 1 for f in frames)
    # The classes drift outwards along fixed directions, so each class's mean in the drawing must
    # move outwards too, never jump to the other side.
    for before, after in zip(frames, frames[1:], strict=False):
        labels = np.repeat(np.arange(CLASSES), PER_CLASS)
        for c in range(CLASSES):
            a, b = before.points[labels == c].mean(0), after.points[labels == c].mean(0)
            assert a @ b > 0, "a class jumped across the origin between two frames"


def test_normalised_view_draws_directions_and_keeps_absent_classes_absent():
    rows = np.array([[3.0, 4.0], [0.0, 0.0], [np.nan, np.nan]])
    np.testing.assert_allclose(normalize_rows(rows)[0], [0.6, 0.8])
    assert (normalize_rows(rows)[1] == 0).all() and np.isnan(normalize_rows(rows)[2]).all()


def test_a_normalised_loss_is_read_through_its_base(tmp_path):
    store, run_id = recorded_run(tmp_path, dim=3, loss="arcface")
    assert RunView(store, run_id).normalized
    store, run_id = recorded_run(tmp_path / "2", dim=3, loss="center")
    assert not RunView(store, run_id).normalized


def test_a_view_reads_whether_a_run_is_normalised_from_what_the_engine_recorded(tmp_path):
    from dmlviz.engine import train
    from dmlviz.runner import StoreSink

    store = RunStore(tmp_path)
    config = RunConfig.from_dict({"dataset": "digits", "device": "cpu", "probe_size": 50, "loss": "arcface",
                                  "steps": 2, "batch_size": 32})
    run_id = store.create_run(config.to_dict(), status="running")
    train(config, None, StoreSink(store, run_id))
    assert store.get_info(run_id, "normalized") is True
    store.put_info(run_id, "normalized", False)  # the record, not the loss's name, decides
    assert not RunView(store, run_id).normalized


def test_a_run_recorded_before_the_engine_said_so_is_read_from_its_config(tmp_path):
    store, run_id = recorded_run(tmp_path, dim=2, loss="intraloss")  # built on arcface, by default
    assert store.get_info(run_id, "normalized") is None
    assert RunView(store, run_id).normalized


def test_curves_come_from_the_recorded_series(tmp_path):
    store, run_id = recorded_run(tmp_path, dim=2)
    figure = RunView(store, run_id).curves()
    (loss,) = [t for t in figure.data if t.name == "loss"]
    np.testing.assert_allclose(np.asarray(loss.y, dtype=float), [2.0, 1.75, 1.5, 1.25])


def test_every_preset_is_a_valid_run_and_the_demo_is_one_of_them():
    keys = [p.key for p in PRESETS]
    assert len(set(keys)) == len(keys) and DEMO in keys
    for preset in PRESETS:
        config = preset.config()
        assert RunConfig.from_query(config.to_query()).config_hash() == config.config_hash()
    assert get_preset("unseen-classes").config().classes == (0, 1, 2, 3, 4)
    assert get_preset("center-loss").config().loss_hparams()["lambda"] == pytest.approx(0.1)
    with pytest.raises(KeyError, match="center-loss"):
        get_preset("nope")


def test_tsne_on_request_draws_the_points_and_class_means_without_vectors(tmp_path):
    store, run_id = recorded_run(tmp_path, dim=8, frames=2)
    view = RunView(store, run_id)
    index = view.snapshots()
    frame = view.frame(index, 1, ViewOptions(method="tsne"))
    assert frame.points.shape == (CLASSES * PER_CLASS, 2) and "t-SNE" in frame.features_figure.layout.title.text
    labels = np.repeat(np.arange(CLASSES), PER_CLASS)
    # Well-separated classes stay separated: each point is nearer its own class's mean in the drawing.
    means = np.stack([frame.points[labels == c].mean(0) for c in range(CLASSES)])
    nearest = np.argmin(((frame.points[:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (nearest == labels).mean() > 0.9
    assert view.frame(index, 1, ViewOptions(method="tsne")).points is frame.points  # computed once


def test_a_comparison_shows_every_run_at_the_step_on_the_timeline(tmp_path):
    from dmlviz.view import ComparisonView

    store, first = recorded_run(tmp_path, dim=2, frames=4)
    _, second = recorded_run(tmp_path, dim=2, frames=3, loss="softmax")  # one snapshot fewer
    view = ComparisonView(store, [first, second])
    view.refresh()
    assert view.ready and view.probe_problem() is None and view.labels == ["center", "softmax"]
    indexes = view.indexes()
    assert view.steps(indexes) == [0, 10, 20, 30]
    frame = view.frame(indexes, 30, ViewOptions(trail=2))
    # The shorter run shows its last snapshot; the other the one at step 30.
    assert [s.step for s in frame.snapshots] == [30, 20]
    assert [a.text for a in frame.features_figure.layout.annotations] == ["center · step 30", "softmax · step 20"]
    assert len(frame.histogram_figure.data) == 4
    rows = view.table(frame.snapshots)
    assert [r["run"] for r in rows] == ["center", "softmax"] and rows[0]["step"] == 30
    scrubbed = view.frame(indexes, 10, ViewOptions())
    assert [s.step for s in scrubbed.snapshots] == [10, 10]
    curves = view.curves()
    assert {t.name for t in curves.data} == {"center", "softmax"}


def test_a_comparison_refuses_runs_with_different_probe_sets(tmp_path):
    from dmlviz.view import ComparisonView

    store, first = recorded_run(tmp_path, dim=2)
    _, second = recorded_run(tmp_path, dim=2)
    store.put_info(second, "probe_labels", np.zeros(CLASSES * PER_CLASS, dtype=int))
    view = ComparisonView(store, [first, second])
    assert "different probe images" in view.probe_problem()


def _view(figure) -> np.ndarray:
    """The view a live 2-D figure holds open (its invisible anchor line), 2 × 2: low, high of x and y."""
    (anchor,) = [t for t in figure.data if t.name == "view"]
    return np.array([anchor.x, anchor.y], dtype=float)


def _drawn_box(figure) -> np.ndarray:
    """The box of every point, class mean and class vector a 2-D figure draws (not the view anchor)."""
    rows = [np.column_stack([t.x, t.y]) for t in figure.data if t.x is not None and t.name != "view"]
    return figures.hull(*(figures._box(r, 2) for r in rows if len(r)))


def test_live_axes_follow_the_run_without_clipping_and_hold_when_fixed(tmp_path):
    from dataclasses import replace

    store, run_id = recorded_run(tmp_path, dim=2, frames=8)
    view = RunView(store, run_id)
    index = view.snapshots()
    options = ViewOptions(trail=2)
    ranges = []
    for position in range(len(index)):
        figure = view.frame(index, position, options).features_figure
        ranges.append(_view(figure))
        drawn = _drawn_box(figure)
        assert np.all(drawn[:, 0] >= ranges[-1][:, 0]) and np.all(drawn[:, 1] <= ranges[-1][:, 1])
    # The classes drift apart: the view only ever zooms out, and grew from the first frame's.
    for before, after in zip(ranges, ranges[1:], strict=False):
        assert np.all(after[:, 0] <= before[:, 0]) and np.all(after[:, 1] >= before[:, 1])
    assert np.ptp(ranges[-1][0]) > 2 * np.ptp(ranges[0][0])
    # Scrubbing back to the start keeps the view for a while (no jump), then zooms in.
    follower = view.follower(options, 2)
    back = [_view(view.frame(index, 0, options).features_figure)[0] for _ in range(3)]
    assert all(tuple(r) == tuple(ranges[-1][0]) for r in back)  # the same frame again counts once
    scrubbed = [tuple(_view(view.frame(index, p, options).features_figure)[0])
                for p in (1, 0, 1, 0, 1, 0, 1)[:follower.patience - 1]]  # small frames 2 … patience
    assert scrubbed[:-1] == [tuple(ranges[-1][0])] * (follower.patience - 2) and scrubbed[-1] != scrubbed[0]
    # Fixed: the view of the moment stays, whatever the frame.
    fixed = replace(options, axes="fixed")
    held = _view(view.frame(index, 0, fixed).features_figure)[0]
    assert tuple(_view(view.frame(index, len(index) - 1, fixed).features_figure)[0]) == tuple(held)


def test_a_replay_follows_each_frame_or_holds_the_whole_run_and_so_does_its_histogram(tmp_path):
    from dataclasses import replace

    store, run_id = recorded_run(tmp_path, dim=2, frames=6)
    view = RunView(store, run_id)
    options = view.default_options()
    played = view.replay_frames(options)
    follow = view.replay(options)
    for frame, expected in zip(follow.frames, played.views, strict=True):
        # Each frame carries its own view, as an invisible line across it that autorange holds.
        (anchor,) = [t for t in frame.data if t.name == "view"]
        np.testing.assert_allclose(np.array([anchor.x, anchor.y]), expected)
        drawn = _drawn_box(go.Figure(data=[t for t in frame.data if t.type != "bar"]))
        assert np.all(drawn[:, 0] >= expected[:, 0]) and np.all(drawn[:, 1] <= expected[:, 1])
        # The histogram fits each frame: its own range, explicit (animate does not re-autorange).
        bar_x = max(float(np.max(t.x)) for t in frame.data if t.type == "bar")
        assert frame.layout.xaxis2.autorange is False and frame.layout.xaxis2.range[0] == 0
        assert bar_x <= frame.layout.xaxis2.range[1] <= 1.1 * bar_x
    assert follow.layout.xaxis.range is None  # autoranged: the anchor and the data decide
    assert np.ptp(played.views[0][0]) < 0.5 * np.ptp(played.views[-1][0])  # the first frame is no dot

    fixed = view.replay(replace(options, axes="fixed"))
    whole = np.array([fixed.layout.xaxis.range, fixed.layout.yaxis.range])
    assert fixed.layout.xaxis.autorange is False
    assert not any(t.name == "view" for frame in fixed.frames for t in frame.data)
    for frame in fixed.frames:
        drawn = _drawn_box(go.Figure(data=[t for t in frame.data if t.type != "bar"]))
        assert np.all(drawn[:, 0] >= whole[:, 0]) and np.all(drawn[:, 1] <= whole[:, 1])
        assert "xaxis2" not in frame.layout.to_plotly_json()  # the frames leave the histogram's axes alone
    # The histogram's axes hold the whole run: the distances grew, so not the first frame's range.
    tops = [float(h.edges[-1]) for h in played.histograms]
    assert tuple(fixed.layout.xaxis2.range) == (0, max(tops)) and max(tops) > 1.5 * tops[0]
    highest = max(float(np.max([*h.intra, *h.inter])) for h in played.histograms)
    assert fixed.layout.yaxis2.range[1] == pytest.approx(1.05 * highest)
