"""Decision regions and margin bands of a 2-D feature space, against the formulas they are drawn from."""

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dmlviz import export, figures, margins, regions
from dmlviz.config import RunConfig
from dmlviz.engine import setup, train
from dmlviz.losses import build_loss
from dmlviz.runner import StoreSink
from dmlviz.store import RunStore
from dmlviz.view import RunView, ViewOptions

BOX = np.array([[-2.0, 2.0], [-2.0, 2.0]])


def two_class_head(name: str, **hp) -> torch.nn.Module:
    """A margin head with its class weights along the x axis (class 0) and the y axis (class 1)."""
    loss = build_loss(name, 2, 2, warmup=0.0, **hp)
    with torch.no_grad():
        loss.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    return loss


def recorded(folder: Path, store: RunStore | None = None, **settings) -> tuple[RunStore, int]:
    """A short run on digits recorded in a store (``folder``'s, or ``store``)."""
    config = RunConfig.from_dict({"dataset": "digits", "device": "cpu", "probe_size": 100, **settings})
    store = store or RunStore(folder / "store")
    run_id = store.create_run(config.to_dict())
    assert train(config, folder / "data", StoreSink(store, run_id), threads=1).outcome == "finished"
    return store, run_id


def margined(loss):
    return lambda points, labels: loss.margin_logits(loss.cosine(points), labels)


def angles(decision: dict) -> np.ndarray:
    """The angle of every cell's centre from the x axis, as the grid lays them out."""
    centres = regions.cell_centres(decision["box"])
    return np.arctan2(centres[:, 1], centres[:, 0]).reshape(decision["winner"].shape)


def test_the_grid_covers_the_features_and_the_unit_square_with_room_to_spare():
    box = regions.grid_box(np.array([[0.0, 0.0], [3.0, 0.5]]))
    assert box[0, 0] < -1 and box[0, 1] > 3 and box[1, 0] < -1 and box[1, 1] > 1
    centres = regions.cell_centres(box, 4)
    assert centres.shape == (16, 2) and np.all(np.diff(centres[:4, 0]) > 0)  # a row runs along x
    assert centres[0, 1] < centres[4, 1]  # rows from the lowest y


def test_softmax_regions_are_split_where_the_logits_are_equal():
    """The drawn boundary between classes i and j lies where (W_i − W_j)·x + b_i − b_j = 0, within a cell."""
    torch.manual_seed(0)
    loss = build_loss("softmax", 2, 2)
    w, b = loss.classifier.weight.detach().numpy(), loss.classifier.bias.detach().numpy()
    decision = regions.decision_map(torch.tensor([[-1.5, -1.5], [1.5, 1.5]]), loss.predict)
    assert decision["winner"].shape == (regions.GRID, regions.GRID) and "band" not in decision
    centres = regions.cell_centres(decision["box"])
    expected = np.argmax(centres @ w.T + b, axis=1).reshape(decision["winner"].shape)
    assert np.array_equal(decision["winner"], expected)
    line = figures.boundary_lines(decision["winner"], decision["box"])
    ends = np.stack([line["x"], line["y"]], 1)
    ends = ends[np.isfinite(ends).all(1)]
    assert len(ends) >= 2
    normal = w[0] - w[1]
    distance = np.abs(ends @ normal + b[0] - b[1]) / np.linalg.norm(normal)
    cell = np.hypot(*(decision["box"][:, 1] - decision["box"][:, 0])) / regions.GRID
    assert distance.max() <= cell


def test_arcface_band_is_where_the_target_angle_plus_its_margin_passes_the_other():
    """Class 0 wins below 45°; a sample there still loses with ArcFace's margin where θ_0 + m > θ_1, i.e.
    above (90° − m) / 2."""
    m = 0.5
    loss = two_class_head("arcface", scale=16.0, margin=m)
    decision = regions.decision_map(torch.tensor(BOX.T), loss.predict, margined(loss))
    phi = angles(decision)
    first = (phi > 0) & (phi < math.pi / 2)
    assert np.array_equal(decision["winner"][first], (phi[first] > math.pi / 4).astype(np.uint8))
    inside = first & (decision["winner"] == 0) & (np.abs(phi - (math.pi / 2 - m) / 2) > 1e-6)
    assert np.array_equal(regions.band_of(decision)[inside], phi[inside] > (math.pi / 2 - m) / 2)
    assert regions.band_of(decision)[inside].any() and not regions.band_of(decision)[inside].all()


