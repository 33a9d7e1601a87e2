"""Center loss (Wen et al., ECCV 2016): softmax plus a pull of each feature to its class center."""

from __future__ import annotations

import torch

from dmlviz.losses.base import HParam, LossOutput, LossSpec, Paper
from dmlviz.losses.registry import register
from dmlviz.losses.softmax import LinearClassifierLoss

CENTER_RULES = ("paper", "sgd")


@register(
    LossSpec(
        name="center",
        display_name="Softmax + center loss",
        family="center",
        description=(
            "Softmax keeps classes apart while a second term pulls every feature towards a learned "
            "center of its class. The petals of plain softmax contract into compact blobs around "
            "their centers; the larger lambda, the tighter the blobs."
        ),
        formula=r"L = L_{softmax} + \frac{\lambda}{2N}\sum_i \lVert f_i - c_{y_i} \rVert^2",
        paper=Paper("Wen, Zhang, Li, Qiao", "A Discriminative Feature Learning Approach for Deep Face "
                    "Recognition", "ECCV", 2016),
        hparams=(
            HParam("lambda", 0.1, 0.0, 10.0, help="Weight of the center term against softmax."),
            HParam("alpha", 0.5, 0.0, 1.0, help="Center update rate of the paper's rule: each step moves a "
                   "center a share alpha of the way towards its class's batch mean (damped by 1 + n_j)."),
            HParam("center_rule", "paper", choices=CENTER_RULES,
                   help="'paper': the paper's alpha update, no momentum. 'sgd': centers are parameters "
                   "trained by the optimizer at the loss learning rate."),
        ),
        normalized=False,
        learns="centers",
        implementation="dmlviz (pytorch-metric-learning has no center loss)",
    )
)
class CenterLoss(LinearClassifierLoss):
    def __init__(self, num_classes: int, dim: int, center_rule: str = "paper", **hp: float) -> None:
        super().__init__(num_classes, dim)
        self.weight = float(hp["lambda"])
        self.alpha = float(hp["alpha"])
        self.rule = center_rule
        centers = torch.randn(num_classes, dim)
        if center_rule == "sgd":
            self.centers = torch.nn.Parameter(centers)
        else:
            self.register_buffer("centers", centers)

    def class_vectors(self) -> dict[str, torch.Tensor]:
        return {"centers": self.centers, "weights": self.classifier.weight}

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        out = super().forward(features, labels)
        if self.rule == "sgd":
            # Split the term so that lambda scales only the pull on the features: the centers then
            # move at the loss learning rate whatever lambda is (as in the reference PyTorch port).
            pull = 0.5 * (features - self.centers.detach()[labels]).pow(2).sum(1).mean()
            track = 0.5 * (features.detach() - self.centers[labels]).pow(2).sum(1).mean()
            return LossOutput(out.loss + self.weight * pull + track, out.logits)
        pull = 0.5 * (features - self.centers[labels]).pow(2).sum(1).mean()
        if self.training:
            self._paper_update(features.detach(), labels)
        return LossOutput(out.loss + self.weight * pull, out.logits)

    @torch.no_grad()
    def _paper_update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """c_j -= alpha * sum_{i: y_i=j} (c_j - f_i) / (1 + n_j)  (the paper's Algorithm 1)."""
        diff = torch.zeros_like(self.centers).index_add_(0, labels, self.centers[labels] - features.float())
        counts = torch.bincount(labels, minlength=self.num_classes).to(diff.dtype)
        self.centers -= self.alpha * diff / (1 + counts).unsqueeze(1)
