"""Family 1, softmax with margins: a classifier head whose target logit gets a per-loss transform.

NormFace, CosFace, ArcFace, ElasticFace, AdaCos, Cam-Softmax and IntraLoss share :class:`CosineHead`
(unit features, unit class weights, logits s·cos θ_j, a transform ψ of the target cosine only);
L-Softmax and SphereFace share :class:`MultipleAngleHead` (the feature norm stays in the logits).
Every head reports its plain logits (no margin) both from ``forward`` and ``predict``, so train and
test accuracy measure the same classifier.

pytorch-metric-learning (PML) also computes NormFace (NormalizedSoftmaxLoss), CosFace, ArcFace,
L-Softmax and SphereFace; the tests check that these heads give its numbers. They are not thin
adapters because PML lacks what the app needs: margin warm-up, ArcFace's easy_margin, the
L-Softmax/SphereFace lambda annealing, and the logits of the same pass as the loss (PML's losses
return only the loss); one head for all also keeps one layout of W and one ``predict``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dmlviz.losses.base import (
    FeatureLoss,
    LossOutput,
    LossSpec,
    Paper,
    Param,
    class_mask,
    class_sums,
    pick,
    put,
    rows_of,
    unit,
)
from dmlviz.losses.registry import register

#: acos and sqrt(1 - cos²) have infinite derivatives at cos = ±1: they only see cosines this far inside.
EPS = 1e-7


def angle(cos: torch.Tensor) -> torch.Tensor:
    """θ = acos(cos), with cos kept inside (-1, 1) so that the gradient is finite."""
    return torch.acos(cos.clamp(-1 + EPS, 1 - EPS))


def add_angle(cos: torch.Tensor, margin: float | torch.Tensor) -> torch.Tensor:
    """cos(θ + m) = cos θ · cos m − sin θ · sin m, with no acos in the gradient path."""
    sin = torch.sqrt(1 - cos.clamp(-1 + EPS, 1 - EPS) ** 2)
    if isinstance(margin, torch.Tensor):
        return cos * margin.cos() - sin * margin.sin()
    return cos * math.cos(margin) - sin * math.sin(margin)


def arcface_target(cos: torch.Tensor, margin: float, easy_margin: bool) -> torch.Tensor:
    """ArcFace's target cosine as in insightface (arcface_torch/losses.py).

    Where θ + m > π, i.e. cos θ ≤ cos(π − m), cos(θ + m) would rise again as θ grows and reward
    moving away from the class; there it is cos θ − m·sin(π − m) (= cos θ − m·sin m), a CosFace-like
    penalty. With easy_margin the margin applies only where cos θ > 0 and nowhere else.
    """
    shifted = add_angle(cos, margin)
    if easy_margin:
        return torch.where(cos > 0, shifted, cos)
    return torch.where(cos > math.cos(math.pi - margin), shifted, cos - math.sin(math.pi - margin) * margin)


def multiple_angle_target(cos: torch.Tensor, margin: int) -> torch.Tensor:
    """ψ(θ) = (−1)^k cos(mθ) − 2k on θ ∈ [kπ/m, (k+1)π/m]: cos(mθ) made monotone over [0, π].

    cos(mθ) is the Chebyshev polynomial T_m(cos θ) (the multiple-angle formula), so the gradient
    never goes through acos; k is piecewise constant and carries none.
    """
    previous, current = torch.ones_like(cos), cos
    for _ in range(margin - 1):
        previous, current = current, 2 * cos * current - previous
    with torch.no_grad():
        k = torch.floor(margin * angle(cos) / math.pi)
    return (1 - 2 * torch.remainder(k, 2)) * current - 2 * k


def cam_exponent(c: float) -> float:
    """k(c) = 1 / log2(2 / (1 + cos c)): the power that maps cos c to 0 in ψ_c."""
    return 1 / math.log2(2 / (1 + math.cos(c)))


def cam_target(cos: torch.Tensor, c: float) -> torch.Tensor:
    """Cam-Softmax's ψ_c(x) = 2·((1 + x)/2)^k − 1: fixes ±1, sends cos c to 0, and lies below x for c < π/2."""
    return 2 * ((1 + cos) / 2) ** cam_exponent(c) - 1


def _class_weights(num_classes: int, dim: int) -> nn.Parameter:
    """C × d class weights, initialised like ``nn.Linear`` (as the plain softmax's classifier)."""
    weight = torch.empty(num_classes, dim)
    nn.init.kaiming_uniform_(weight, a=math.sqrt(5))
    return nn.Parameter(weight)


def _ramp(progress: float, length: float) -> float:
    """Linear 0 → 1 over the first ``length`` of the run (1 at once when ``length`` is 0)."""
    return 1.0 if length <= 0 else min(1.0, progress / length)


