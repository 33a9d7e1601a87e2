"""Numbers about a feature space: retrieval quality, class separation, the angles within and between
classes, distance histograms and nearest neighbours.

Pure functions of features and labels (torch tensors on any device, or NumPy arrays), used by the
training worker at every snapshot, by the pages and by the benchmarks; retrieval metrics come from
pytorch-metric-learning with a torch kNN (no faiss).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch


def _tensor(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    return torch.as_tensor(x).float() if not isinstance(x, torch.Tensor) else x.float()


def retrieval_metrics(features: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                      normalized: bool) -> dict[str, float]:
    """Precision@1 and MAP@R of each sample against all others (Musgrave et al., 2020).

    ``normalized``: rank by cosine similarity (for losses that read only directions), else by
    Euclidean distance.
    """
    from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN

    distance = CosineSimilarity() if normalized else LpDistance(normalize_embeddings=False)
    calculator = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"),
                                    k="max_bin_count", knn_func=CustomKNN(distance))
    f, y = _tensor(features), torch.as_tensor(labels)
    result = calculator.get_accuracy(f, y, f, y, ref_includes_query=True)
    return {"p_at_1": float(result["precision_at_1"]), "map_at_r": float(result["mean_average_precision_at_r"])}


def mean_angles(features: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Mean angle (degrees) of each sample to its class's mean direction, and between class directions.

    A class direction is the normalised mean of the class's normalised features.
    """
    directions = torch.nn.functional.normalize(_tensor(features), dim=1)
    y = torch.as_tensor(labels).long()
    classes = torch.unique(y)
    centers = torch.stack([directions[y == c].mean(0) for c in classes])
    centers = torch.nn.functional.normalize(centers, dim=1)
    own = centers[torch.searchsorted(classes, y)]
    intra = torch.rad2deg(torch.arccos((directions * own).sum(1).clamp(-1, 1))).mean()
    cosines = (centers @ centers.T).clamp(-1, 1)
    pairs = torch.triu_indices(len(classes), len(classes), offset=1)
    inter = torch.rad2deg(torch.arccos(cosines[pairs[0], pairs[1]])).mean() if len(classes) > 1 else math.nan
    return {"intra_angle": float(intra), "inter_angle": float(inter)}


def fisher_ratio(features: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor) -> float:
    """trace(S_B) / trace(S_W): how far apart the class means are, relative to how far samples stray
    from their own class mean. NaN with fewer than 2 classes or no spread within classes."""
    f = _tensor(features).double()
    classes, inverse, counts = torch.unique(torch.as_tensor(labels, device=f.device), return_inverse=True,
                                            return_counts=True)
    if len(classes) < 2:
        return math.nan
    means = torch.zeros(len(classes), f.shape[1], dtype=f.dtype, device=f.device).index_add_(0, inverse, f)
    means /= counts[:, None]
    between = (counts * (means - f.mean(0)).square().sum(1)).sum()
    within = (f - means[inverse]).square().sum()
    return float(between / within) if within > 0 else math.nan


@dataclass(frozen=True, eq=False)  # eq=False: NumPy fields make the generated __eq__ ambiguous
class DistanceHistogram:
    """Pairwise distances within and between classes on shared bins (empty arrays and NaN numbers
    when there are fewer than 2 classes or no pair within a class)."""

    metric: str  # "euclidean" or "angular" (degrees)
    edges: np.ndarray  # bins + 1 edges, shared by both histograms
    intra: np.ndarray  # fraction of same-class pairs per bin (sums to 1)
    inter: np.ndarray  # fraction of different-class pairs per bin (sums to 1)
    overlap: float  # Σ min(intra, inter): 0 = no shared bin, 1 = identical histograms
    gap: float  # min inter-class distance − max intra-class distance; > 0 is a clean margin
    intra_mean: float
    inter_mean: float
    pairs: tuple[int, int]  # (same-class pairs, different-class pairs)


