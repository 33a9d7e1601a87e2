"""Geometry numbers against hand-computed cases."""

import math

import numpy as np
import pytest
import torch

from dmlviz.geometry import (
    distance_histogram,
    fisher_ratio,
    mean_angles,
    nearest_neighbours,
    retrieval_metrics,
    snapshot_metrics,
)


def test_angles_of_a_hand_built_case():
    # Class 0 at ±30° around the x axis, class 1 at ±30° around the y axis.
    a = np.deg2rad([-30, 30, 60, 120])
    features = np.stack([np.cos(a), np.sin(a)], 1) * np.array([[1], [2], [3], [0.5]])  # norms do not matter
    angles = mean_angles(features, np.array([0, 0, 1, 1]))
    assert angles["intra_angle"] == pytest.approx(30.0, abs=1e-4)
    assert angles["inter_angle"] == pytest.approx(90.0, abs=1e-4)


def test_retrieval_of_a_hand_built_case():
    # Points on a line: 0, 1 (class a), 10, 12 (class b), 2.5 (class b, nearest to 1).
    features = np.array([[0.0], [1.0], [10.0], [12.0], [2.5]])
    labels = np.array([0, 0, 1, 1, 1])
    metrics = retrieval_metrics(features, labels, normalized=False)
    # Nearest neighbours: 0→1 ✓, 1→0 ✓, 10→12 ✓, 12→10 ✓, 2.5→1 ✗.
    assert metrics["p_at_1"] == pytest.approx(4 / 5)
    # MAP@R, R = 1 for class a, 2 for class b: a-queries 1, 1; 10: [12 ✓, 2.5 ✓] = 1;
    # 12: [10 ✓, 2.5 ✓] = 1; 2.5: [1 ✗, 0 ✗] = 0.
    assert metrics["map_at_r"] == pytest.approx(4 / 5)


def test_cosine_retrieval_ignores_norms():
    rng = np.random.default_rng(0)
    directions = np.repeat(np.eye(3), 5, axis=0) + 0.01 * rng.normal(size=(15, 3))
    scaled = directions * rng.uniform(0.1, 10, size=(15, 1))
    labels = np.repeat(np.arange(3), 5)
    assert retrieval_metrics(scaled, labels, normalized=True) == {"p_at_1": 1.0, "map_at_r": 1.0}
    assert not math.isnan(mean_angles(scaled, labels)["intra_angle"])


# -- Fisher ratio ---------------------------------------------------------------------------------


def test_fisher_ratio_of_a_hand_built_case():
    # Class a at 0, 2 (mean 1), class b at 10, 12 (mean 11); overall mean 6.
    # S_B = 2·5² + 2·5² = 100, S_W = 4 · 1² = 4.
    features = np.array([[0.0, 7.0], [2.0, 7.0], [10.0, 7.0], [12.0, 7.0]])
    assert fisher_ratio(features, np.array([0, 0, 1, 1])) == pytest.approx(25.0)
    # Unequal class sizes weigh each class mean by its size: a {0, 2}, b {10, 11, 12} → mean 7,
    # S_B = 2·6² + 3·4² = 120, S_W = 1 + 1 + 1 + 0 + 1 = 4.
    features = np.array([[0.0], [2.0], [10.0], [11.0], [12.0]])
    assert fisher_ratio(torch.tensor(features), torch.tensor([0, 0, 1, 1, 1])) == pytest.approx(30.0)


def test_fisher_ratio_is_nan_without_two_classes_or_spread():
    assert math.isnan(fisher_ratio(np.array([[0.0], [1.0]]), np.array([3, 3])))
    assert math.isnan(fisher_ratio(np.array([[0.0], [0.0], [1.0]]), np.array([0, 0, 1])))


# -- distance histogram ---------------------------------------------------------------------------