def test_cosface_band_is_where_the_target_cosine_less_its_margin_falls_below_the_other():
    m = 0.35
    loss = two_class_head("cosface", scale=16.0, margin=m)
    decision = regions.decision_map(torch.tensor(BOX.T), loss.predict, margined(loss))
    phi = angles(decision)
    inside = (phi > 0) & (phi < math.pi / 4) & (np.abs(np.cos(phi) - m - np.sin(phi)) > 1e-6)
    assert np.array_equal(regions.band_of(decision)[inside], (np.cos(phi) - m < np.sin(phi))[inside])


def test_no_map_without_two_dimensions_or_a_classifier():
    assert regions.decision_map(torch.zeros(5, 3), lambda points: points) == {}
    assert regions.decision_map(torch.zeros(5, 2), lambda points: None) == {}


def test_the_map_is_drawn_under_the_points_with_the_same_traces_whatever_it_holds():
    loss = two_class_head("arcface", scale=16.0, margin=0.5)
    decision = regions.decision_map(torch.tensor(BOX.T), loss.predict, margined(loss))
    points, labels = np.array([[1.0, 0.2], [0.1, 1.0]]), np.array([0, 1])
    figure = figures.feature_figure(points, labels, ["zero", "one"], [0, 1], decision=decision)
    names = [trace.name for trace in figure.data]
    assert names[:3] == ["decision regions", "margin band", "decision boundaries"]
    assert figure.data[0].z.shape == decision["winner"].shape
    empty = figures.feature_traces(points, labels, ["zero", "one"], [0, 1], decision={})
    assert [trace["name"] for trace in empty[:3]] == names[:3]  # a frame without a map keeps the replay's traces
    assert "decision regions" not in [t["name"] for t in figures.feature_traces(points, labels, ["a", "b"], [0, 1])]


@pytest.mark.parametrize("classes", [2, 10, 300])
def test_a_map_takes_no_more_than_its_budget(classes):
    winner = np.random.default_rng(0).integers(0, classes, (regions.GRID, regions.GRID))
    kind = np.uint8 if classes <= 256 else np.int16
    stored = {"box": BOX, "winner": winner.astype(kind), "band": np.packbits(winner % 2 == 0)}
    buffer = io.BytesIO()
    np.savez(buffer, **stored)  # uncompressed: the most it can take
    assert len(buffer.getvalue()) <= regions.map_bytes(classes)


@pytest.mark.parametrize("loss", ["center", "arcface", "triplet"])
def test_a_2d_run_records_the_map_its_accuracy_is_measured_with(tmp_path, one_thread, loss):
    """Each probe point lies in a cell won by the class its run's classifier (or nearest class mean) picks,
    but for points within a cell of a boundary; the map survives the store."""

    store, run_id = recorded(tmp_path, loss=loss, steps=40, probe_size=200, snapshot_steps=20)
    final = store.latest_snapshot(run_id)
    decision = final.decision
    assert final.class_means.shape == (10, 2)  # the loss's terms recorded beside them leave them whole
    assert decision["winner"].shape == (regions.GRID, regions.GRID)
    box, features = decision["box"], final.features
    if store.get_info(run_id, "normalized"):  # a loss that reads directions: its map lies over the unit circle
        features = features / np.linalg.norm(features, axis=1, keepdims=True)
        assert np.allclose(box, regions.grid_box(features, directions=True))
    cells = np.floor((features - box[:, 0]) / (box[:, 1] - box[:, 0]) * regions.GRID).astype(int)
    picked = decision["winner"][cells[:, 1], cells[:, 0]]
    labels = np.asarray(store.get_info(run_id, "probe_labels"))
    accuracy = final.metrics["probe_acc"]
    assert abs(np.mean(picked == labels) - accuracy) <= 0.05
    if loss == "arcface":  # its margin warms up over the first 30 % of the run
        band = regions.band_of(decision)
        assert band is not None and band.shape == decision["winner"].shape and band.any()
    assert store.get_snapshot(run_id, 0).decision.get("winner") is not None or loss == "triplet"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Softmax and center-loss trainers on digits in 2-D, a few steps in (on one thread, as tiny tensors want)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    trainers = {}
    for loss in ("softmax", "center"):
        config = RunConfig.from_dict({"dataset": "digits", "device": "cpu", "loss": loss, "steps": 40,
                                      "probe_size": 200})
        trainer = setup(config, tmp_path_factory.mktemp("data"))
        for _ in range(20):
            trainer.train_step()
        trainers[loss] = trainer
    yield trainers
    torch.set_num_threads(threads)


