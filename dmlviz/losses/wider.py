"""Losses from the seed papers' wider circle: a fixed-simplex classifier, Angular Sparsemax, and a
class-adversarial (gradient-reversal) head."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dmlviz.losses.base import FeatureLoss, LossOutput, LossSpec, Paper, Param, class_mask, pick, put, unit
from dmlviz.losses.center_based import MARGIN_HEADS
from dmlviz.losses.registry import build_loss, get_spec, register


def arc_margin(cos: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Cosines with the target's replaced by cos(theta_y + m) (ArcFace's additive angular margin).

    Where theta_y + m would pass pi, cos(theta_y + m) starts to grow again and would reward larger
    angles; there ArcFace falls back to the linear penalty cos(theta_y) - m sin(m).
    """
    cos = cos.clamp(-1.0, 1.0)
    mask = class_mask(labels, cos.shape[1])
    target = pick(cos, mask)
    # Clamped away from 0 so that the gradient of the square root stays finite at theta = 0 or pi.
    sin = (1.0 - target * target).clamp_min(1e-7).sqrt()
    shifted = target * math.cos(margin) - sin * math.sin(margin)
    shifted = torch.where(target > math.cos(math.pi - margin), shifted, target - margin * math.sin(margin))
    return put(cos, mask, shifted)


def simplex_vertices(num_classes: int, dim: int) -> torch.Tensor:
    """The C vertices of a regular simplex on the unit sphere of R^d (C x d; pairwise cosine -1/(C-1)).

    Closed form (no random or SVD step, so every run and machine gets the same vertices): the
    standard basis vectors e_i of R^C, centred, written in the orthonormal Helmert basis of the
    hyperplane orthogonal to (1, ..., 1), normalised, and padded with zeros up to d.
    """
    if num_classes < 2:
        raise ValueError(f"the fixed simplex needs at least 2 classes, got {num_classes}")
    if dim < num_classes - 1:
        keep = ",".join(str(c) for c in range(dim + 1))
        raise ValueError(
            f"the fixed simplex needs feature_dim ≥ C − 1 = {num_classes - 1} for {num_classes} classes, got "
            f"{dim}: train on at most {dim + 1} classes (classes={keep}) or use feature_dim ≥ {num_classes - 1}"
        )
    helmert = torch.zeros(num_classes - 1, num_classes, dtype=torch.float64)
    for k in range(1, num_classes):
        helmert[k - 1, :k] = 1.0
        helmert[k - 1, k] = -float(k)
        helmert[k - 1] /= math.sqrt(k * (k + 1))
    vertices = F.normalize(helmert.T, dim=1)  # row i: e_i in the Helmert basis (e_i's centring drops out)
    return F.pad(vertices, (0, dim - (num_classes - 1))).float()


