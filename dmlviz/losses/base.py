"""What every loss in the registry is: a spec (for the UI and validation) and a module (for training)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from dmlviz.params import Param

Family = Literal["softmax-margin", "center", "pair", "proxy", "wider-circle"]
Learns = Literal["weights", "centers", "proxies", "vertices", "none"]

#: Smallest feature norm that :func:`unit` divides by. d(f/‖f‖)/df = (I − f̂f̂ᵀ)/‖f‖, so a floor of
#: 1e-6 caps the gradient of a feature's direction at 1e6 × the gradient it receives, where
#: F.normalize's eps of 1e-12 lets one all-zero feature send 1e12 into the network's weights. Above the
#: floor nothing changes: a feature is a sum of float32 products of O(1) activations, whose rounding
#: alone is about 1e-7 per term, so a feature shorter than 1e-6 has no direction to keep anyway.
NORM_FLOOR = 1e-6

#: The families in the order the app lists them, with the titles it shows.
FAMILIES: dict[str, str] = {
    "softmax-margin": "Softmax and margin heads",
    "center": "Center-based",
    "pair": "Pair-based",
    "proxy": "Proxy-based",
    "wider-circle": "From the seed papers' wider circle",
}


# Labels as a boolean N × C mask rather than indices. On CUDA, gather's backward and scatter, index_add_
# and index_put_ go through a range check that reads the indices back on the host when deterministic
# algorithms are on (the engine's CUDA setting), and bincount reads the labels' range: each stalls the
# step. A mask of C ≤ 100 columns costs nothing and never waits; the picks and puts below are exact.
def class_mask(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``mask[i, j]``: whether sample i is of class j."""
    return labels[:, None] == torch.arange(num_classes, device=labels.device)


def pick(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each row's entry at its class (``values.gather(1, labels[:, None]).squeeze(1)``)."""
    return torch.where(mask, values, 0).sum(1)


def put(values: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``values`` with each row's entry at its class replaced by ``target`` (``values.scatter(1, labels, …)``)."""
    return torch.where(mask, target[:, None], values)


def rows_of(table: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each sample's row of a per-class ``table`` (``table[labels]``)."""
    return mask.to(table.dtype) @ table


def class_sums(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per class, the sum of its samples' ``values`` (``zeros.index_add_(0, labels, values)``)."""
    return mask.T.to(values.dtype) @ values


def unit(features: torch.Tensor) -> torch.Tensor:
    """Each row divided by its norm, floored at :data:`NORM_FLOOR` (a zero row stays zero).

    The same operations as ``F.normalize(features, dim=1)`` with a larger eps: identical for rows
    longer than the floor, and with a gradient bounded by 1 / NORM_FLOOR for every row.
    """
    return features / features.norm(dim=1, keepdim=True).clamp_min(NORM_FLOOR)


@dataclass(frozen=True)
class Paper:
    authors: str
    title: str
    venue: str
    year: int
    arxiv: str = ""


@dataclass(frozen=True)
class LossSpec:
    """A registry entry: everything the app, the CLI and the docs know about a loss.

    ``normalized``: the loss reads only feature directions (plot them on the circle / sphere).
    ``learns``: which per-class vectors it trains (or fixes), drawn as directions when
    ``normalized`` and as points otherwise. ``needs_pairs``: batches must hold at least two
    samples of each class they contain. ``recommended`` maps a feature dim (2, 3) to the
    settings that make it train well there, in ``RunConfig.from_dict``'s form: run settings by
    name, the loss's own hyperparameters by name under ``loss_params``. ``reconstructed``: the
    formula is our reading of the paper's abstract, not the paper's own, and the app must say so.
    ``our_design``: no paper gives the formula; the loss is assembled from published parts (said in the app too).
    """

    name: str
    display_name: str
    family: Family
    description: str
    hparams: tuple[Param, ...]
    normalized: bool
    learns: Learns
    paper: Paper | None = None
    formula: str = ""
    implementation: str = "dmlviz"
    reconstructed: bool = False
    our_design: bool = False
    dims: str = "any"
    pitfalls: str = ""
    recommended: dict[int, dict[str, Any]] = field(default_factory=dict)
    needs_pairs: bool = False
    factory: type[FeatureLoss] | None = field(default=None, compare=False, repr=False)

    def hparam(self, name: str) -> Param:
        for hp in self.hparams:
            if hp.name == name:
                return hp
        raise KeyError(name)

    def defaults(self) -> dict[str, float | int | bool | str]:
        return {hp.name: hp.default for hp in self.hparams}


@dataclass
class LossOutput:
    """The loss value and, for losses with a classifier head, the logits used for accuracy.

    ``terms``: the loss's named parts, each already multiplied by its weight, so that they add up to
    ``loss``; empty for a loss of one part. ``active``: for a loss that mines or hinges, the share
    (0 to 1) of the batch's pairs or triplets that contribute a non-zero loss, by what they are
    ("negative pairs", "triplets"). Both hold device tensors, read only when the engine records them.
    """

    loss: torch.Tensor
    logits: torch.Tensor | None = None
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    active: dict[str, torch.Tensor] = field(default_factory=dict)

    def parts(self, name: str) -> dict[str, torch.Tensor]:
        """The terms, or the whole loss as the one term ``name`` when it has none (for a loss built on it)."""
        return self.terms or {name: self.loss}


class FeatureLoss(nn.Module):
    """Base class of every loss: it owns what it learns and reports it for drawing.

    Subclasses implement :meth:`forward`; they override :meth:`class_vectors` when they learn
    per-class vectors, and :meth:`set_progress` when a hyperparameter follows a schedule.
    """

    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.dim = dim

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:  # pragma: no cover
        raise NotImplementedError

    def class_vectors(self) -> dict[str, torch.Tensor]:
        """The per-class vectors the loss learns (C × d each), keyed by what they are."""
        return {}

    def predict(self, features: torch.Tensor) -> torch.Tensor | None:
        """Class scores for accuracy, or None when the loss has no classifier."""
        return None

    def training_logits(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        """The logits its cross-entropy sees for samples of classes ``labels``, margins applied: where they
        pick another class than ``labels``, a sample still loses (the margin band of ``dmlviz.regions``).
        None for a loss without a margin."""
        return None

    def set_progress(self, progress: float) -> dict[str, float | torch.Tensor]:
        """Advance schedules to ``progress`` (0 at the start of a run, 1 at its end).

        Returns the current value of every scheduled hyperparameter, for the snapshot; a learned one (ring
        loss's radius, AdaCos's dynamic scale) as a device tensor, which the snapshot reads, not every step.
        """
        return {}
