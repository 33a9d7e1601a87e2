"""Projections: explained variance of hand-built cases, the origin of uncentred maps, Procrustes
alignment that keeps consecutive frames from flipping, and the nonlinear embeddings."""

import numpy as np
import pytest
import torch

from dmlviz.projection import LinearMap, nonlinear, pca_map, procrustes_align


def rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.square(a - b).sum(1).mean()))


def whitened(n: int, d: int, seed: int = 0) -> np.ndarray:
    """n points in d dimensions with mean 0 and covariance exactly the identity."""
    z = np.random.default_rng(seed).normal(size=(n, d))
    q, _ = np.linalg.qr(z - z.mean(0))
    return q * np.sqrt(n)


def test_points_on_a_line_are_explained_by_one_axis():
    direction = np.array([1.0, 2.0, -1.0, 0.5, 3.0])
    line = np.array([4.0, -1.0, 2.0, 0.0, 1.0]) + np.linspace(-3, 5, 50)[:, None] * direction
    linear = pca_map(line, 1)
    assert linear.explained == pytest.approx(1.0)
    assert abs(linear.components[:, 0] @ direction) == pytest.approx(np.linalg.norm(direction), rel=1e-5)
    assert pca_map(line, 2).explained == pytest.approx(1.0)


def test_explained_variance_of_a_hand_built_case():
    # Variance 8 along x (points at ±2), 2 along y (±1): one axis keeps 8 / 10.
    points = np.array([[2, 0, 0], [-2, 0, 0], [0, 1, 0], [0, -1, 0]], dtype=float) + [1, 2, 3]
    linear = pca_map(points, 1)
    assert linear.explained == pytest.approx(0.8)
    np.testing.assert_allclose(linear.components[:, 0], [1, 0, 0], atol=1e-6)  # the sign rule: largest loading > 0
    np.testing.assert_allclose(linear(points)[:, 0], [2, -2, 0, 0], atol=1e-5)


def test_uncentred_map_keeps_the_origin():
    # A line through a = e1 along v = e2 with t = -2..2 has second moments 5·|a|² = 5 and Σt² = 10:
    # around the origin one axis keeps 10 / 15, centred it keeps all.
    line = np.array([[1.0, t, 0.0, 0.0] for t in (-2, -1, 0, 1, 2)])
    assert pca_map(line, 1, center=False).explained == pytest.approx(2 / 3)
    assert pca_map(line, 1).explained == pytest.approx(1.0)

    features = np.random.default_rng(0).normal(size=(100, 6)) + 3.0
    origin = np.zeros((1, 6))
    uncentred = pca_map(features, 2, center=False)
    np.testing.assert_array_equal(uncentred.mean, 0)
    np.testing.assert_allclose(uncentred(origin), 0)
    turned = pca_map(features + 0.1, 2, previous=uncentred, center=False)
    np.testing.assert_allclose(turned(origin), 0)
    assert np.abs(pca_map(features, 2)(origin)).max() > 1  # a centred map moves the origin


def test_map_takes_tensors_and_class_vectors_alike():
    features = np.random.default_rng(1).normal(size=(50, 8)).astype(np.float32)
    linear = pca_map(torch.from_numpy(features), 3)
    assert isinstance(linear, LinearMap) and linear.components.shape == (8, 3)
    np.testing.assert_allclose(linear.components.T @ linear.components, np.eye(3), atol=1e-5)
    out = linear(torch.from_numpy(features[:4]))
    assert out.dtype == np.float32 and out.shape == (4, 3)
    np.testing.assert_allclose(out, (features[:4] - features.mean(0)) @ linear.components, atol=1e-5)