@register(
    LossSpec(
        name="fixed-simplex",
        our_design=True,
        display_name="Fixed simplex classifier (angular margin)",
        family="wider-circle",
        description=(
            "The class directions are not learned: they are fixed in advance at the corners of a regular "
            "simplex on the unit circle or sphere, as far apart as C directions can be (3 classes in 2-D sit "
            "120° apart, 4 classes in 3-D at the corners of a tetrahedron). Features learn to point at their "
            "class's corner, and the angular margin makes them point closer than they need to: on the circle "
            "or sphere you see tight caps of equal size around the fixed corners, evenly spread, with empty "
            "gaps between them, instead of the uneven layout that learned weights often give."
        ),
        formula=(r"L = -\frac{1}{N}\sum_i \log\frac{e^{\lVert f_i\rVert\cos(\theta_{i,y_i} + m)}}"
                 r"{e^{\lVert f_i\rVert\cos(\theta_{i,y_i} + m)} + "
                 r"\sum_{j \ne y_i} e^{\lVert f_i\rVert\cos\theta_{ij}}}"
                 r",\quad \lVert f_i\rVert\cos\theta_{ij} = v_j^\top f_i,\ v_j \text{ fixed unit simplex vertices}"),
        paper=Paper("Pucci, Micheloni, Foresti, Martinel", "Fixed Simplex Coordinates for Angular Margin Loss in "
                    "CapsNet", "ICPR", 2020),
        hparams=(
            Param("margin", 0.5, 0.0, 1.5, unit="rad", help="m: the angle added to each feature's angle to its "
                  "own vertex (ArcFace's additive angular margin); it opens gaps between the caps. 0 gives "
                  "plain softmax over the fixed vertices (RePoNet)."),
        ),
        normalized=True,
        learns="vertices",
        implementation="dmlviz (a fixed-weight classifier with ArcFace's margin, written out here; "
                       "pytorch-metric-learning's ArcFaceLoss learns its weights)",
        dims="needs feature_dim ≥ classes − 1: 3 classes in 2-D, 4 in 3-D, all 10 from 9-D up (then projected)",
        pitfalls=(
            "Our own combination of the papers' parts: Pucci et al. fix simplex vertices as class centroids and "
            "add an angular term to CapsNet's loss; Pernici et al. (RePoNet) fix a simplex classifier under "
            "plain softmax on raw features; here the fixed vertices take raw features with ArcFace's additive "
            "angular margin, the feature norm acting as ArcFace's scale s. Why not a fixed scale s on unit "
            "features: with the vertices fixed, a class whose features start opposite its vertex is held "
            "there by the other classes (in our synthetic check, with every feature starting in one direction as "
            "an untrained network gives, one class stayed stuck in 4 of 10 runs in 3-D and 7 of 10 in 2-D); "
            "with raw features it can cut through the origin instead. A regular simplex of C corners needs "
            "C − 1 dimensions, so with all 10 digits it cannot be drawn in 2-D or 3-D: pick 3 (2-D) or 4 (3-D) "
            "classes, or train in 9-D and look at a projection. Past theta = pi - m ArcFace's linear fallback "
            "cos(theta) - m sin(m) replaces cos(theta + m). Feature norms grow as the loss falls."
        ),
        recommended={
            2: {"feature_dim": 2, "classes": [0, 1, 2]},
            3: {"feature_dim": 3, "classes": [0, 1, 2, 3]},
        },
    )
)
class FixedSimplexLoss(FeatureLoss):
    """Cross-entropy over ||f|| cos(angle to fixed simplex vertices), with an additive angular margin."""

    def __init__(self, num_classes: int, dim: int, margin: float = 0.5) -> None:
        super().__init__(num_classes, dim)
        self.register_buffer("vertices", simplex_vertices(num_classes, dim))
        self.margin = float(margin)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        norms = features.norm(dim=1, keepdim=True)
        cos = unit(features) @ self.vertices.T
        loss = F.cross_entropy(norms * arc_margin(cos, labels, self.margin), labels)
        return LossOutput(loss, features @ self.vertices.T)

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return features @ self.vertices.T

    def class_vectors(self) -> dict[str, torch.Tensor]:
        return {"vertices": self.vertices}


def sparsemax_threshold(z: torch.Tensor) -> torch.Tensor:
    """tau(z) per row (N x 1): sparsemax(z) = max(z - tau, 0) sums to 1 (Martins & Astudillo 2016, Alg. 1).

    Differentiable in z: on the support S, tau = (sum_S z_j - 1) / |S|. The support is found without
    gradient (a sort's backward scatters, which waits for a GPU under deterministic algorithms); tau is
    then that formula over it, so its value and gradient are the same.
    """
    with torch.no_grad():
        z_sorted = z.sort(dim=1, descending=True).values
        k = torch.arange(1, z.shape[1] + 1, device=z.device, dtype=z.dtype)
        # The support is a prefix of the sorted scores: the k largest with 1 + k z_(k) > sum of the top k.
        support_size = (1 + k * z_sorted > z_sorted.cumsum(1)).sum(1, keepdim=True)
        support = z >= z_sorted.gather(1, support_size - 1)  # ties with the smallest in it are in it too
    return (torch.where(support, z, 0).sum(1, keepdim=True) - 1) / support.sum(1, keepdim=True).to(z.dtype)


def sparsemax(z: torch.Tensor) -> torch.Tensor:
    """The Euclidean projection of each row of z onto the probability simplex."""
    return (z - sparsemax_threshold(z)).clamp_min(0)


