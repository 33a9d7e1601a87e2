"""Softmax cross-entropy on a linear classifier: the baseline whose 2-D features form petals."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dmlviz.losses.base import FeatureLoss, LossOutput, LossSpec, Param
from dmlviz.losses.registry import register


class LinearClassifierLoss(FeatureLoss):
    """Cross-entropy on ``W f + b``; the base of every loss that adds a term to plain softmax."""

    def __init__(self, num_classes: int, dim: int, bias: bool = True) -> None:
        super().__init__(num_classes, dim)
        self.classifier = nn.Linear(dim, num_classes, bias=bias)

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features)

    def class_vectors(self) -> dict[str, torch.Tensor]:
        return {"weights": self.classifier.weight}

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        logits = self.classifier(features)
        return LossOutput(F.cross_entropy(logits, labels), logits)


register(
    LossSpec(
        name="softmax",
        display_name="Softmax cross-entropy",
        family="softmax-margin",
        description=(
            "A linear classifier trained with cross-entropy. Nothing asks features of one class to be "
            "close, only to be on the right side of the boundaries: in 2-D the classes grow as radial "
            "petals from the origin, long and thin, separable but not compact."
        ),
        formula=r"L = -\frac{1}{N}\sum_i \log \frac{e^{W_{y_i}^\top f_i + b_{y_i}}}{\sum_j e^{W_j^\top f_i + b_j}}",
        hparams=(Param("bias", True, help="Give the classifier a bias; without it every boundary passes "
                       "through the origin and the geometry is purely angular."),),
        normalized=False,
        learns="weights",
        implementation="torch.nn.functional.cross_entropy",
        dims="any; the classic petal figure is 2-D (LeNet++ on MNIST)",
        pitfalls=(
            "Cross-entropy keeps falling as features grow longer, so the petals stretch outwards all run and "
            "the 2-D plot keeps zooming out. With the bias the boundaries need not pass through the origin, so "
            "near the origin the classes mix; without it (bias false) the petals all start at the origin."
        ),
        recommended={
            2: {"feature_dim": 2, "loss_params": {"bias": True}},
            3: {"feature_dim": 3, "loss_params": {"bias": True}},
        },
    )
)(LinearClassifierLoss)
