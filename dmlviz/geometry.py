"""Numbers about a feature space: retrieval quality and the angles within and between classes.

Pure functions of features and labels (torch tensors or NumPy arrays), used by the pages and by
the benchmarks; retrieval metrics come from pytorch-metric-learning with a torch kNN (no faiss).
"""

from __future__ import annotations

import math

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
