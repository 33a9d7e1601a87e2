"""Projections of d-dimensional features to 2-D or 3-D for drawing, stable from one frame to the next.

A PCA's axes are only defined up to sign and order, so a plain PCA per frame makes the picture flip
or spin when the features barely change. ``pca_map`` therefore turns each new map, within its own
span, to agree with the previous frame's (orthogonal Procrustes); ``nonlinear`` aligns UMAP or
t-SNE coordinates to the previous frame's the same way, with a uniform scale as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from scipy.linalg import orthogonal_procrustes


def _numpy(x: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


@dataclass(frozen=True, eq=False)  # eq=False: NumPy fields make the generated __eq__ ambiguous
class LinearMap:
    """x ↦ (x − mean) @ components: one map for probe features, class means and class vectors alike,
    so they all land in the same drawing coordinates."""

    mean: np.ndarray  # (d,); zeros for a map around the origin
    components: np.ndarray  # (d, k), orthonormal columns
    explained: float  # fraction of the features' variance (second moment, around the origin) kept

    def __call__(self, x: np.ndarray | torch.Tensor) -> np.ndarray:
        return (_numpy(x) - self.mean) @ self.components


def _rotation(coords: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, float]:
    """The orthogonal matrix R (rotation or reflection) minimising ‖coords @ R − reference‖, and the
    sum of singular values that gives the best uniform scale."""
    rotation, singular_sum = orthogonal_procrustes(coords.astype(np.float64), reference.astype(np.float64))
    return rotation, float(singular_sum)


def procrustes_align(coords: np.ndarray | torch.Tensor, reference: np.ndarray | torch.Tensor,
                     scale: bool = False) -> np.ndarray:
    """``coords`` moved, rotated or mirrored (and, with ``scale``, uniformly scaled) to lie as close as
    possible to ``reference``, the same points' coordinates in the previous frame."""
    a, b = _numpy(coords).astype(np.float64), _numpy(reference).astype(np.float64)
    if a.shape != b.shape:
        raise ValueError(f"coords {a.shape} and reference {b.shape} must have the same shape")
    a_mean, b_mean = a.mean(0), b.mean(0)
    a, b = a - a_mean, b - b_mean
    rotation, singular_sum = _rotation(a, b)
    norm = float(np.square(a).sum())
    factor = singular_sum / norm if scale and norm > 0 else 1.0
    return (factor * (a @ rotation) + b_mean).astype(np.float32)


def pca_map(features: np.ndarray | torch.Tensor, dims: int, previous: LinearMap | None = None,
            center: bool = True) -> LinearMap:
    """The PCA map of ``features`` onto ``dims`` axes.

    ``center=False``: an uncentred PCA around the origin, for normalised losses, where the origin
    and the unit sphere mean something. ``previous``: the last frame's map; the new axes are turned
    within their span so the new picture of ``features`` is as close as possible to the previous
    map's, and consecutive frames do not flip or spin. A previous map of another shape (other d or
    ``dims``) cannot be matched and is ignored.
    """
    x = _numpy(features)
    n, d = x.shape
    if not 1 <= dims <= d:
        raise ValueError(f"dims must be between 1 and the feature dimension {d}, not {dims}")
    mean = x.mean(0) if center else np.zeros(d, dtype=np.float32)
    centered = (x - mean).astype(np.float64)
    # Hand-written on purpose: the eigenvectors of the d×d scatter matrix serve centred and uncentred
    # PCA alike (scikit-learn's PCA always centres) and take ~2 ms at P=2000, d=128, deterministically.
    values, vectors = np.linalg.eigh(centered.T @ centered)
    values, vectors = values[::-1], vectors[:, ::-1]
    components = vectors[:, :dims]
    # A fixed sign per axis (largest loading positive) for a map without a previous frame.
    components = components * np.sign(components[np.abs(components).argmax(0), np.arange(dims)])
    total = float(values.clip(min=0).sum())
    explained = float(values[:dims].clip(min=0).sum()) / total if total > 0 else 1.0  # nothing to lose
    if previous is not None and previous.components.shape == (d, dims):
        rotation, _ = _rotation(centered @ components, previous(x))
        components = components @ rotation
    return LinearMap(mean=mean.astype(np.float32), components=components.astype(np.float32), explained=explained)


def nonlinear(features: np.ndarray | torch.Tensor, dims: int, method: Literal["umap", "tsne"], seed: int = 0,
              reference: np.ndarray | None = None, iterations: int | None = None) -> np.ndarray:
    """A UMAP (umap-learn) or t-SNE (scikit-learn) embedding of ``features`` in ``dims`` dimensions.

    Seconds, not milliseconds: for a paused view on request. ``reference`` (the same points in the
    previous frame) aligns the result to it by rotation, reflection, shift and uniform scale, so it
    does not flip. ``iterations``: UMAP epochs or t-SNE iterations (at least 250), else the library's
    default.
    """
    x = _numpy(features)
    n = len(x)
    if method == "umap":
        import umap  # slow to import: only when asked for

        reducer = umap.UMAP(n_components=dims, n_neighbors=min(15, n - 1), random_state=seed, n_jobs=1,
                            n_epochs=iterations)
    elif method == "tsne":
        from sklearn.manifold import TSNE

        # perplexity must stay below the number of points; 30 is the library's default.
        reducer = TSNE(n_components=dims, perplexity=min(30.0, (n - 1) / 3), init="pca", random_state=seed,
                       **({"max_iter": iterations} if iterations else {}))
    else:
        raise ValueError(f"method must be 'umap' or 'tsne', not {method!r}")
    coords = np.asarray(reducer.fit_transform(x), dtype=np.float32)
    return coords if reference is None else procrustes_align(coords, reference, scale=True)