def test_aligned_projection_does_not_swap_nearly_equal_axes():
    # Two axes of nearly equal variance trade places after a 3 % change: a plain PCA swaps x and y.
    z = whitened(400, 5)
    before = z * [1.0, 0.97, 0.3, 0.2, 0.1]
    after = z * [0.97, 1.0, 0.3, 0.2, 0.1]
    previous = pca_map(before, 2)
    plain, aligned = pca_map(after, 2), pca_map(after, 2, previous=previous)
    assert rms(plain(after), previous(before)) > 1.0
    assert rms(aligned(after), previous(before)) < 0.05
    # Still the PCA of the new frame: the same plane and the same explained variance.
    np.testing.assert_allclose(aligned.components @ aligned.components.T, plain.components @ plain.components.T,
                               atol=1e-5)
    assert aligned.explained == pytest.approx(plain.explained)


def test_aligned_projection_does_not_mirror():
    # The main axis turns from 44° to 46° below the x axis: its largest loading moves from x to y,
    # so the sign rule alone mirrors the picture.
    def frame(degrees: float) -> np.ndarray:
        phi = np.deg2rad(degrees)
        z = whitened(200, 4, seed=2)
        return np.outer(z[:, 0], [np.cos(phi), -np.sin(phi), 0, 0]) + 0.3 * np.outer(z[:, 1], [0, 0, 1, 0])

    before, after = frame(44), frame(46)
    previous = pca_map(before, 2)
    plain, aligned = pca_map(after, 2), pca_map(after, 2, previous=previous)
    assert rms(plain(after), previous(before)) > 1.5
    assert rms(aligned(after), previous(before)) < 0.05


def test_previous_map_of_another_shape_is_ignored():
    features = np.random.default_rng(3).normal(size=(60, 5))
    fresh = pca_map(features, 3)
    other = pca_map(features, 2, previous=pca_map(features[:, :4], 2))
    np.testing.assert_allclose(other.components, fresh.components[:, :2], atol=1e-6)
    with pytest.raises(ValueError, match="dims"):
        pca_map(features, 6)


def test_procrustes_recovers_a_mirrored_rotated_scaled_copy():
    reference = np.random.default_rng(4).normal(size=(30, 2))
    angle = np.deg2rad(30)
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]) @ np.diag([1, -1])
    coords = 2.5 * reference @ turn + [7.0, -3.0]
    np.testing.assert_allclose(procrustes_align(coords, reference, scale=True), reference, atol=1e-5)
    unscaled = procrustes_align(coords, reference)
    centre = reference.mean(0)
    np.testing.assert_allclose(unscaled - centre, 2.5 * (reference - centre), atol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        procrustes_align(coords[:, :1], reference)


def blobs(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    labels = np.arange(n) % 3
    return rng.normal(size=(n, 10)) + 8 * np.eye(3, 10)[labels], labels


def neighbours_agree(coords: np.ndarray, labels: np.ndarray) -> float:
    distances = np.linalg.norm(coords[:, None] - coords[None], axis=2)
    np.fill_diagonal(distances, np.inf)
    return float((labels[distances.argmin(1)] == labels).mean())


def check_nonlinear(method: str, iterations: int) -> None:
    features, labels = blobs()
    coords = nonlinear(features, 2, method, iterations=iterations)
    assert coords.shape == (200, 2) and np.isfinite(coords).all()
    assert neighbours_agree(coords, labels) > 0.95
    # The previous frame: the same picture mirrored, turned, shrunk and moved.
    reference = 0.5 * coords[:, ::-1] @ np.array([[0.6, -0.8], [0.8, 0.6]]) + 10
    aligned = nonlinear(features, 2, method, reference=reference, iterations=iterations)
    spread = rms(reference, reference.mean(0))
    assert rms(coords, reference) > spread
    assert rms(aligned, reference) < 0.05 * spread


def test_tsne_is_aligned_to_the_previous_frame():
    check_nonlinear("tsne", 250)


@pytest.mark.slow
def test_umap_is_aligned_to_the_previous_frame():
    check_nonlinear("umap", 50)


def test_unknown_method():
    with pytest.raises(ValueError, match="method"):
        nonlinear(np.zeros((10, 3)), 2, "pca")