def sparsemax_loss(z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean over rows of -z_y + 1/2 sum_{j in S(z)} (z_j^2 - tau^2) + 1/2; its gradient is sparsemax(z) - onehot(y)."""
    tau = sparsemax_threshold(z)
    support = (z > tau).to(z.dtype)
    target = pick(z, class_mask(labels, z.shape[1]))
    return (-target + 0.5 * (support * (z * z - tau * tau)).sum(1) + 0.5).mean()


@register(
    LossSpec(
        name="angular-sparsemax",
        display_name="Angular Sparsemax",
        family="wider-circle",
        description=(
            "A cosine classifier like ArcFace (features and class weights normalised, an angle margin on the "
            "true class), but its probabilities come from sparsemax instead of softmax: a class gets exactly "
            "zero probability once it is far enough behind. A sample stops pulling as soon as its class wins "
            "by a clear gap, so on the circle or sphere the classes form caps around their weight directions "
            "with empty gaps between them, and well-classified samples are left where they are rather than "
            "squeezed ever tighter."
        ),
        formula=(r"z_{ij} = s\cos(\theta_{ij} + m(p)\,[j = y_i]),\quad L = \frac{1}{N}\sum_i \Big(-z_{i,y_i} + "
                 r"\tfrac12\sum_{j \in S(z_i)} \big(z_{ij}^2 - \tau(z_i)^2\big) + \tfrac12\Big),\quad "
                 r"\mathrm{sparsemax}(z) = [z - \tau(z)]_+,\ m(p) = m \min(1, p / \text{warmup})"),
        paper=Paper("Chan, Kittler", "Angular Sparsemax for Face Recognition", "ICPR", 2020),
        hparams=(
            Param("scale", 16.0, 1.0, 128.0, help="s: the cosines are multiplied by s before sparsemax. The loss "
                  "is zero once the true class's score leads every other by 1, i.e. its cosine by 1/s: a larger "
                  "s stops training sooner."),
            Param("margin", 0.3, 0.0, 1.5, unit="rad", help="m: the angle added to each feature's angle to its "
                  "own class weight (ArcFace's additive angular margin)."),
            Param("warmup", 0.3, 0.0, 1.0, help="Share of the run over which the margin grows linearly from 0 to "
                  "m (0: the full margin from the first step)."),
        ),
        normalized=True,
        learns="weights",
        implementation="dmlviz (sparsemax and its loss written out: pytorch-metric-learning has neither); "
                       "the margin as in ArcFace",
        dims="any; 2-D and 3-D show the caps and the gaps",
        pitfalls=(
            "Only the abstract was checked: where the margin enters, the values of s and m, and whether the "
            "paper uses plain sparsemax or a Tsallis entmax are unconfirmed; this is the sparsemax "
            "(Fenchel-Young) loss of Martins & Astudillo over ArcFace-style scores, with a margin warm-up of "
            "our own (as for ArcFace in 2-D). The loss is exactly zero once a sample's own score beats every "
            "other score by 1, so with a large s it stops training early and classes stay loose; with a "
            "small s sparsemax spreads probability over several classes. In 2-D with 10 classes keep the "
            "margin small (0.1-0.2 rad)."
        ),
        recommended={
            # BatchNorm in the backbone collapses the 2-D features to a point (21 % after half an epoch;
            # 61 % without it, 76 % without it at lr 1e-3).
            2: {"feature_dim": 2, "norm": "none", "lr": 0.001, "loss_params": {"margin": 0.2}},
            3: {"feature_dim": 3},
        },
    )
)
class AngularSparsemaxLoss(FeatureLoss):
    """Sparsemax loss over s * [cos(theta_y + m), cos theta_j] on a normalised, learned classifier."""

    def __init__(self, num_classes: int, dim: int, scale: float = 16.0, margin: float = 0.3,
                 warmup: float = 0.3) -> None:
        super().__init__(num_classes, dim)
        self.weight = nn.Parameter(torch.randn(num_classes, dim))
        self.scale = float(scale)
        self.full_margin = float(margin)
        self.warmup = float(warmup)
        self.margin = self._margin_at(0.0)

    def _margin_at(self, progress: float) -> float:
        if self.warmup <= 0:
            return self.full_margin
        return self.full_margin * min(1.0, progress / self.warmup)

    def set_progress(self, progress: float) -> dict[str, float]:
        self.margin = self._margin_at(progress)
        return {"margin": self.margin}

    def _cosines(self, features: torch.Tensor) -> torch.Tensor:
        return unit(features) @ F.normalize(self.weight, dim=1).T

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        cos = self._cosines(features)
        loss = sparsemax_loss(self.scale * arc_margin(cos, labels, self.margin), labels)
        return LossOutput(loss, self.scale * cos)

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.scale * self._cosines(features)

    def class_vectors(self) -> dict[str, torch.Tensor]:
        return {"weights": self.weight}


class _GradientReversal(torch.autograd.Function):
    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor, scale: float) -> torch.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward; multiplies the gradient by -scale on the way back (Ganin & Lempitsky's GRL)."""
    return _GradientReversal.apply(x, scale)


def dann_ramp(progress: float, top: float) -> float:
    """top * (2 / (1 + exp(-10 p)) - 1): 0 at the start, close to ``top`` from a third of the run on."""
    return top * (2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0)


ADVERSARY_BASES = (*MARGIN_HEADS, "center")


@register(
    LossSpec(
        name="class-adversarial",
        our_design=True,
        display_name="Class-adversarial head (gradient reversal)",
        family="wider-circle",
        description=(
            "A base loss (softmax by default) trains the classes apart while a second, small classifier "
            "tries to tell the classes from the features too, and the features are trained to defeat it: "
            "its gradient reaches the features reversed. The result is features that carry less "
            "class-specific detail than the base loss alone would give: classes stay separable for the "
            "base classifier but are less sharply carved, which is meant to leave room for classes never "
            "seen in training (train on some digits and watch where the others land). OUR DESIGN FROM "
            "STANDARD PARTS: the paper's abstract gives no formula."
        ),
        formula=(r"L = L_{base}(f, y) + \mathrm{CE}\big(g(\mathrm{GRL}_{\lambda}(f)), y\big),\quad "
                 r"\frac{\partial\,\mathrm{GRL}_\lambda(f)}{\partial f} = -\lambda,\quad "
                 r"\lambda(p) = \lambda_{max}\Big(\frac{2}{1 + e^{-10p}} - 1\Big)"),
        paper=Paper("Al-Kaabi, Monsefi, Zabihzadeh", "A Framework to Enhance Generalization of Deep Metric "
                    "Learning methods using General Discriminative Feature Learning and Class Adversarial Neural "
                    "Networks", "Applied Intelligence", 2022, "2106.06420"),
        hparams=(
            Param("base", "softmax", choices=ADVERSARY_BASES, help="The loss that learns the classes (with its "
                  "own default settings)."),
            Param("lambda_max", 0.1, 0.0, 10.0, help="Final strength of the reversed gradient; it ramps up "
                  "from 0 as in DANN, 2/(1 + exp(-10 p)) - 1 of it at progress p."),
            Param("hidden", 64, 4, 1024, help="Width of the adversary's hidden layer (features -> hidden -> "
                  "classes, ReLU)."),
        ),
        normalized=False,
        learns="weights",
        implementation="dmlviz (a gradient-reversal layer and a two-layer MLP adversary; the base via the "
                       "registry)",
        dims="any",
        pitfalls=(
            "Not a formula from the paper: the abstract says only that a class-adversarial network makes the "
            "features seek class-invariant information; the paper's attention over intermediate layers, where "
            "its adversary attaches and its loss weights are unknown. Here the adversary reads the plotted "
            "features themselves (normalised when the base is a cosine head) and fights the same labels the "
            "base learns, so the two pull in opposite directions: a lambda_max of a few units can undo the "
            "base loss and let classes overlap (DANN's usual 1 is already strong here). The reported loss "
            "includes the adversary's cross-entropy, which rises when the features win, so the total need not "
            "fall steadily."
        ),
        recommended={
            2: {"feature_dim": 2, "classes": [0, 1, 2, 3, 4]},
            3: {"feature_dim": 3, "classes": [0, 1, 2, 3, 4]},
        },
    )
)
class ClassAdversarialLoss(FeatureLoss):
    """L_base + CE(g(GRL(f)), y), the reversal ramped up with DANN's schedule."""

    def __init__(self, num_classes: int, dim: int, base: str = "softmax", lambda_max: float = 0.1,
                 hidden: int = 64) -> None:
        super().__init__(num_classes, dim)
        if base not in ADVERSARY_BASES:
            raise ValueError(f"the class-adversarial head goes on one of {', '.join(ADVERSARY_BASES)}, got {base!r}")
        self.base = build_loss(base, num_classes, dim)
        self.base_name = base
        self.directions_only = get_spec(base).normalized
        self.adversary = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
        self.lambda_max = float(lambda_max)
        self.lambda_adv = 0.0

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        out = self.base(features, labels)
        seen = unit(features) if self.directions_only else features
        adversary_logits = self.adversary(reverse_gradient(seen, self.lambda_adv))
        adversarial = F.cross_entropy(adversary_logits, labels)
        return LossOutput(out.loss + adversarial, out.logits,
                          terms={**out.parts(self.base_name), "adversarial": adversarial}, active=out.active)

    def predict(self, features: torch.Tensor) -> torch.Tensor | None:
        return self.base.predict(features)

    def training_logits(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        return self.base.training_logits(features, labels)

    def class_vectors(self) -> dict[str, torch.Tensor]:
        return self.base.class_vectors()

    def set_progress(self, progress: float) -> dict[str, float]:
        self.lambda_adv = dann_ramp(progress, self.lambda_max)
        return {**self.base.set_progress(progress), "lambda_adv": self.lambda_adv}
