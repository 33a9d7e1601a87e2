"""Center-based losses beyond center loss: IE loss (reconstructed), contrastive-center loss, ring loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dmlviz.losses.base import FeatureLoss, LossOutput, LossSpec, Paper, Param, class_mask, pick
from dmlviz.losses.center import ALPHA, CENTER_RULE, CenterClassifierLoss
from dmlviz.losses.registry import build_loss, register

#: The family-1 heads that an add-on (ring loss, the class-adversarial head) can sit on.
MARGIN_HEADS = ("softmax", "normface", "cosface", "arcface", "sphereface", "lsoftmax", "adacos", "cam-softmax",
                "elasticface-arc", "elasticface-cos", "intraloss")

#: How fast IE loss's running mean of squared distances forgets (per training step).
DISTANCE_MOMENTUM = 0.9


def squared_distances(features: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
    """d_ij = ||f_i - c_j||^2 (N x C), exact (no expansion into norms, which cancels badly)."""
    return (features.unsqueeze(1) - centers.unsqueeze(0)).pow(2).sum(-1)


def _split(dist: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's distance to its own center and the sum of its distances to the other centers."""
    own = pick(dist, class_mask(labels, dist.shape[1]))
    return own, dist.sum(1) - own


def _check_classes(name: str, num_classes: int) -> None:
    if num_classes < 2:
        raise ValueError(f"{name} compares each sample with the other classes' centers: it needs at least 2 "
                         f"classes, got {num_classes}")


