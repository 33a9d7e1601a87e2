"""The target logit of each margin loss against the angle θ to its class weight, for the Learn page.

The curves of the ArcFace paper's figure (target logit against θ for softmax, SphereFace, CosFace,
ArcFace; ``figures.target_logit_figure`` draws them), read from the losses' own code rather than
re-derived: :func:`target_logit` builds the loss, lays its class weights and a probe feature on the unit
circle and reads the target entry of ``training_logits``, the logits its cross-entropy sees. A change to
a loss therefore shows in its curve. Nothing here imports Streamlit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from dmlviz.losses import FeatureLoss, Param, build_loss, get_spec

#: The losses whose target logit is a function of θ alone once the unit lengths are fixed: the cosine
#: heads (s·ψ(cos θ)) and the multiple-angle heads (‖W‖‖f‖ times a mix of cos θ and ψ(θ), with
#: ‖W‖ = ‖f‖ = 1 here). AdaCos is NormFace with its own scale, so its curve is cos θ: it stays to
#: show that it has no margin. Left out: the plain softmax (its logit also depends on the bias and on
#: norms that nothing fixes), ring loss and the class-adversarial head (they run a base loss at its
#: defaults, whose curve is already here), and the losses without a classifier.
MARGIN_LOSSES: tuple[str, ...] = ("normface", "lsoftmax", "sphereface", "cosface", "arcface", "elasticface-arc",
                                  "elasticface-cos", "adacos", "cam-softmax", "intraloss")

#: θ from 0 to π in half-degree steps: fine enough that ArcFace's step at θ = π − m shows as a jump.
THETAS = np.linspace(0.0, np.pi, 361)

#: Hyperparameters that do not move the curve at the end of a run, the state :func:`target_logit` draws:
#: ramps and schedules are over (warm-up, Cam-Softmax's c_start and c_length; λ's decay is left in, as
#: it sets λ at the end), ElasticFace's spread is unused at evaluation (the mean margin applies),
#: AdaCos's dynamic scale changes only while training, IntraLoss's λ and γ weigh a term outside the logits.
_NOT_IN_CURVE = frozenset({"warmup", "c_start", "c_length", "std", "dynamic", "lambda", "gamma"})

# AdaCos's scale √2·ln(C−1) depends on the number of classes and is 0 for two: build every head with
# MNIST's ten, of which only class 0's weight is read.
_CLASSES = 10


def curve_params(name: str) -> tuple[Param, ...]:
    """The hyperparameters of ``name`` that change its target-logit curve: the ones the Learn page offers."""
    return tuple(hp for hp in get_spec(name).hparams if hp.name not in _NOT_IN_CURVE)


def preset_params(name: str, dim: int | None = None) -> dict[str, Any]:
    """The hyperparameters of ``name``: its defaults, or with ``dim`` the ones its ``dim``-D preset trains with."""
    spec = get_spec(name)
    return {**spec.defaults(), **(spec.recommended.get(dim, {}).get("loss_params", {}) if dim else {})}


def _head(name: str, progress: float, hp: Mapping[str, Any]) -> FeatureLoss:
    """The loss ``name`` in float64 with class 0's weight e0 and the others e1, its schedules at ``progress``,
    in eval mode (ElasticFace then uses its mean margin and AdaCos keeps its scale)."""
    if name not in MARGIN_LOSSES:
        raise ValueError(f"{name!r} has no target logit against θ; these do: {', '.join(MARGIN_LOSSES)}")
    # ElasticFace seeds its margin draws from torch's global generator: drawing a curve must not move it.
    with torch.random.fork_rng(devices=[]):
        loss = build_loss(name, _CLASSES, 2, **hp).double().eval()
    weights = torch.zeros(_CLASSES, 2, dtype=torch.float64)
    weights[0, 0] = weights[1:, 1] = 1.0  # unit weights: ‖W_y‖ = 1 for the multiple-angle heads too
    with torch.no_grad():
        loss.weight.copy_(weights)
    loss.set_progress(progress)
    return loss


def _scale(loss: FeatureLoss) -> float:
    """The loss's scale s; 1 for the multiple-angle heads, whose ‖W‖‖f‖ is 1 here."""
    scale = getattr(loss, "scale", None)
    return 1.0 if scale is None else float(scale)


def logit_scale(name: str, **hp: Any) -> float:
    """The scale s that multiplies the cosines of ``name`` with hyperparameters ``hp`` (1 where it has none)."""
    return _scale(_head(name, 1.0, hp))


def target_logit(name: str, thetas: np.ndarray, *, progress: float = 1.0, per_scale: bool = True,
                 **hp: Any) -> np.ndarray:
    """The target logit of loss ``name`` for a unit feature at each angle θ (radians) from its class weight.

    It is the target entry of the loss's own ``training_logits``, margins applied, with unit class
    weights and unit features (so ‖W‖‖f‖ = 1 for L-Softmax and SphereFace), schedules at ``progress``
    (1: the end of the run, warm-ups done and λ at its end value) and in eval mode. ``hp`` overrides
    the defaults. ``per_scale``: divided by the scale s, so that curves of losses with different
    scales compare, and cos θ is NormFace's curve; off, the logit as the softmax sees it.
    """
    loss = _head(name, progress, hp)
    thetas = torch.as_tensor(np.asarray(thetas, dtype=float))
    features = torch.stack([thetas.cos(), thetas.sin()], dim=1)
    with torch.no_grad():
        logits = loss.training_logits(features, torch.zeros(len(thetas), dtype=torch.long))
    target = logits[:, 0].numpy()
    return target / _scale(loss) if per_scale else target
