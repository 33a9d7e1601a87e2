"""The loss registry: ``build_loss(name, num_classes, dim, **hp)`` and each loss's spec."""

from dmlviz.losses import center, softmax  # noqa: F401  (importing registers the losses)
from dmlviz.losses.base import FeatureLoss, HParam, LossOutput, LossSpec, Paper
from dmlviz.losses.registry import UnknownLoss, build_loss, get_spec, loss_names, register

__all__ = [
    "FeatureLoss", "HParam", "LossOutput", "LossSpec", "Paper", "UnknownLoss",
    "build_loss", "get_spec", "loss_names", "register",
]