def test_histogram_of_three_points_on_a_line():
    # 0, 1 (class a) and 3 (class b): intra {1}, inter {3, 2}; six bins of width 0.5 over [0, 3].
    hist = distance_histogram(np.array([[0.0], [1.0], [3.0]]), np.array([0, 0, 1]), bins=6)
    assert hist.metric == "euclidean"
    np.testing.assert_allclose(hist.edges, [0, 0.5, 1, 1.5, 2, 2.5, 3])
    np.testing.assert_allclose(hist.intra, [0, 0, 1, 0, 0, 0])
    np.testing.assert_allclose(hist.inter, [0, 0, 0, 0, 0.5, 0.5])
    assert hist.overlap == 0.0
    assert hist.gap == pytest.approx(1.0)
    assert (hist.intra_mean, hist.inter_mean) == (pytest.approx(1.0), pytest.approx(2.5))
    assert hist.pairs == (1, 2)


def test_histogram_of_interleaved_classes():
    # 0, 2 (class a) and 1 (class b): intra {2}, inter {1, 1}; bins [0, 1), [1, 2].
    hist = distance_histogram(np.array([[0.0], [2.0], [1.0]]), np.array([5, 5, 7]), bins=2)
    np.testing.assert_allclose(hist.intra, [0, 1])
    np.testing.assert_allclose(hist.inter, [0, 1])
    assert hist.overlap == pytest.approx(1.0)
    assert hist.gap == pytest.approx(-1.0)


def test_angular_histogram_ignores_norms():
    # Class a at 0° and 45°, class b at 100° and 170°, with unrelated norms.
    # intra {45, 70}; inter {100, 170, 55, 125}; bins of 30° over [0, 180].
    angles = np.deg2rad([0, 45, 100, 170])
    features = np.stack([np.cos(angles), np.sin(angles)], 1) * np.array([[1.0], [5.0], [0.2], [3.0]])
    hist = distance_histogram(features, np.array([0, 0, 1, 1]), metric="angular", bins=6)
    np.testing.assert_allclose(hist.edges, np.arange(0, 181, 30))
    np.testing.assert_allclose(hist.intra, [0, 0.5, 0.5, 0, 0, 0])
    np.testing.assert_allclose(hist.inter, [0, 0.25, 0, 0.25, 0.25, 0.25])
    assert hist.overlap == pytest.approx(0.25)
    assert hist.gap == pytest.approx(55 - 70, abs=1e-3)
    assert hist.intra_mean == pytest.approx(57.5, abs=1e-3)
    assert hist.inter_mean == pytest.approx(112.5, abs=1e-3)


