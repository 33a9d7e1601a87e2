"""Center loss (Wen et al., ECCV 2016): softmax plus a pull of each feature to its class center.

:class:`CenterClassifierLoss` holds what every center-based loss shares (the classifier, the
centers and the two center rules); a loss of the family only says what its center term is.
"""

from __future__ import annotations

import torch

from dmlviz.losses.base import LossOutput, LossSpec, Paper, Param, class_mask, class_sums, rows_of
from dmlviz.losses.registry import register
from dmlviz.losses.softmax import LinearClassifierLoss

CENTER_RULES = ("paper", "sgd")

#: The hyperparameters every center-based loss shares (its own lambda comes first, with its own default).
ALPHA = Param("alpha", 0.5, 0.0, 1.0, help="Center update rate of the paper's rule: each step moves a center "
              "a share alpha of the way towards its class's batch mean (damped by 1 + n_j). Unused by 'sgd'.")
CENTER_RULE = Param("center_rule", "paper", choices=CENTER_RULES,
                    help="'paper': the center-loss paper's alpha update (each center moves towards its class's "
                    "batch mean; no momentum, no gradient). 'sgd': centers are parameters trained by the "
                    "optimizer on the gradient of the center term, at the loss learning rate, whatever lambda is.")


class CenterClassifierLoss(LinearClassifierLoss):
    """Softmax cross-entropy plus ``lambda`` times a term on features and class centers.

    Subclasses define :meth:`center_term` and name it in :attr:`term_name` (the loss's terms are
    ``softmax`` and that name). Two center rules:

    * ``"paper"``: centers are a buffer; after each training forward, each center moves towards the
      mean of its class in the batch by the paper's Algorithm 1 (rate ``alpha``).
    * ``"sgd"``: centers are parameters; they receive the gradient of the center term *without*
      lambda, so they move at the loss learning rate whatever lambda is (as the reference PyTorch
      port does by dividing the centers' gradient by the loss weight).
    """

    term_name = "center"

    def __init__(self, num_classes: int, dim: int, weight: float, alpha: float, center_rule: str) -> None:
        super().__init__(num_classes, dim)
        if center_rule not in CENTER_RULES:
            raise ValueError(f"center_rule must be one of {', '.join(CENTER_RULES)}, got {center_rule!r}")
        self.weight = float(weight)
        self.alpha = float(alpha)
        self.rule = center_rule
        centers = torch.randn(num_classes, dim)
        if center_rule == "sgd":
            self.centers = torch.nn.Parameter(centers)
        else:
            self.register_buffer("centers", centers)

    def center_term(self, features: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        """The loss's term on features and centers, before lambda (a scalar)."""
        raise NotImplementedError

    def class_vectors(self) -> dict[str, torch.Tensor]:
        return {"centers": self.centers, "weights": self.classifier.weight}

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        out = super().forward(features, labels)
        if self.rule == "sgd":
            # Twice the same term: lambda scales only the one whose gradient reaches the features; the
            # other reaches only the centers and adds zero to the value, which stays CE + lambda * term.
            pull = self.center_term(features, labels, self.centers.detach())
            track = self.center_term(features.detach(), labels, self.centers)
            weighted = self.weight * pull
            return LossOutput(out.loss + weighted + (track - track.detach()), out.logits,
                              terms={"softmax": out.loss, self.term_name: weighted})
        weighted = self.weight * self.center_term(features, labels, self.centers)
        if self.training:
            self._paper_update(features.detach(), labels)
        return LossOutput(out.loss + weighted, out.logits, terms={"softmax": out.loss, self.term_name: weighted})

    @torch.no_grad()
    def _paper_update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """c_j -= alpha * sum_{i: y_i=j} (c_j - f_i) / (1 + n_j)  (the paper's Algorithm 1)."""
        mask = class_mask(labels, self.num_classes)
        diff = class_sums(rows_of(self.centers, mask) - features.float(), mask)
        counts = mask.sum(0).to(diff.dtype)
        self.centers -= self.alpha * diff / (1 + counts).unsqueeze(1)


@register(
    LossSpec(
        name="center",
        display_name="Softmax + center loss",
        family="center",
        description=(
            "Softmax keeps classes apart while a second term pulls every feature towards a learned "
            "center of its class. The petals of plain softmax contract into compact blobs around "
            "their centers; the larger lambda, the tighter the blobs. The centers (drawn as stars, diamonds in 3-D) "
            "follow their class: with the paper's rule they chase each class's batch mean."
        ),
        formula=(r"L = L_{softmax} + \frac{\lambda}{2N}\sum_i \lVert f_i - c_{y_i} \rVert^2,\quad "
                 r"c_j \leftarrow c_j - \alpha \frac{\sum_{i: y_i = j} (c_j - f_i)}{1 + n_j}"),
        paper=Paper("Wen, Zhang, Li, Qiao", "A Discriminative Feature Learning Approach for Deep Face "
                    "Recognition", "ECCV", 2016),
        hparams=(
            Param("lambda", 0.1, 0.0, 10.0, help="Weight of the center term against softmax (the paper's "
                  "face runs use 0.003, its MNIST example 0.01; larger values give tighter blobs)."),
            ALPHA,
            CENTER_RULE,
        ),
        normalized=False,
        learns="centers",
        implementation="dmlviz (pytorch-metric-learning has no center loss); term and update as in the official "
                       "Caffe layer (ydwen/caffe-face)",
        dims="any; the classic figure is 2-D (LeNet++ on MNIST)",
        pitfalls=(
            "Centers start at random points: early on they drag features around until they have caught up "
            "with their classes. Lambda too large (several units) collapses all features towards the "
            "centers before softmax has separated them, so classes overlap; lambda 0 is plain softmax. "
            "With the 'sgd' rule centers move at the loss learning rate: a small learning rate leaves "
            "them lagging behind their class, a large one makes them jitter. The term is in raw feature "
            "units: the same lambda pulls harder when features are large."
        ),
        recommended={
            2: {"feature_dim": 2, "loss_params": {"lambda": 0.1, "alpha": 0.5}},
            3: {"feature_dim": 3, "loss_params": {"lambda": 0.1, "alpha": 0.5}},
        },
    )
)
class CenterLoss(CenterClassifierLoss):
    def __init__(self, num_classes: int, dim: int, center_rule: str = "paper", **hp: float) -> None:
        super().__init__(num_classes, dim, hp["lambda"], hp["alpha"], center_rule)

    def center_term(self, features: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        return 0.5 * (features - rows_of(centers, class_mask(labels, len(centers)))).pow(2).sum(1).mean()
