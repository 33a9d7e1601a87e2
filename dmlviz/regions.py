"""The decision map of a 2-D feature space: the class a run's classifier picks at every place, and the band
where a margin loss still makes that class lose.

A 2-D run records one with each snapshot, computed from the loss's own parameters on a grid over the
features (no pass through the network): the scores the run's accuracy is measured with (the loss's
classifier, or the nearest class mean for losses without one) pick the class of each cell; a margin loss's
training logits (``FeatureLoss.training_logits``) with that class as the label say whether a sample there
would still lose to another class, which is the band the margin asks a sample to clear. The pages shade the
map under the features.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the pages read maps without torch; the engine, which makes them, has it
    import torch

FORCE_POINTS = 128  # probe points whose forces a snapshot records: one batch of them, about 13 of each class
SPHERE_ROWS = 64  # rows of the grid on the sphere (polar angle), twice as many columns (azimuth): 2.8° cells
GRID = 128  # cells per side: a cell is about 5 px of a laptop's feature chart
SPARE = 0.5  # the grid reaches this share of the features' span beyond them on every side (the view's margins)
# The box always holds the unit square, where a normalised loss's directions are drawn.
UNIT_BOX = np.array([[-1.0, 1.0], [-1.0, 1.0]])

Scores = Callable[["torch.Tensor"], "torch.Tensor | None"]
MarginLogits = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor | None"]


def grid_box(features: np.ndarray, directions: bool = False) -> np.ndarray:
    """The 2 × 2 box (low, high of x and y) the grid covers: the features (only their directions, on the unit
    circle, for a loss that reads only those) and the unit square, with ``SPARE`` of the span to spare on
    every side, so that a view that follows the features stays shaded."""
    finite = features[np.all(np.isfinite(features), axis=1)]
    box = UNIT_BOX.copy()
    if len(finite) and not directions:
        box = np.stack([np.minimum(box[:, 0], finite.min(0)), np.maximum(box[:, 1], finite.max(0))], axis=1)
    spare = SPARE * (box[:, 1] - box[:, 0]).max()
    return box + np.array([-spare, spare])


def cell_centres(box: np.ndarray, size: int = GRID) -> np.ndarray:
    """The centres of the grid's cells, size² × 2, row by row from the lowest y (as an image's rows)."""
    xs = box[0, 0] + (np.arange(size) + 0.5) * (box[0, 1] - box[0, 0]) / size
    ys = box[1, 0] + (np.arange(size) + 0.5) * (box[1, 1] - box[1, 0]) / size
    x, y = np.meshgrid(xs, ys)
    return np.stack([x.ravel(), y.ravel()], axis=1)


def sphere_centres(rows: int = SPHERE_ROWS) -> np.ndarray:
    """The centres of a grid on the unit sphere, (rows × 2·rows) × 3, row by row from the north pole: polar
    angle t in ``rows`` steps of π, azimuth p in 2·``rows`` steps of 2π (the rows and columns of ``winner``)."""
    t = (np.arange(rows) + 0.5) * np.pi / rows
    p = (np.arange(2 * rows) + 0.5) * np.pi / rows
    t, p = np.meshgrid(t, p, indexing="ij")
    return np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1).reshape(-1, 3)


def decision_map(features: torch.Tensor, scores: Scores, margin_logits: MarginLogits | None = None, *,
                 directions: bool = False, size: int = GRID) -> dict[str, np.ndarray]:
    """The map of a run at one snapshot: ``winner`` (the training class picked in each cell) and, for a
    margin loss, ``band`` (True where the winner still loses once its margin counts, packed 8 cells a byte:
    :func:`band_of` unpacks it). For 2-D features a size × size grid over ``box`` (2 × 2), rows from the
    lowest y; ``directions`` (the loss reads only the features' directions, which the pages draw on the unit
    circle) makes it cover the circle rather than the features' lengths. For 3-D features of a loss that
    reads directions, a grid on the unit sphere (:func:`sphere_centres`), without a box. Empty for other
    features, or when ``scores`` has nothing to pick with (no classifier and no class means yet)."""
    sphere = features.ndim == 2 and features.shape[1] == 3 and directions
    if features.ndim != 2 or not (features.shape[1] == 2 or sphere):
        return {}
    import torch

    box = None if sphere else grid_box(features.detach().float().cpu().numpy(), directions)
    centres = sphere_centres() if sphere else cell_centres(box, size)
    shape = (SPHERE_ROWS, 2 * SPHERE_ROWS) if sphere else (size, size)
    with torch.no_grad():
        points = torch.as_tensor(centres, dtype=torch.float32, device=features.device)
        picked = scores(points)
        if picked is None:
            return {}
        winner = picked.argmax(1)
        margined = margin_logits(points, winner) if margin_logits is not None else None
    kind = np.uint8 if picked.shape[1] <= 256 else np.int16
    found = {"winner": winner.reshape(shape).cpu().numpy().astype(kind)} | ({} if sphere else {"box": box})
    if margined is not None and (band := margined.argmax(1) != winner).any():  # none while a margin warms up
        found["band"] = np.packbits(band.cpu().numpy())
    return found


def band_of(decision: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """A map's margin band as a boolean grid of the winner's shape, or None if it has none."""
    if "band" not in decision:
        return None
    shape = np.shape(decision["winner"])
    return np.unpackbits(np.asarray(decision["band"]), count=shape[0] * shape[1]).reshape(shape).astype(bool)


def force_sample(labels: np.ndarray, count: int = FORCE_POINTS) -> np.ndarray:
    """The probe rows whose forces a run records: up to ``count`` of the rows with a label (≥ 0: a training
    class), as many of each class as the count allows, the same ones at every snapshot."""
    rows = np.flatnonzero(labels >= 0)
    by_class = [rows[labels[rows] == c] for c in np.unique(labels[rows])]
    each = max(1, count // max(1, len(by_class)))
    return np.sort(np.concatenate([members[:each] for members in by_class]))[:count] if by_class else rows


def force_bytes(dim: int, count: int = FORCE_POINTS) -> int:
    """The most a snapshot's forces take in the store."""
    return count * (dim * 4 + 8) + 1024  # float32 vectors, int64 rows, the arrays' headers


def map_bytes(classes: int, size: int = GRID) -> int:
    """The most a decision map takes in the store (uncompressed; it is stored compressed)."""
    return size * size * (1 if classes <= 256 else 2) + size * size // 8 + 2 * 2 * 8 + 1024  # + the headers
