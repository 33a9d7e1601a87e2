"""Geometry numbers against hand-computed cases."""

import math

import numpy as np
import pytest

from dmlviz.geometry import mean_angles, retrieval_metrics


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