def test_separated_and_mixed_classes():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 100)
    points = rng.normal(size=(300, 8))
    separated = distance_histogram(points + 20 * np.eye(3, 8)[labels], labels)
    mixed = distance_histogram(points, labels)
    for hist in (separated, mixed):
        assert hist.pairs == (3 * 100 * 99 // 2, 3 * 100 * 100)
        assert hist.intra.sum() == pytest.approx(1.0) and hist.inter.sum() == pytest.approx(1.0)
        assert len(hist.edges) == 51 and hist.edges[0] == 0
    assert separated.overlap == 0.0 and separated.gap > 0
    assert separated.inter_mean > 2 * separated.intra_mean
    assert mixed.overlap > 0.9 and mixed.gap < 0
    assert mixed.inter_mean == pytest.approx(mixed.intra_mean, rel=0.05)


def test_histogram_subsamples_the_same_points_every_time():
    rng = np.random.default_rng(1)
    features, labels = rng.normal(size=(900, 4)), rng.integers(0, 3, 900)
    first = distance_histogram(features, labels, max_points=300)
    assert sum(first.pairs) == 300 * 299 // 2
    np.testing.assert_array_equal(first.inter, distance_histogram(features, labels, max_points=300).inter)
    assert not np.array_equal(first.inter, distance_histogram(features, labels, max_points=300, seed=1).inter)


def test_histogram_without_two_classes_is_empty():
    for labels in ([4, 4, 4], [0, 1, 2]):  # one class; no pair within a class
        hist = distance_histogram(np.eye(3), np.array(labels))
        assert hist.edges.size == hist.intra.size == hist.inter.size == 0
        assert all(math.isnan(x) for x in (hist.overlap, hist.gap, hist.intra_mean, hist.inter_mean))
    with pytest.raises(ValueError, match="metric"):
        distance_histogram(np.eye(3), np.array([0, 0, 1]), metric="cosine")


# -- snapshot metrics ------------------------------------------------------------------------------


def test_snapshot_metrics_of_a_hand_built_case():
    # The retrieval case above: P@1 = MAP@R = 4/5.
    features = np.array([[0.0], [1.0], [10.0], [12.0], [2.5]])
    labels = np.array([0, 0, 1, 1, 1])
    metrics = snapshot_metrics(features, labels, normalized=False)
    assert set(metrics) == {"p_at_1", "map_at_r", "fisher_ratio", "intra_angle", "inter_angle", "overlap"}
    assert metrics["p_at_1"] == pytest.approx(4 / 5) and metrics["map_at_r"] == pytest.approx(4 / 5)
    assert metrics["fisher_ratio"] == pytest.approx(fisher_ratio(features, labels))
    assert metrics["overlap"] == pytest.approx(distance_histogram(features, labels).overlap)
    assert metrics["inter_angle"] == pytest.approx(0.0)  # every point lies on the positive axis


@pytest.mark.parametrize("normalized", [False, True])
def test_snapshot_metrics_agree_with_the_separate_functions(normalized):
    rng = np.random.default_rng(2)
    labels = np.concatenate([rng.integers(0, 5, 300), [9]])  # class 9 has one sample: no query of its own
    features = rng.normal(size=(301, 6)) + 1.5 * np.eye(6)[labels % 6]
    metrics = snapshot_metrics(features, labels, normalized)
    assert {k: metrics[k] for k in ("p_at_1", "map_at_r")} == pytest.approx(
        retrieval_metrics(features, labels, normalized))
    directions = features / np.linalg.norm(features, axis=1, keepdims=True)
    assert metrics["fisher_ratio"] == pytest.approx(fisher_ratio(directions if normalized else features, labels))
    metric = "angular" if normalized else "euclidean"
    assert metrics["overlap"] == pytest.approx(distance_histogram(features, labels, metric).overlap)
    assert metrics["intra_angle"] == pytest.approx(mean_angles(features, labels)["intra_angle"])


def test_snapshot_metrics_leave_out_what_does_not_exist():
    features = np.random.default_rng(3).normal(size=(10, 3))
    one_class = snapshot_metrics(features, np.zeros(10), normalized=True)
    assert set(one_class) == {"p_at_1", "map_at_r", "intra_angle"}
    assert "map_at_r" not in snapshot_metrics(features, np.arange(10), normalized=False)  # every class alone
    assert snapshot_metrics(features[:1], np.zeros(1), normalized=False) == {}


# -- nearest neighbours ----------------------------------------------------------------------------


def test_nearest_neighbours_on_a_line():
    features = torch.tensor([[0.0], [1.0], [3.0], [4.5], [-2.0]])
    indices, distances = nearest_neighbours(features, 0)  # k beyond the other points: all of them
    np.testing.assert_array_equal(indices, [1, 4, 2, 3])
    np.testing.assert_allclose(distances, [1, 2, 3, 4.5])
    indices, distances = nearest_neighbours(features, 2, k=2)
    np.testing.assert_array_equal(indices, [3, 1])
    np.testing.assert_allclose(distances, [1.5, 2])
    with pytest.raises(IndexError):
        nearest_neighbours(features, 5)


def test_nearest_neighbours_by_angle():
    angles = np.deg2rad([0, 100, -30, 10])
    features = np.stack([np.cos(angles), np.sin(angles)], 1) * np.array([[1.0], [0.1], [9.0], [50.0]])
    indices, distances = nearest_neighbours(features, 0, k=3, normalized=True)
    np.testing.assert_array_equal(indices, [3, 2, 1])
    np.testing.assert_allclose(distances, [10, 30, 100], atol=1e-3)
    # By Euclidean distance the long vector at 10° is the farthest.
    assert nearest_neighbours(features, 0, k=3)[0][-1] == 3