def probe(trainer):
    features = trainer.embed(trainer.data.probe_batch())
    return features, trainer.data.to_train_label[trainer.data.probe_labels]


def test_softmax_forces_are_minus_the_gradient_of_each_samples_cross_entropy(trained):
    """−∂CE/∂f = −Wᵀ(p − onehot(y)) for each sample, p = softmax(W f + b)."""
    trainer = trained["softmax"]
    features, labels = probe(trainer)
    forces = trainer.forces(features, labels)
    rows = forces["rows"]
    assert 2 <= len(rows) <= regions.FORCE_POINTS and np.all(labels.numpy()[rows] >= 0)
    w, b = trainer.loss_fn.classifier.weight.detach(), trainer.loss_fn.classifier.bias.detach()
    f = features[rows]
    p = torch.softmax(f @ w.T + b, dim=1)
    expected = -(p - torch.nn.functional.one_hot(labels[rows], w.shape[0]).float()) @ w
    np.testing.assert_allclose(forces["vectors"], expected.numpy(), rtol=1e-4, atol=1e-5)


def test_center_loss_forces_add_the_pull_towards_the_center(trained):
    """The center term λ·½·mean‖f − c_y‖² adds −λ(f − c_y) to each sample's softmax force."""
    trainer = trained["center"]
    features, labels = probe(trainer)
    rows = trainer.forces(features, labels)["rows"]
    loss = trainer.loss_fn
    w, b = loss.classifier.weight.detach(), loss.classifier.bias.detach()
    f, y = features[rows], labels[rows]
    p = torch.softmax(f @ w.T + b, dim=1)
    expected = -(p - torch.nn.functional.one_hot(y, w.shape[0]).float()) @ w - loss.weight * (f - loss.centers[y])
    np.testing.assert_allclose(trainer.forces(features, labels)["vectors"], expected.detach().numpy(),
                               rtol=1e-4, atol=1e-5)
    assert torch.equal(loss.centers, trainer.loss_fn.centers)  # evaluating the forces moved no center


def test_arrows_are_scaled_together_and_turn_directions_along_the_circle():
    bases = np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, -1.0]])
    vectors = np.array([[0.0, 1.0], [0.0, 4.0], [2.0, 0.0]])
    points = np.array([[-5.0, -5.0], [5.0, 5.0]])
    shafts, heads = figures.force_traces(figures.Forces(bases, vectors, np.array([0, 1, 2])), points)
    lengths = np.linalg.norm(np.stack([heads["x"], heads["y"]], 1) - bases, axis=1)
    assert np.percentile(lengths, 90) == pytest.approx(figures.ARROW_SHARE * 10)
    assert lengths[1] / lengths[0] == pytest.approx(4)  # lengths compare within a frame
    assert np.isnan(shafts["x"][2::3]).all()  # one shaft per arrow
    empty = figures.force_traces(figures.Forces(np.empty((0, 2)), np.empty((0, 2)), np.empty(0)), points)
    assert [t["name"] for t in empty] == ["forces", "force heads"] and len(empty[0]["x"]) == 0