METRICS = ("euclidean", "angular")


def _distances(f: torch.Tensor, metric: str) -> torch.Tensor:
    """All pairwise distances: Euclidean, or (``angular``) the angle between the raw vectors in degrees."""
    if metric == "euclidean":
        return torch.cdist(f, f)
    u = torch.nn.functional.normalize(f, dim=1)
    # In place: a fresh P×P tensor per step costs more (page faults) than the arithmetic.
    return (u @ u.T).clamp_(-1, 1).arccos_().rad2deg_()


def _by_label(f: torch.Tensor, labels: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features and labels sorted by label, and the class sizes in that order: every class is then one
    contiguous block, so the pairs within and between classes are slices of the distance matrix."""
    y = torch.as_tensor(labels, device=f.device)
    order = torch.argsort(y, stable=True)
    _, counts = torch.unique_consecutive(y[order], return_counts=True)
    return f[order], y[order], counts


def _pair_values(distances: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distances of pairs i < j within one class and between classes, for points sorted by label
    (a diagonal block's upper triangle per class, and the block right of it)."""
    intra, inter, start = [], [], 0
    for n in counts.tolist():
        end = start + n
        rows, cols = torch.triu_indices(n, n, offset=1, device=distances.device)
        intra.append(distances[start:end, start:end][rows, cols])
        inter.append(distances[start:end, end:].reshape(-1))
        start = end
    return torch.cat(intra), torch.cat(inter)


def _empty_histogram(metric: str, pairs: tuple[int, int]) -> DistanceHistogram:
    empty = np.zeros(0)
    return DistanceHistogram(metric, empty, empty, empty, math.nan, math.nan, math.nan, math.nan, pairs)


def _histogram(intra: torch.Tensor, inter: torch.Tensor, metric: str, bins: int) -> DistanceHistogram:
    pairs = (intra.numel(), inter.numel())
    if not intra.numel() or not inter.numel():
        return _empty_histogram(metric, pairs)
    top = 180.0 if metric == "angular" else float(torch.maximum(intra.max(), inter.max()))
    top = top if top > 0 else 1.0  # all points in one place: any positive range draws the same
    # histc and the edges agree: equal-width bins over [0, top], the last one closed. Counted on the CPU: histc
    # has no deterministic CUDA kernel (a warning at every snapshot under the engine's deterministic mode),
    # and counting a probe's 2 M pair distances there takes milliseconds.
    intra_counts, inter_counts = (torch.histc(v.cpu(), bins, 0.0, top).double() for v in (intra, inter))
    intra_fraction = (intra_counts / pairs[0]).numpy()
    inter_fraction = (inter_counts / pairs[1]).numpy()
    return DistanceHistogram(
        metric=metric, edges=np.linspace(0.0, top, bins + 1), intra=intra_fraction, inter=inter_fraction,
        overlap=float(np.minimum(intra_fraction, inter_fraction).sum()),
        gap=float(inter.min() - intra.max()), intra_mean=float(intra.mean(dtype=torch.float64)),
        inter_mean=float(inter.mean(dtype=torch.float64)), pairs=pairs,
    )


def distance_histogram(features: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                       metric: str = "euclidean", bins: int = 50, max_points: int = 2000,
                       seed: int = 0) -> DistanceHistogram:
    """Histograms of the distances of all pairs within a class and between classes: separated
    histograms (overlap near 0, a positive gap) mean a nearest-neighbour search cannot go wrong.

    ``angular``: the angle between the raw vectors in degrees, on [0, 180]; ``euclidean`` on
    [0, largest distance]. More than ``max_points`` points are subsampled with a fixed ``seed``, so
    successive frames of a run draw the same pairs.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, not {metric!r}")
    f = _tensor(features)
    y = torch.as_tensor(labels, device=f.device)
    if len(f) > max_points:
        keep = torch.as_tensor(np.sort(np.random.default_rng(seed).choice(len(f), max_points, replace=False)),
                               device=f.device)
        f, y = f[keep], y[keep]
    f, _, counts = _by_label(f, y)
    if len(counts) < 2:
        n = len(f)
        return _empty_histogram(metric, (n * (n - 1) // 2, 0))
    intra, inter = _pair_values(_distances(f, metric), counts)
    return _histogram(intra, inter, metric, bins)


def _retrieval(distances: torch.Tensor, y: torch.Tensor, counts: torch.Tensor) -> dict[str, float]:
    """P@1 and MAP@R from a distance matrix whose diagonal is +inf, scored by pytorch-metric-learning's
    own functions. Equal to ``retrieval_metrics`` (up to ties) without its second distance matrix and
    per-element Python loops; samples alone in their class are left out, as there."""
    from pytorch_metric_learning.utils.accuracy_calculator import (
        EQUALITY,
        mean_average_precision,
        precision_at_k,
    )

    classes = torch.unique_consecutive(y)
    alone = counts[torch.searchsorted(classes, y)] < 2
    if bool(alone.all()):
        return {}
    # Rows are dropped after the search: indexing the P×P matrix first would copy all of it.
    knn = torch.topk(distances, int(counts.max()) - 1, dim=1, largest=False).indices[~alone]
    knn_labels, query_labels = y[knn], y[~alone][:, None]
    return {
        "p_at_1": precision_at_k(knn_labels, query_labels, 1, False, False, EQUALITY),
        "map_at_r": mean_average_precision(knn_labels, query_labels, True, (classes, counts), False, False,
                                           EQUALITY, at_r=True),
    }


def snapshot_metrics(features: np.ndarray | torch.Tensor, labels: np.ndarray | torch.Tensor,
                     normalized: bool) -> dict[str, float]:
    """The numbers plotted over a run for one snapshot: ``p_at_1``, ``map_at_r``, ``fisher_ratio``,
    ``intra_angle``, ``inter_angle`` and the distance-histogram ``overlap`` (each a row of
    :data:`dmlviz.metrics.METRICS`, which says how the pages show it).

    ``normalized`` (losses that read only directions): retrieval by angle, Fisher ratio of the
    directions, angular histogram; else Euclidean throughout. One distance matrix serves retrieval and
    histogram. Numbers that do not exist for these labels (one class, one sample per class) are left out.
    """
    f = _tensor(features)
    if len(f) < 2:
        return {}
    f, y, counts = _by_label(f, labels)
    distances = _distances(f, "angular" if normalized else "euclidean")
    metrics = {"fisher_ratio": fisher_ratio(torch.nn.functional.normalize(f, dim=1) if normalized else f, y),
               **mean_angles(f, y)}
    if len(counts) > 1:
        intra, inter = _pair_values(distances, counts)
        metrics["overlap"] = _histogram(intra, inter, "angular" if normalized else "euclidean", 50).overlap
    metrics.update(_retrieval(distances.fill_diagonal_(math.inf), y, counts))
    return {name: float(value) for name, value in metrics.items() if math.isfinite(value)}


def nearest_neighbours(features: np.ndarray | torch.Tensor, query: int, k: int = 8,
                       normalized: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` points nearest to point ``query`` (itself left out), nearest first: their indices and
    distances, Euclidean or, when ``normalized``, the angle in degrees."""
    f = _tensor(features)
    if not 0 <= query < len(f):
        raise IndexError(f"query {query} is not one of the {len(f)} points")
    if normalized:
        u = torch.nn.functional.normalize(f, dim=1)
        distances = torch.rad2deg(torch.arccos((u @ u[query]).clamp(-1, 1)))
    else:
        distances = (f - f[query]).square().sum(1).sqrt()
    distances[query] = math.inf
    nearest = torch.topk(distances, min(k, len(f) - 1), largest=False)
    return nearest.indices.cpu().numpy(), nearest.values.cpu().numpy()
