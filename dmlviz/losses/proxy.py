"""Proxy-based losses (family 4): one learned proxy per class stands in for the class in every pair.

Thin adapters around pytorch-metric-learning (PML), which keeps the proxies (C × d) as a parameter of
its loss module; as a submodule of ours they are trained by the engine's optimizer at ``loss_lr``.
Both losses compare directions only, so the proxies also classify: a feature's scores are its cosine
similarities to the proxies (the nearest proxy wins), which is what both losses train for.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from dmlviz.losses.base import FeatureLoss, LossOutput, LossSpec, Paper, Param, class_mask, pick, unit
from dmlviz.losses.pair import UnitCosineSimilarity, UnitLpDistance, pml_forward
from dmlviz.losses.registry import register

PROXY_LR_PITFALL = (
    "Proxies move only at the loss learning rate (loss_lr): the Proxy-Anchor paper trains them 100 times "
    "faster than the network, the presets here 10 times. Too slow and the features chase proxies that "
    "hardly move (classes sit where the random proxies started); too fast and the proxies jitter."
)


class PMLProxyLoss(FeatureLoss):
    """A PML proxy loss; its proxies are the class vectors and, by cosine similarity, the classifier."""

    def __init__(self, num_classes: int, dim: int, loss: losses.ProxyNCALoss | losses.ProxyAnchorLoss) -> None:
        super().__init__(num_classes, dim)
        self.loss = loss

    @property
    def proxies(self) -> torch.nn.Parameter:
        return self.loss.proxies

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return unit(features) @ F.normalize(self.proxies, dim=1).T

    def class_vectors(self) -> dict[str, torch.Tensor]:
        return {"proxies": self.proxies}

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        out = self.output(features, labels)
        out.logits = self.predict(features)
        return out

    def output(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        """PML's loss of the batch (its reducer included), with its sub-losses as terms."""
        return pml_forward(self.loss, features, labels)[0]