@register(
    LossSpec(
        name="ie",
        display_name="Include-and-Exclude (IE) loss",
        family="center",
        description=(
            "Softmax plus a term that asks each feature to be closer to its own class center than to the "
            "other centers on average, by a margin: it includes a sample in its class and excludes it from "
            "the others. Like center loss, classes gather into blobs around their centers, and in addition "
            "the blobs are pushed away from the other centers, so they sit further apart than with center "
            "loss. Once a sample is well inside the margin its push fades (softplus), so blobs stop "
            "spreading instead of flying apart. FORMULA RECONSTRUCTED FROM THE PAPER'S ABSTRACT, not "
            "the paper's own: do not expect the paper's numbers."
        ),
        formula=(r"L = L_{softmax} + \frac{\lambda}{N}\sum_i \log\left(1 + e^{\,m + d_{i,y_i} - "
                 r"\frac{1}{C-1}\sum_{j \ne y_i} d_{ij}}\right),\quad d_{ij} = \lVert f_i - c_j \rVert^2"
                 r"\ (\text{divided by its running mean when scale\_free})"),
        paper=Paper("Wu, Chen, Wang, Wu", "Exponential Discriminative Metric Embedding in Deep Learning", "arXiv",
                    2018, "1803.02504"),
        hparams=(
            Param("lambda", 0.1, 0.0, 10.0, help="Weight of the IE term against softmax."),
            Param("margin", 1.0, 0.0, 100.0, help="How much closer (in squared distance) a sample must be to its "
                  "own center than to the other centers on average. In raw feature units unless scale_free."),
            Param("scale_free", True, help="Divide the squared distances by their running mean (over samples "
                  "and centers, momentum 0.9), so the margin is relative to the current spread of the features "
                  "and the term cannot be escaped by scaling all features up. Off: raw squared distances, where "
                  "the margin means little once features grow (92.5 % on MNIST at d = 128 in three epochs, "
                  "99.5 % on)."),
            ALPHA,
            CENTER_RULE,
        ),
        normalized=False,
        learns="centers",
        implementation="dmlviz (no public implementation exists); centers as in dmlviz's center loss",
        reconstructed=True,
        dims="any; 2-D shows the blobs and the gaps between them best",
        pitfalls=(
            "Reconstructed from the abstract of arXiv:1803.02504 (the paper's text was not available): the "
            "'exponential feature projection' is read as the softplus (log-sum-exp) form of a hinge on squared "
            "distances, and the centers follow the center-loss rule; the paper may differ on all of this. "
            "In raw units the margin means little once features grow (2-D softmax features reach norms of "
            "tens, squared distances of hundreds): the term then saturates and the loss behaves like softmax "
            "alone, or worse (on the digits data, 2-D, 300 steps: 52 % test accuracy raw, 70 % scale_free, 77 % "
            "softmax), and 128-D MNIST features crowded into a cone a few degrees wide (92.5 % test accuracy "
            "after three epochs, 99.5 % scale-free): scale_free, on by default, keeps the margin meaningful. "
            "With the 'paper' "
            "center rule only a sample's own center moves (towards its class mean); the push away from the "
            "other centers acts on the features only."
        ),
        recommended={2: {"feature_dim": 2}, 3: {"feature_dim": 3}},
    )
)
class IELoss(CenterClassifierLoss):
    """L = CE + lambda * mean_i softplus(m + d_{i,y_i} - mean_{j != y_i} d_ij)  (reconstructed, see the spec)."""

    term_name = "ie"

    def __init__(self, num_classes: int, dim: int, center_rule: str = "paper", scale_free: bool = True,
                 **hp: float) -> None:
        _check_classes("IE loss", num_classes)
        super().__init__(num_classes, dim, hp["lambda"], hp["alpha"], center_rule)
        self.margin = float(hp["margin"])
        self.scale_free = bool(scale_free)
        # 0 means "no batch seen yet"; checked with torch.where so that no step waits for the device.
        self.register_buffer("mean_distance", torch.zeros(()))

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        if self.scale_free and self.training:
            with torch.no_grad():
                batch = squared_distances(features, self.centers).mean()
                blended = DISTANCE_MOMENTUM * self.mean_distance + (1 - DISTANCE_MOMENTUM) * batch
                self.mean_distance.copy_(torch.where(self.mean_distance > 0, blended, batch))
        return super().forward(features, labels)

    def center_term(self, features: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        dist = squared_distances(features, centers)
        if self.scale_free:
            scale = torch.where(self.mean_distance > 0, self.mean_distance, dist.detach().mean())
            dist = dist / scale.clamp_min(torch.finfo(dist.dtype).tiny)
        own, others = _split(dist, labels)
        return F.softplus(self.margin + own - others / (self.num_classes - 1)).mean()


@register(
    LossSpec(
        name="contrastive-center",
        display_name="Softmax + contrastive-center loss",
        family="center",
        description=(
            "Softmax plus a ratio: each feature's squared distance to its own class center over the sum of "
            "its squared distances to all other centers. Shrinking the numerator gathers classes into blobs "
            "around their centers (as center loss does); growing the denominator pushes every blob away from "
            "the other centers, so the blobs end up both tight and well apart. The ratio ignores the overall "
            "scale, so it does not simply reward larger features."
        ),
        formula=(r"L = L_{softmax} + \frac{\lambda}{2N}\sum_i \frac{\lVert f_i - c_{y_i}\rVert^2}"
                 r"{\sum_{j \ne y_i}\lVert f_i - c_j\rVert^2 + \delta}"),
        paper=Paper("Qi, Su", "Contrastive-center loss for deep neural networks", "ICIP", 2017, "1707.07391"),
        hparams=(
            Param("lambda", 1.0, 0.0, 100.0, help="Weight of the contrastive-center term against softmax. The "
                  "term is averaged over the batch (the paper sums it), so this lambda is the paper's times the "
                  "batch size."),
            Param("delta", 1.0, 1e-6, 100.0, help="Added to the denominator so that it never vanishes (1 in the "
                  "paper)."),
            ALPHA,
            CENTER_RULE,
        ),
        normalized=False,
        learns="centers",
        implementation="dmlviz (pytorch-metric-learning has no contrastive-center loss); centers as in dmlviz's "
                       "center loss",
        dims="any",
        pitfalls=(
            "Averaged over the batch where the paper writes a sum, so that lambda does not change with the batch "
            "size. The paper's center update was not checked: the default here is the center-loss alpha rule "
            "(each center moves towards its class's batch mean); with 'sgd' the centers follow the gradient of "
            "the ratio instead, which also pushes them away from other classes' features. Because the ratio "
            "is scale-free, its pull on a feature shrinks as features grow: in raw 2-D features (norms of "
            "tens) a lambda of several units is needed before it shows against softmax (the presets use 10)."
        ),
        recommended={
            2: {"feature_dim": 2, "loss_params": {"lambda": 10.0}},
            3: {"feature_dim": 3, "loss_params": {"lambda": 10.0}},
        },
    )
)
class ContrastiveCenterLoss(CenterClassifierLoss):
    """L = CE + lambda/(2N) * sum_i d_{i,y_i} / (sum_{j != y_i} d_ij + delta)."""

    term_name = "contrastive-center"

    def __init__(self, num_classes: int, dim: int, center_rule: str = "paper", **hp: float) -> None:
        _check_classes("Contrastive-center loss", num_classes)
        super().__init__(num_classes, dim, hp["lambda"], hp["alpha"], center_rule)
        self.delta = float(hp["delta"])

    def center_term(self, features: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor) -> torch.Tensor:
        own, others = _split(squared_distances(features, centers), labels)
        return 0.5 * (own / (others + self.delta)).mean()


@register(
    LossSpec(
        name="ring",
        display_name="Ring loss (on a softmax-family head)",
        family="center",
        description=(
            "A soft normalisation added to a classifier loss: every feature is pulled towards a circle (2-D) "
            "or sphere (3-D) of a learned radius R around the origin. Softmax features, which otherwise grow "
            "long petals, settle on a ring; the classes keep their directions and the plot shows a thick "
            "annulus whose width shrinks as lambda grows. R is reported as it is learned."
        ),
        formula=r"L = L_{base} + \frac{\lambda}{2N}\sum_i \left(\lVert f_i \rVert_2 - R\right)^2",
        paper=Paper("Zheng, Pal, Savvides", "Ring loss: Convex Feature Normalization for Face Recognition", "CVPR",
                    2018, "1803.00130"),
        hparams=(
            Param("base", "softmax", choices=MARGIN_HEADS, help="The classifier loss that ring loss is added to "
                  "(with its own default settings)."),
            Param("lambda", 0.01, 0.0, 10.0, help="Weight of the ring term (0.01 in the reference "
                  "implementations; larger values pull the features onto a thinner ring)."),
        ),
        normalized=False,
        learns="weights",
        implementation="dmlviz (pytorch-metric-learning has no ring loss); R starts at the mean feature norm of "
                       "the first training batch, as in the public PyTorch ports",
        dims="any; 2-D shows the ring, 3-D a shell",
        pitfalls=(
            "The term is in squared raw feature units, so a lambda that is gentle for small features is strong "
            "for large ones. R starts at the mean norm of the first batch, which is small for an untrained "
            "network, and learns at the loss learning rate: with Adam it moves about loss_lr per step, so at "
            "the default 0.001 it hardly grows and the ring holds the features unnaturally small (on the "
            "digits data, 2-D, 300 steps: 68 % test accuracy against 77 % for softmax; with loss_lr 0.01 and "
            "lambda 0.1, as in the presets, 89 %). The base loss runs with its default "
            "hyperparameters. With a normalised base (NormFace, ArcFace, ...) the base ignores the norm and "
            "ring loss alone decides it. The radius shown is the value before each step."
        ),
        recommended={
            2: {"feature_dim": 2, "loss_lr": 0.01, "loss_params": {"lambda": 0.1}},
            3: {"feature_dim": 3, "loss_lr": 0.01, "loss_params": {"lambda": 0.1}},
        },
    )
)
class RingLoss(FeatureLoss):
    """A family-1 loss plus (lambda/2) mean_i (||f_i|| - R)^2, R learned."""

    def __init__(self, num_classes: int, dim: int, base: str = "softmax", **hp: float) -> None:
        super().__init__(num_classes, dim)
        if base not in MARGIN_HEADS:
            raise ValueError(f"ring loss goes on one of {', '.join(MARGIN_HEADS)}, got {base!r}")
        self.base = build_loss(base, num_classes, dim)
        self.base_name = base
        self.weight = float(hp["lambda"])
        self.radius = nn.Parameter(torch.zeros(()))
        self.radius_set = False

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        out = self.base(features, labels)
        norms = features.norm(dim=1)
        if not self.radius_set and self.training:
            with torch.no_grad():
                self.radius.copy_(norms.mean())
            self.radius_set = True
        ring = self.weight * (0.5 * (norms - self.radius).pow(2).mean())
        return LossOutput(out.loss + ring, out.logits, terms={**out.parts(self.base_name), "ring": ring},
                          active=out.active)

    def predict(self, features: torch.Tensor) -> torch.Tensor | None:
        return self.base.predict(features)

    def training_logits(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        return self.base.training_logits(features, labels)

    def class_vectors(self) -> dict[str, torch.Tensor]:
        return self.base.class_vectors()

    def set_progress(self, progress: float) -> dict[str, float | torch.Tensor]:
        scheduled = dict(self.base.set_progress(progress))
        if self.radius_set:
            # A learned value, not a schedule: kept on the device, read when a snapshot is taken.
            scheduled["radius"] = self.radius.detach().clone()
        return scheduled