class CosineHead(FeatureLoss):
    """Normalised softmax: logits s·cos θ_j, with :meth:`target` applied to the target class's cosine.

    Subclasses override :meth:`target`; the scale lives in a buffer so that AdaCos can adapt it.
    """

    def __init__(self, num_classes: int, dim: int, scale: float) -> None:
        super().__init__(num_classes, dim)
        self.weight = _class_weights(num_classes, dim)
        self.register_buffer("scale", torch.tensor(float(scale)))

    def cosine(self, features: torch.Tensor) -> torch.Tensor:
        """cos θ_ij between every feature and every class weight (N × C)."""
        return (unit(features) @ F.normalize(self.weight, dim=1).T).clamp(-1, 1)

    def target(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The transformed target cosine ψ(cos θ_{i,y_i}) (identity: NormFace)."""
        return cos

    def margin_logits(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """s·cos θ_ij with the target entry of each row replaced by s·ψ(cos θ_{i,y_i})."""
        mask = class_mask(labels, cos.shape[1])
        return self.scale * put(cos, mask, self.target(pick(cos, mask), labels))

    def loss_from_cosine(self, cos: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        return LossOutput(F.cross_entropy(self.margin_logits(cos, labels), labels), self.scale * cos)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        return self.loss_from_cosine(self.cosine(features), labels)

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * self.cosine(features)

    def training_logits(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.margin_logits(self.cosine(features), labels)

    def class_vectors(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weight}


class AdditiveMarginHead(CosineHead):
    """A cosine head with a margin m that ramps linearly from 0 over the first ``warmup`` of the run."""

    def __init__(self, num_classes: int, dim: int, scale: float, margin: float, warmup: float) -> None:
        super().__init__(num_classes, dim, scale)
        self.full_margin = float(margin)
        self.warmup = float(warmup)
        self.set_progress(0.0)

    def set_progress(self, progress: float) -> dict[str, float]:
        self.ramp = _ramp(progress, self.warmup)
        self.margin = self.full_margin * self.ramp
        return {"margin": self.margin}


# -- shared hyperparameters and text -------------------------------------------------------------

def _scale(default: float) -> Param:
    return Param("scale", default, 1.0, 128.0, help="Scale s of the cosine logits (inverse temperature). Large s "
                 "makes the softmax hard and the loss saturate; in 2-D/3-D 10–20 usually trains better than 64.")


WARMUP = Param("warmup", 0.0, 0.0, 1.0, help="Fraction of the run over which the margin ramps linearly from 0 to "
               "its value (0: full margin from the first step, as in the paper). Margins make 2-D/3-D runs stall "
               "or collapse at the start; a ramp over 0.2–0.4 of the run avoids it.")
ARC_MARGIN = Param("margin", 0.5, 0.0, 1.5, unit="rad", help="Additive angular margin m in radians (0.5 rad = "
                   "28.6°): a sample's angle to its own class weight is counted m larger.")
COS_MARGIN = Param("margin", 0.35, 0.0, 1.0, help="Additive cosine margin m: subtracted from the cosine to the "
                   "own class weight before scaling.")
NORMALISED_DIMS = ("any ≥ 2; 2-D puts the features on a circle and 3-D on a sphere, where the class caps "
                   "are easy to see")
SMALL_DIM_HELP = ("Margin heads are tuned for 512-D face embeddings with s = 64: in 2-D there is little room "
                  "(10 classes evenly on a circle are 36° apart), so large s saturates the softmax and large "
                  "margins cannot all be met at once. Use s 10–20, a smaller margin in 2-D and a margin warm-up.")
# Recommended 2-D settings of the cosine heads. On the unit circle the classes cannot pass one another, so a
# class split across two arcs by the first steps stays split: a lower learning rate than the default and a
# softer scale keep the early steps from scattering them (bench.losses, half an epoch, NormFace 2-D: 40 %
# test accuracy with the defaults, 62 % at lr 1e-3, 78 % with s = 10 as well).


def on_the_circle(**params: Any) -> dict[str, Any]:
    """The 2-D settings of a cosine head: lr 1e-3 and scale 10, with ``params`` for its other hyperparameters."""
    return {"feature_dim": 2, "lr": 0.001, "loss_params": {"scale": 10.0, **params}}


COSINE_DEF = r"\cos\theta_{ij} = \frac{W_j^\top f_i}{\lVert W_j\rVert\,\lVert f_i\rVert}"
NORMFACE_PAPER = Paper("Wang, Xiang, Cheng, Yuille", "NormFace: L2 Hypersphere Embedding for Face Verification",
                       "ACM Multimedia", 2017, "1704.06369")
ARCFACE_PAPER = Paper("Deng, Guo, Xue, Zafeiriou", "ArcFace: Additive Angular Margin Loss for Deep Face "
                      "Recognition", "CVPR", 2019, "1801.07698")
COSFACE_PAPER = Paper("Wang, Wang, Zhou, Ji, Gong, Zhou, Li, Liu", "CosFace: Large Margin Cosine Loss for Deep Face "
                      "Recognition", "CVPR", 2018, "1801.09414")
ELASTIC_PAPER = Paper("Boutros, Damer, Kirchbuchner, Kuijper", "ElasticFace: Elastic Margin Loss for Deep Face "
                      "Recognition", "CVPR Workshops", 2022, "2109.09416")


def _ce(target: str) -> str:
    """The cross-entropy over s·cos θ with the target logit replaced by ``target`` (LaTeX)."""
    return (r"L = -\frac{1}{N}\sum_i \log\frac{e^{" + target + r"}}{e^{" + target
            + r"} + \sum_{j\ne y_i} e^{s\cos\theta_{ij}}},\quad " + COSINE_DEF)


# -- NormFace -------------------------------------------------------------------------------------

@register(
    LossSpec(
        name="normface",
        display_name="NormFace (normalised softmax)",
        family="softmax-margin",
        description=(
            "Features and class weights are both scaled to unit length, so only directions count: plot the "
            "features on the unit circle (2-D) or sphere (3-D). Each class gathers in an arc or cap around its "
            "weight direction and the boundaries are the angle bisectors between neighbouring weights. There is "
            "no margin, so neighbouring classes touch at the bisectors; the scale s sets how hard the softmax "
            "pushes features towards their weights (too small and the classes stay blurred)."
        ),
        formula=_ce(r"s\cos\theta_{i y_i}"),
        paper=NORMFACE_PAPER,
        hparams=(_scale(20.0),),
        normalized=True,
        learns="weights",
        implementation="dmlviz cosine head; equals pytorch-metric-learning NormalizedSoftmaxLoss with temperature "
                       "1/s (its default 0.05 is s = 20; checked in the tests)",
        dims=NORMALISED_DIMS,
        pitfalls=(
            "Without the scale the logits lie in [-1, 1] and the loss cannot approach 0 (NormFace's lower bound "
            "log(1 + (C−1)·e^{−sC/(C−1)})); s below about 5 leaves 10 classes blurred. The feature norm is "
            "ignored, so the raw 2-D plot may look scattered while the directions are clean."
        ),
        recommended={2: on_the_circle(), 3: {"feature_dim": 3, "loss_params": {"scale": 20.0}}},
    )
)
class NormFace(CosineHead):
    pass


# -- L-Softmax and SphereFace ----------------------------------------------------------------------

class MultipleAngleHead(FeatureLoss):
    """L-Softmax / A-Softmax: the target logit ‖W_y‖‖f‖ψ(θ), mixed with the plain logit by an annealed λ.

    Target logit (λ·‖W_y‖‖f‖cos θ + ‖W_y‖‖f‖ψ(θ)) / (1 + λ), λ = max(λ_min, base·(1 + γ·p)^(−power)),
    p the progress of the run. The official code counts iterations instead of p; here γ is per run
    (the official per-iteration γ times the run's iterations) so that short runs anneal fully.
    """

    normalize_weights = False

    def __init__(self, num_classes: int, dim: int, margin: int, lambda_base: float, lambda_gamma: float,
                 lambda_power: float, lambda_min: float) -> None:
        super().__init__(num_classes, dim)
        self.weight = _class_weights(num_classes, dim)
        self.margin = int(margin)
        self.lambda_base, self.lambda_gamma = float(lambda_base), float(lambda_gamma)
        self.lambda_power, self.lambda_min = float(lambda_power), float(lambda_min)
        self.set_progress(0.0)

    def set_progress(self, progress: float) -> dict[str, float]:
        annealed = self.lambda_base * (1 + self.lambda_gamma * progress) ** (-self.lambda_power)
        self.lam = max(self.lambda_min, annealed)
        return {"lambda": self.lam}

    def weights(self) -> torch.Tensor:
        return F.normalize(self.weight, dim=1) if self.normalize_weights else self.weight

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.weights().T

    def class_vectors(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weight}

    def training_logits(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self._with_margin(features, labels, self.predict(features))

    def _with_margin(self, features: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """The plain logits W_j·f with the target's replaced by (λ·W_y·f + ‖W_y‖‖f‖ψ(θ)) / (1 + λ)."""
        mask = class_mask(labels, logits.shape[1])
        w_y = rows_of(self.weights(), mask)
        cos = (unit(features) * F.normalize(w_y, dim=1)).sum(1).clamp(-1, 1)
        psi = features.norm(dim=1) * w_y.norm(dim=1) * multiple_angle_target(cos, self.margin)
        target = (self.lam * pick(logits, mask) + psi) / (1 + self.lam)
        return put(logits, mask, target)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        logits = self.predict(features)  # once a step: the margin's logits and the accuracy's
        return LossOutput(F.cross_entropy(self._with_margin(features, labels, logits), labels), logits)


def _integer_margin(help: str) -> Param:
    return Param("margin", 4, 1, 4, help="Integer angular margin m: the target angle counts m times. " + help)


def _lambda_hparams(base: float, gamma: float, power: float, minimum: float, origin: str) -> tuple[Param, ...]:
    return (
        Param("lambda_base", base, 0.0, 1e5, help=f"λ at the start of the run ({origin}). The target logit is "
              "(λ·plain logit + margin logit) / (1 + λ): large λ is the softmax without margin, λ = 0 the full "
              "margin. 0 here and in lambda_min switches the annealing off."),
        Param("lambda_gamma", gamma, 0.0, 1e6, help="Decay rate γ of λ per run: λ = max(λ_min, base·(1 + γ·p)^"
              "(−power)) at progress p ∈ [0, 1]. The official code counts iterations; γ here is its "
              "per-iteration γ times the run's iterations, so that short runs anneal fully."),
        Param("lambda_power", power, 0.0, 100.0, help="Power of the λ decay."),
        Param("lambda_min", minimum, 0.0, 1e4, help="Floor of λ: the margin never acts more than "
              "1/(1 + λ_min) of the way."),
    )


MULTIPLE_ANGLE_FORMULA = (
    r"L = -\frac1N\sum_i\log\frac{e^{z_i}}{e^{z_i} + \sum_{j\ne y_i} e^{\lVert W_j\rVert\lVert f_i\rVert\cos"
    r"\theta_{ij}}},\quad z_i = \frac{\lambda\lVert W_{y_i}\rVert\lVert f_i\rVert\cos\theta_{i y_i} + \lVert "
    r"W_{y_i}\rVert\lVert f_i\rVert\psi(\theta_{i y_i})}{1+\lambda},\quad \psi(\theta) = (-1)^k\cos(m\theta) - 2k,"
    r"\ \theta\in\left[\tfrac{k\pi}{m}, \tfrac{(k+1)\pi}{m}\right]"
)


@register(
    LossSpec(
        name="lsoftmax",
        display_name="L-Softmax (large-margin softmax)",
        family="softmax-margin",
        description=(
            "Softmax on a bias-free linear classifier in which the angle to the own class weight counts m "
            "times. Features keep their length and boundaries pass through the origin: in 2-D the classes still "
            "grow as radial petals like plain softmax, but each petal is much narrower in angle, with empty "
            "wedges between neighbouring classes; feature norms grow large."
        ),
        formula=MULTIPLE_ANGLE_FORMULA,
        paper=Paper("Liu, Wen, Yu, Yang", "Large-Margin Softmax Loss for Convolutional Neural Networks", "ICML",
                    2016, "1612.02295"),
        hparams=(
            _integer_margin("The paper uses 1–4 (1 is softmax without bias)."),
            *_lambda_hparams(1000.0, 0.5, 35.0, 0.0, "the official example: base 1000, power 35, λ_min 0; "
                             "γ = 0.5 per run is its γ = 2.5e-5 per iteration over 20,000 iterations"),
        ),
        normalized=False,
        learns="weights",
        implementation="dmlviz (pytorch-metric-learning's LargeMarginSoftmaxLoss has no λ annealing; with λ = 0 "
                       "this head equals it, checked in the tests)",
        dims="any; the classic figure is 2-D",
        pitfalls=(
            "Hard to optimise from the start with m = 3–4: the margin target ψ is far below cos θ, so the "
            "annealing starts as softmax and lets the margin in gradually; the official README notes MNIST "
            "also trains without it. Nothing bounds the feature norm, so the logits and the 2-D plot grow "
            "through the run."
        ),
        recommended={
            2: {"feature_dim": 2, "loss_params": {"margin": 2}},
            3: {"feature_dim": 3, "loss_params": {"margin": 3}},
        },
    )
)
class LargeMarginSoftmax(MultipleAngleHead):
    pass


@register(
    LossSpec(
        name="sphereface",
        display_name="SphereFace (A-Softmax)",
        family="softmax-margin",
        description=(
            "L-Softmax with unit-length class weights and no bias: the class decision depends on the feature's "
            "direction alone, while its length scales the logits. In 2-D the classes become thin angular wedges "
            "around their weight directions, separated by empty angular gaps that grow with m; in 3-D they "
            "become narrow cones, the 'hypersphere' caps of the paper's figure."
        ),
        formula=MULTIPLE_ANGLE_FORMULA + r",\quad \lVert W_j\rVert = 1",
        paper=Paper("Liu, Wen, Yu, Li, Raj, Song", "SphereFace: Deep Hypersphere Embedding for Face Recognition",
                    "CVPR", 2017, "1704.08063"),
        hparams=(
            _integer_margin("The paper uses 4."),
            *_lambda_hparams(1000.0, 1000.0, 1.0, 5.0, "the official prototxt: base 1000, power 1, λ_min 5; "
                             "its γ = 0.12 per iteration reaches λ_min after about 1,700 iterations"),
        ),
        normalized=False,
        learns="weights",
        implementation="dmlviz (pytorch-metric-learning's SphereFaceLoss has no λ annealing; with λ = 0 this "
                       "head equals it, checked in the tests)",
        dims="any; the paper's figure shows 2-D and 3-D features",
        pitfalls=(
            "Without the λ annealing SphereFace with m = 4 hardly trains; λ_min = 5 means the margin never acts "
            "fully (its official setting). The features' norm is not normalised: the angular gaps show best on "
            "the direction (unit circle / sphere) view."
        ),
        recommended={
            2: {"feature_dim": 2, "loss_params": {"margin": 2}},
            3: {"feature_dim": 3, "loss_params": {"margin": 3}},
        },
    )
)
class SphereFace(MultipleAngleHead):
    normalize_weights = True


# -- CosFace --------------------------------------------------------------------------------------

@register(
    LossSpec(
        name="cosface",
        display_name="CosFace / AM-Softmax",
        family="softmax-margin",
        description=(
            "A normalised softmax in which a sample's cosine to its own class weight counts m less, so every "
            "class must beat its neighbours by a margin in cosine. On the circle or sphere each class contracts "
            "into a compact arc or cap around its weight and empty gaps open between neighbouring classes. "
            "AM-Softmax (Wang, Cheng, Liu, Liu, 2018) is the same loss (it used s = 30)."
        ),
        formula=_ce(r"s(\cos\theta_{i y_i} - m)"),
        paper=COSFACE_PAPER,
        hparams=(_scale(64.0), COS_MARGIN, WARMUP),
        normalized=True,
        learns="weights",
        implementation="dmlviz cosine head; equals pytorch-metric-learning CosFaceLoss (checked in the tests), "
                       "plus the margin warm-up PML lacks",
        dims=NORMALISED_DIMS,
        pitfalls=SMALL_DIM_HELP + " The margin is in cosine: near the weight direction (cos ≈ 1) it is a "
                                  "wider angle than m radians would be.",
        recommended={
            2: on_the_circle(margin=0.1, warmup=0.3),
            3: {"feature_dim": 3, "loss_params": {"scale": 16.0, "margin": 0.25, "warmup": 0.3}},
        },
    )
)
class CosFace(AdditiveMarginHead):
    def target(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return cos - self.margin


# -- ArcFace --------------------------------------------------------------------------------------

@register(
    LossSpec(
        name="arcface",
        display_name="ArcFace",
        family="softmax-margin",
        description=(
            "A normalised softmax in which a sample's angle to its own class weight counts m radians larger: "
            "every class must be closer to its weight than to any other by an angle m. On the circle or sphere "
            "the classes shrink into tight arcs or caps around their weights with gaps of about m radians "
            "between neighbours, the geodesic margin that gives ArcFace its name."
        ),
        formula=_ce(r"s\,\psi(\theta_{i y_i})") + r",\quad \psi(\theta) = \begin{cases}\cos(\theta + m) & "
        r"\theta + m < \pi\\ \cos\theta - m\sin m & \text{otherwise}\end{cases}",
        paper=ARCFACE_PAPER,
        hparams=(
            _scale(64.0),
            ARC_MARGIN,
            Param("easy_margin", False, help="Apply the margin only where cos θ > 0 (θ < 90°) and leave "
                  "farther samples untouched, instead of the θ + m > π fallback (insightface's option)."),
            WARMUP,
        ),
        normalized=True,
        learns="weights",
        implementation="dmlviz cosine head with insightface's θ + m > π fallback and easy_margin; equals "
                       "pytorch-metric-learning ArcFaceLoss with the margin in degrees (checked in the tests), "
                       "which lacks easy_margin and the warm-up",
        dims=NORMALISED_DIMS,
        pitfalls=SMALL_DIM_HELP + " Where θ + m > π, cos(θ + m) would grow as the sample moves away from its "
                                  "class; the fallback cos θ − m·sin m keeps the target decreasing but jumps "
                                  "there, so samples on the far side get a step in their logit.",
        recommended={
            2: on_the_circle(margin=0.15, warmup=0.3),
            3: {"feature_dim": 3, "loss_params": {"scale": 16.0, "margin": 0.3, "warmup": 0.3}},
        },
    )
)
class ArcFace(AdditiveMarginHead):
    def __init__(self, num_classes: int, dim: int, scale: float, margin: float, easy_margin: bool,
                 warmup: float) -> None:
        self.easy_margin = easy_margin
        super().__init__(num_classes, dim, scale, margin, warmup)

    def target(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return arcface_target(cos, self.margin, self.easy_margin)


# -- ElasticFace ----------------------------------------------------------------------------------

class ElasticFace(AdditiveMarginHead):
    """A margin drawn for every sample from N(m, σ) at every training step (the mean m at evaluation).

    The draws come from the module's own generator, seeded from torch's global RNG when the loss is
    built, so a run is reproducible and the draws do not shift the engine's other random streams.
    ``angular``: the margin is added to the angle (Arc) or subtracted from the cosine (Cos).
    """

    angular: bool

    def __init__(self, num_classes: int, dim: int, scale: float, margin: float, std: float, warmup: float) -> None:
        super().__init__(num_classes, dim, scale, margin, warmup)
        self.std = float(std)
        self.seed = int(torch.randint(2**62, ()))
        self.generator = torch.Generator().manual_seed(self.seed)

    def sample_margins(self, labels: torch.Tensor) -> torch.Tensor:
        """E_i ~ N(m, σ), scaled by the warm-up ramp like the margin itself."""
        if not self.training:
            return torch.full(labels.shape, self.margin, device=labels.device)
        if self.generator.device != labels.device:
            # Drawn where the labels are: a CPU draw would be copied to the GPU, and wait for it, every step.
            self.generator = torch.Generator(device=labels.device).manual_seed(self.seed)
        draws = torch.normal(self.full_margin, self.std, labels.shape, generator=self.generator,
                             device=labels.device)
        return self.ramp * draws

    def target(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        margins = self.sample_margins(labels)
        return add_angle(cos, margins) if self.angular else cos - margins


# Without the θ + m > π fallback (as the authors' code) a full margin from the first step let wide (d = 128)
# MNIST runs fall into a collapse: every feature opposite every class weight, where cos(θ + E) rises as θ nears
# 180° (0.35 % test accuracy after three epochs, `python -m bench.converge losses --losses elasticface-arc
# --dims 128` before this default); the margin ramped in over 30 % of the run, the same run reached 99.64 %.
ELASTIC_ARC_WARMUP = Param("warmup", 0.3, 0.0, 1.0, help="Fraction of the run over which the margin ramps "
                           "linearly from 0 to its value. 0 is the paper's full margin from the first step; "
                           "without ArcFace's θ + m > π fallback, that let 128-D MNIST runs collapse with every "
                           "feature opposite its class weight, so the default ramps it in over 30 %.")
ELASTIC_STD = Param("std", 0.05, 0.0, 0.5, help="Standard deviation σ of the per-sample margin (the authors' "
                    "training configs use 0.05; their class default is 0.0125). 0 gives the fixed-margin loss.")


@register(
    LossSpec(
        name="elasticface-arc",
        display_name="ElasticFace-Arc",
        family="softmax-margin",
        description=(
            "ArcFace with an elastic margin: every sample at every step gets its own angular margin drawn from a "
            "normal distribution around m. On the circle or sphere the classes contract into arcs or caps with "
            "gaps between them as in ArcFace, but the random margins keep the class edges softer and let the "
            "classes settle where a single fixed margin would be too strict."
        ),
        formula=_ce(r"s\cos(\theta_{i y_i} + E_i)") + r",\quad E_i \sim \mathcal{N}(m, \sigma^2)",
        paper=ELASTIC_PAPER,
        hparams=(_scale(64.0), ARC_MARGIN, ELASTIC_STD, ELASTIC_ARC_WARMUP),
        normalized=True,
        learns="weights",
        implementation="dmlviz (pytorch-metric-learning has no ElasticFace); as the authors' ElasticArcFace "
                       "(fdbtrs/ElasticFace utils/losses.py): cos(θ + E) with no θ + m > π fallback",
        dims=NORMALISED_DIMS,
        pitfalls=SMALL_DIM_HELP + " As in the authors' code there is no θ + m > π fallback: a sample almost "
                                  "opposite its class weight can lower its loss by moving further away; with the "
                                  "full margin from the first step (warmup 0) 128-D MNIST runs collapsed that way, "
                                  "every feature opposite every class weight. The "
                                  "loss curve is noisier than ArcFace's because the margins change each step. "
                                  "The '+' variant (margins sorted by closeness to the class) is not included.",
        recommended={
            2: on_the_circle(margin=0.15, std=0.05, warmup=0.3),
            3: {"feature_dim": 3, "loss_params": {"scale": 16.0, "margin": 0.3, "std": 0.05, "warmup": 0.3}},
        },
    )
)
class ElasticArcFace(ElasticFace):
    angular = True


@register(
    LossSpec(
        name="elasticface-cos",
        display_name="ElasticFace-Cos",
        family="softmax-margin",
        description=(
            "CosFace with an elastic margin: every sample at every step gets its own cosine margin drawn from a "
            "normal distribution around m. On the circle or sphere the classes contract into compact arcs or "
            "caps with gaps between neighbours as in CosFace, with softer class edges."
        ),
        formula=_ce(r"s(\cos\theta_{i y_i} - E_i)") + r",\quad E_i \sim \mathcal{N}(m, \sigma^2)",
        paper=ELASTIC_PAPER,
        hparams=(_scale(64.0), COS_MARGIN, ELASTIC_STD, WARMUP),
        normalized=True,
        learns="weights",
        implementation="dmlviz (pytorch-metric-learning has no ElasticFace); as the authors' ElasticCosFace "
                       "(fdbtrs/ElasticFace utils/losses.py)",
        dims=NORMALISED_DIMS,
        pitfalls=SMALL_DIM_HELP + " The loss curve is noisier than CosFace's because the margins change each "
                                  "step. The '+' variant (margins sorted by closeness to the class) is not included.",
        recommended={
            2: on_the_circle(margin=0.1, std=0.05, warmup=0.3),
            3: {"feature_dim": 3, "loss_params": {"scale": 16.0, "margin": 0.25, "std": 0.05, "warmup": 0.3}},
        },
    )
)
class ElasticCosFace(ElasticFace):
    angular = False


# -- AdaCos ---------------------------------------------------------------------------------------

@register(
    LossSpec(
        name="adacos",
        display_name="AdaCos",
        family="softmax-margin",
        description=(
            "A normalised softmax with no margin whose scale is set for you: fixed at √2·ln(C−1) (about 3.1 for "
            "10 classes), or adapted every step from the batch. The scale is small, so probabilities stay soft: "
            "on the circle or sphere the classes gather around their weights but stay wider and more spread "
            "than with s = 64, an instructive contrast to the fixed-scale margin losses."
        ),
        formula=_ce(r"s\cos\theta_{i y_i}") + r",\quad s_0 = \sqrt2\ln(C-1),\quad s_{t} = \frac{\ln B_{avg}}"
        r"{\cos\min(\pi/4,\,\theta_{med})},\quad B_{avg} = \frac1N\sum_i\sum_{j\ne y_i} e^{s_{t-1}\cos\theta_{ij}}",
        paper=Paper("Zhang, Zhao, Qiao, Wang, Li", "AdaCos: Adaptively Scaling Cosine Logits for Effectively "
                    "Learning Deep Face Representations", "CVPR", 2019, "1905.00292"),
        hparams=(Param("dynamic", False, help="Adapt the scale every training step from the median angle to the "
                       "own class and the summed exp-logits of the other classes (dynamic AdaCos, the paper's main "
                       "method); off: keep the fixed scale √2·ln(C−1) (fixed AdaCos). With 10 classes the dynamic "
                       "scale settles from about 8-D up, but in 2-D and 3-D it grows without bound and the run "
                       "diverges (see the pitfalls)."),),
        normalized=True,
        learns="weights",
        implementation="dmlviz (pytorch-metric-learning has no AdaCos); update as in 4uiiurz1/pytorch-adacos: "
                       "computed without gradient from the batch before its logits, lower median of the batch",
        dims=NORMALISED_DIMS + "; needs at least 3 classes (the scale is 0 for 2)",
        pitfalls=(
            "The dynamic update assumes that the other classes are nearly orthogonal to a sample, as in "
            "high-dimensional face embeddings: then ln B_avg ≈ ln(C−1) and the scale settles. In 2-D and 3-D "
            "with 10 classes the nearest other classes are much closer than 90°, ln B_avg grows like s times "
            "their cosine, which exceeds cos θ_med (at most cos 45°), and every step multiplies the scale: on "
            "MNIST in 3-D it passes 100 within 30 steps and the loss becomes NaN (8-D and up settle near 2–4). "
            "Use the fixed scale there. The fixed scale depends only on the number of classes: with few classes "
            "it is small (1.55 for 4) and the classes stay loose. With 2 classes √2·ln(C−1) = 0 and nothing is "
            "learned, so AdaCos refuses to build."
        ),
        # Not on_the_circle(): its scale is its own, and at lr 1e-3 it reached 78 % in half an epoch, 89 % at 3e-3.
        recommended={
            2: {"feature_dim": 2, "loss_params": {"dynamic": False}},
            3: {"feature_dim": 3, "loss_params": {"dynamic": False}},
        },
    )
)
class AdaCos(CosineHead):
    def __init__(self, num_classes: int, dim: int, dynamic: bool) -> None:
        if num_classes < 3:
            raise ValueError("AdaCos needs at least 3 classes: its scale √2·ln(C−1) is 0 with 2")
        super().__init__(num_classes, dim, math.sqrt(2) * math.log(num_classes - 1))
        self.dynamic = dynamic

    def set_progress(self, progress: float) -> dict[str, float | torch.Tensor]:
        # The dynamic scale is a device tensor: read when a snapshot is taken, not every step.
        return {"scale": self.scale.detach().clone() if torch.is_tensor(self.scale) else float(self.scale)}

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        cos = self.cosine(features)
        if self.dynamic and self.training:
            self._update_scale(cos.detach(), labels)
        return self.loss_from_cosine(cos, labels)

    @torch.no_grad()
    def _update_scale(self, cos: torch.Tensor, labels: torch.Tensor) -> None:
        is_target = F.one_hot(labels, self.num_classes).bool()
        # ln B_avg as a logsumexp: exp(s·cos) overflows float32 once s passes about 88.
        log_b_avg = torch.logsumexp((self.scale * cos).masked_fill(is_target, -math.inf).flatten(), 0)
        log_b_avg = log_b_avg - math.log(len(labels))
        theta_med = angle(cos[is_target]).median()
        self.scale.copy_(log_b_avg / torch.cos(theta_med.clamp(max=math.pi / 4)))


# -- Cam-Softmax ----------------------------------------------------------------------------------

def _cam_c(value: float, which: str) -> Param:
    return Param(f"c_{which}", value, 0.2, math.pi / 2, unit="rad", help=(
        f"The angle c at the {which} of its schedule (π/2 = 1.5708: plain normalised softmax; π/4 = 0.7854 "
        "is the authors' end value). The target logit is 0 at θ = c: a sample c away from its own class "
        "weight scores no better than an orthogonal class."))


@register(
    LossSpec(
        name="cam-softmax",
        display_name="Cam-Softmax",
        family="softmax-margin",
        description=(
            "A normalised softmax (s = 20) whose target cosine is bent by ψ_c: at c = π/2 it is plain NormFace, "
            "and as c shrinks towards π/4 over the run the own-class score falls to 0 already at angle c, so a "
            "sample must sit well inside c of its class weight to be confident. On the circle or sphere the "
            "classes start as wide arcs or caps and contract steadily into tight ones with gaps between them."
        ),
        formula=_ce(r"s\,\psi_c(\cos\theta_{i y_i})") + r",\quad \psi_c(x) = 2\left(\frac{1+x}{2}\right)^{k} - 1,"
        r"\quad k = \frac{1}{\log_2\frac{2}{1+\cos c}}",
        paper=Paper("Suveges, McKenna", "Cam-Softmax for Discriminative Deep Feature Learning", "ICPR", 2020),
        hparams=(
            _scale(20.0),
            _cam_c(math.pi / 2, "start"),
            _cam_c(math.pi / 4, "end"),
            Param("c_length", 0.5, 0.0, 1.0, help=(
                "Fraction of the run over which c moves linearly from c_start to c_end, then stays there. The "
                "authors' code lowers c by 1e-4 rad per iteration (about 7,850 iterations from π/2 to π/4); a "
                "fraction of the run lets short runs reach the end. The paper describes an algorithm that adapts "
                "c automatically during training: it may differ from this linear schedule, which is taken from "
                "the authors' code.")),
        ),
        normalized=True,
        learns="weights",
        implementation="dmlviz (pytorch-metric-learning has no Cam-Softmax); ψ_c and the linear schedule of c from "
                       "the authors' code (stamas02/cam-softmax src/cam_loss.py, train.py)",
        dims=NORMALISED_DIMS,
        pitfalls=(
            "Small end values of c make k large (c = π/6 gives k ≈ 10), and ψ_c then pushes almost every target "
            "logit to −1 until the class is very tight, which can stall 2-D runs; π/4 is the authors' stop value. "
            "The schedule here is linear in the run's progress, not 1e-4 rad per iteration, and the paper's own "
            "adaptation rule is unconfirmed."
        ),
        recommended={2: on_the_circle(c_length=0.5), 3: {"feature_dim": 3, "loss_params": {"c_length": 0.5}}},
    )
)
class CamSoftmax(CosineHead):
    def __init__(self, num_classes: int, dim: int, scale: float, c_start: float, c_end: float,
                 c_length: float) -> None:
        super().__init__(num_classes, dim, scale)
        self.c_start, self.c_end, self.c_length = float(c_start), float(c_end), float(c_length)
        self.set_progress(0.0)

    def set_progress(self, progress: float) -> dict[str, float]:
        self.c = self.c_start + (self.c_end - self.c_start) * _ramp(progress, self.c_length)
        return {"c": self.c}

    def target(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return cam_target(cos, self.c)


# -- IntraLoss ------------------------------------------------------------------------------------

@register(
    LossSpec(
        name="intraloss",
        display_name="IntraLoss (margin softmax + gradient-enhancing term)",
        family="softmax-margin",
        description=(
            "ArcFace or CosFace plus a term that pulls each sample towards its class weight in proportion to its "
            "angle, weighted most where the class is most spread out. On the circle or sphere the classes form "
            "margin-separated arcs or caps as with the base loss, and the outlying, stretched-out parts of each "
            "cap are pulled in harder, so the caps become rounder and more compact."
        ),
        formula=r"L = L_{margin} + \frac{\lambda}{N}\sum_i w_i\,\theta_{i y_i},\quad w_i = \mathrm{sg}\left["
        r"\left(\frac{\theta_{i y_i}}{\bar\theta_{y_i}}\right)^{\gamma}\right],\quad \bar\theta_c = "
        r"\text{mean of } \theta_{j c} \text{ over the batch's samples } j \text{ of class } c",
        paper=Paper("Jiang, Su, Wang, Bai, Liu, Cheng", "IntraLoss: Further Margin via Gradient-Enhancing Term for "
                    "Deep Face Recognition", "arXiv", 2021, "2107.03352"),
        hparams=(
            Param("base", "arcface", choices=("arcface", "cosface"), help="The margin softmax the term is added "
                  "to: ArcFace (angular margin) or CosFace (cosine margin)."),
            _scale(64.0),
            Param("margin", 0.5, 0.0, 1.5, help="Margin m of the base loss: in radians for ArcFace (0.5 rad = "
                  "28.6°), in cosine for CosFace (its usual value is 0.35)."),
            WARMUP,
            Param("lambda", 0.1, 0.0, 10.0, help="Weight λ of the gradient-enhancing term (angles in radians)."),
            Param("gamma", 2.0, 0.0, 10.0, help="Exponent γ of the sample weight (θ / class-mean θ)^γ: 0 pulls all "
                  "samples alike, larger values concentrate the pull on the class's outliers."),
        ),
        normalized=True,
        learns="weights",
        implementation="dmlviz (pytorch-metric-learning has no IntraLoss); the term is our reconstruction from "
                       "the abstract, on top of the ArcFace / CosFace heads of this module",
        reconstructed=True,
        dims=NORMALISED_DIMS,
        pitfalls=SMALL_DIM_HELP + " The formula is reconstructed from the abstract (no full text or code was "
                                  "available): it shows the idea, not the paper's numbers. The class mean angle "
                                  "comes from the batch, so classes with one sample in a batch get weight 1.",
        recommended={
            2: on_the_circle(margin=0.15, warmup=0.3),
            3: {"feature_dim": 3, "loss_params": {"scale": 16.0, "margin": 0.3, "warmup": 0.3}},
        },
    )
)
class IntraLoss(AdditiveMarginHead):
    def __init__(self, num_classes: int, dim: int, base: str, scale: float, margin: float, warmup: float,
                 **hp: float) -> None:
        super().__init__(num_classes, dim, scale, margin, warmup)
        self.base = base
        self.weight_term = float(hp["lambda"])
        self.gamma = float(hp["gamma"])

    def target(self, cos: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.base == "arcface":
            return arcface_target(cos, self.margin, easy_margin=False)
        return cos - self.margin

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        cos = self.cosine(features)
        out = self.loss_from_cosine(cos, labels)
        theta = angle(pick(cos, class_mask(labels, cos.shape[1])))
        intra = self.weight_term * (self.sample_weights(theta, labels) * theta).mean()
        return LossOutput(out.loss + intra, out.logits, terms={self.base: out.loss, "intra": intra})

    @torch.no_grad()
    def sample_weights(self, theta: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """w_i = (θ_i / mean θ of the batch's samples of class y_i)^γ, without gradient."""
        mask = class_mask(labels, self.num_classes)
        means = class_sums(theta, mask) / mask.sum(0).clamp(min=1)
        return (theta / rows_of(means, mask)) ** self.gamma