def test_the_view_draws_a_normalised_loss_s_forces_along_the_circle(tmp_path, one_thread):
    store, run_id = recorded(tmp_path, loss="normface", steps=10, snapshot_steps=10)
    view = RunView(store, run_id)
    index = view.snapshots()
    drawing = view.drawing(index, len(index) - 1, ViewOptions(directions=True, forces=True))
    forces = drawing.panel.forces
    assert len(forces.bases) > 0 and np.allclose(np.linalg.norm(forces.bases, axis=1), 1, atol=1e-5)
    assert np.allclose((forces.bases * forces.vectors).sum(1), 0, atol=1e-5)  # tangent: they turn the direction
    assert view.drawing(index, len(index) - 1, ViewOptions(directions=True)).panel.forces is None


def test_the_margin_now_is_the_curve_at_the_runs_schedule_over_the_probe_angles(tmp_path, one_thread):
    shown = {}
    store = None
    for loss in ("arcface", "softmax"):
        store, run_id = recorded(tmp_path, store, loss=loss, steps=20, snapshot_steps=10,
                                 loss_params={"warmup": 1.0} if loss == "arcface" else {})
        view = RunView(store, run_id)
        index = view.snapshots()
        shown[loss] = (view, [store.get_snapshot(run_id, i.seq) for i in index], index)
    view, snapshots, index = shown["arcface"]
    middle = next(i for i, info in enumerate(index) if info.step == 10)
    figure = view.margin(snapshots[middle], 10)
    curve = next(t for t in figure.data if t.name == "ArcFace")
    # Half way through a warm-up over the whole run at step 10 of 20: the margin is 0.25 of its 0.5.
    np.testing.assert_allclose(curve.y, margins.target_logit("arcface", margins.THETAS, margin=0.25))
    assert not np.allclose(curve.y, margins.target_logit("arcface", margins.THETAS))
    angles = next(t for t in figure.data if t.type == "histogram").x
    assert len(angles) == 100 and np.all((angles >= 0) & (angles <= 180))
    assert shown["softmax"][0].margin(shown["softmax"][1][-1], 20) is None


def test_on_the_sphere_a_class_wins_where_its_weight_is_nearest_and_arcface_s_band_is_its_margin():
    m = 0.3
    loss = build_loss("arcface", 3, 3, warmup=0.0, scale=16.0, margin=m)
    with torch.no_grad():
        loss.weight.copy_(torch.eye(3))
    decision = regions.decision_map(torch.randn(50, 3), loss.predict, margined(loss), directions=True)
    assert "box" not in decision and decision["winner"].shape == (regions.SPHERE_ROWS, 2 * regions.SPHERE_ROWS)
    centres = regions.sphere_centres()
    winner = decision["winner"].ravel()
    assert np.array_equal(winner, centres.argmax(1))
    angles = np.arccos(np.clip(centres, -1, 1))  # to each class weight
    own = angles[np.arange(len(winner)), winner]
    nearest_other = np.where(np.eye(3, dtype=bool)[winner], np.inf, angles).min(1)
    clear = np.abs(own + m - nearest_other) > 1e-4
    assert np.array_equal(regions.band_of(decision).ravel()[clear], (own + m > nearest_other)[clear])
    assert regions.decision_map(torch.randn(50, 3), loss.predict, directions=False) == {}  # raw 3-D: no map
    surface, arcs = figures.sphere_decision_traces(decision, [0, 1, 2])
    assert np.shape(surface["surfacecolor"]) == (regions.SPHERE_ROWS, 2 * regions.SPHERE_ROWS + 1)
    ends = np.stack([arcs["x"], arcs["y"], arcs["z"]], 1)
    ends = ends[np.isfinite(ends).all(1)]
    assert len(ends) and np.allclose(np.linalg.norm(ends, axis=1), 1.004)  # on (just above) the sphere


def test_the_exports_draw_the_regions_and_forces_when_asked(tmp_path, one_thread):
    store, run_id = recorded(tmp_path, loss="center", steps=20, snapshot_steps=10)
    plain = np.asarray(Image.open(export.write_png(store, run_id, tmp_path / "plain.png")))
    drawn = np.asarray(Image.open(export.write_png(store, run_id, tmp_path / "why.png", regions=True, forces=True)))
    assert plain.shape == drawn.shape and np.mean(np.any(plain != drawn, axis=-1)) > 0.05
    html = export.write_replay(store, run_id, tmp_path / "replay.html", regions=True, forces=True).read_text()
    assert "decision regions" in html and "force heads" in html