@register(
    LossSpec(
        name="proxy-nca",
        display_name="Proxy-NCA",
        family="proxy",
        description=(
            "Each class has a learned proxy, a unit vector. A normalised feature is pulled towards its "
            "class's proxy and pushed from the others through a soft-max over (scaled) squared distances, "
            "like a softmax classifier whose weights are the proxies. In 2-D the proxies spread around the "
            "circle and each class gathers around its proxy as an arc (a cap on the sphere in 3-D)."
        ),
        formula=(r"L = -\frac1N\sum_i \log \frac{e^{-s\lVert \hat f_i - \hat p_{y_i}\rVert^2}}"
                 r"{\sum_{c} e^{-s\lVert \hat f_i - \hat p_c\rVert^2}}"),
        paper=Paper("Movshovitz-Attias, Toshev, Leung, Ioffe, Singh", "No Fuss Distance Metric Learning using "
                    "Proxies", "ICCV", 2017, "1703.07464"),
        hparams=(
            Param("scale", 1.0, 0.1, 20.0, help="Softmax scale s on the squared distances (PML's "
                  "softmax_scale; an inverse temperature). 1 is the paper's loss; larger values pack "
                  "classes tighter around their proxies."),
        ),
        normalized=True,
        learns="proxies",
        implementation=(
            "pytorch-metric-learning ProxyNCALoss(softmax_scale=scale): squared distances of L2-normalised "
            "features and proxies, proxies initialised N(0, 1). Like PML (and the Proxy-Anchor authors' "
            "baseline), the positive proxy is part of the denominator, i.e. cross-entropy over the proxies; "
            "the paper writes the denominator over the other proxies only"
        ),
        dims="any; 2-D shows arcs on the circle, 3-D caps on the sphere",
        pitfalls=(
            "At scale 1 the logits lie between −4 and 0, so the soft-max stays soft: the loss never gets "
            "near 0 and keeps pulling every feature to its proxy. PML drops a sample whose probability "
            "underflows to 0 (possible when s × 4 nears 100), hence the cap at 20. " + PROXY_LR_PITFALL
        ),
        recommended={
            # With BatchNorm in the backbone, proxies at 10× the backbone's learning rate collapse the 2-D
            # features to a point: 21 % after half an epoch, 70 % without it; 86 and 93 % in 3-D.
            2: {"feature_dim": 2, "norm": "none", "lr": 0.001, "loss_lr": 0.01, "loss_params": {"scale": 8.0}},
            3: {"feature_dim": 3, "norm": "none", "lr": 0.001, "loss_lr": 0.01, "loss_params": {"scale": 8.0}},
        },
    )
)
class ProxyNCALoss(PMLProxyLoss):
    def __init__(self, num_classes: int, dim: int, scale: float = 1.0) -> None:
        super().__init__(num_classes, dim, losses.ProxyNCALoss(num_classes, dim, softmax_scale=scale,
                                                               distance=UnitLpDistance(power=2)))

    def output(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        # PML's NCA computation with its boolean selection of the samples whose probability is not 0 as a
        # masked mean: the same number, and no wait for a GPU.
        distance = self.loss.distance(features, self.proxies)
        scores = distance if self.loss.distance.is_inverted else -distance
        own = pick(F.softmax(self.loss.softmax_scale * scores, dim=1), class_mask(labels, self.num_classes))
        kept = own != 0
        losses_ = torch.where(kept, -torch.log(torch.where(kept, own, 1)), 0)
        return LossOutput(losses_.sum() / kept.sum().clamp(min=1))


@register(
    LossSpec(
        name="proxy-anchor",
        display_name="Proxy-Anchor",
        family="proxy",
        description=(
            "Each class has a learned proxy, and each proxy acts as an anchor for the whole batch: it pulls "
            "its class's features to a cosine above delta and pushes the other classes' features below "
            "−delta, in both cases weighting the worst features most (a soft-max over the batch). Classes "
            "gather as tight arcs (caps in 3-D) around proxies that spread evenly over the circle or sphere, "
            "provided alpha is small enough for so few dimensions (see the pitfalls)."
        ),
        formula=(r"L = \frac{1}{|P^+|}\sum_{p\in P^+}\log\Big(1+\sum_{i: y_i = p} e^{-\alpha(\cos(f_i, p)-\delta)}\Big)"
                 r" + \frac1C\sum_{p}\log\Big(1+\sum_{i: y_i \ne p} e^{\alpha(\cos(f_i, p)+\delta)}\Big)"),
        paper=Paper("Kim, Kim, Cho, Kwak", "Proxy Anchor Loss for Deep Metric Learning", "CVPR", 2020,
                    "2003.13911"),
        hparams=(
            Param("margin", 0.1, 0.0, 1.0, help="delta: features are pulled above a cosine of delta to their "
                  "proxy and pushed below −delta from the others."),
            Param("alpha", 32.0, 1.0, 256.0, help="Scale of the cosines: larger values weight the hardest "
                  "features of each proxy more."),
        ),
        normalized=True,
        learns="proxies",
        implementation=(
            "pytorch-metric-learning ProxyAnchorLoss(margin, alpha) on cosine similarity, proxies initialised "
            "Kaiming-normal as in the authors' code; P+ = proxies of the classes present in the batch"
        ),
        dims="any; 2-D shows arcs on the circle, 3-D caps on the sphere",
        pitfalls=(
            "The negative term asks every feature to have a cosine below −delta to every other proxy, which "
            "at most d + 1 classes can satisfy in d dimensions (3 on the circle, 4 on the sphere). With more "
            "classes and the paper's alpha = 32, a degenerate state has a lower loss than spread-out classes: "
            "the proxies merge into two groups and all features collapse between them (in 2-D with 10 "
            "digits, accuracy near chance). A small alpha (1 in 2-D, 4 in 3-D) softens the term so that the "
            "classes spread out. Only classes present in the batch pull their proxy. " + PROXY_LR_PITFALL
        ),
        recommended={
            2: {"feature_dim": 2, "lr": 0.001, "loss_lr": 0.01, "loss_params": {"alpha": 1.0}},
            3: {"feature_dim": 3, "lr": 0.001, "loss_lr": 0.01, "loss_params": {"alpha": 4.0}},
        },
    )
)
class ProxyAnchorLoss(PMLProxyLoss):
    def __init__(self, num_classes: int, dim: int, margin: float = 0.1, alpha: float = 32.0) -> None:
        loss = losses.ProxyAnchorLoss(num_classes, dim, margin=margin, alpha=alpha, distance=UnitCosineSimilarity())
        super().__init__(num_classes, dim, loss)

    def output(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        # PML's computation, with its proxies-with-positives count (a torch.where) and its divisor reducer's
        # test of that count on the host as tensor arithmetic: the same number, and no wait for a GPU.
        loss, distance = self.loss, self.loss.distance
        cos = distance(features, self.proxies)
        positive = class_mask(labels, self.num_classes)
        pos_term = lmu.logsumexp(loss.alpha * distance.margin(cos, loss.margin), positive, add_one=True, dim=0)
        neg_term = lmu.logsumexp(loss.alpha * distance.margin(-loss.margin, cos), ~positive, add_one=True, dim=0)
        pos = pos_term.sum() / positive.any(0).sum().clamp(min=1)
        neg = neg_term.sum() / self.num_classes
        return LossOutput(pos + neg, terms={"positive": pos, "negative": neg})
