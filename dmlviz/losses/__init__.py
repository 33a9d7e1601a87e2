"""The loss registry: ``build_loss(name, num_classes, dim, **hp)`` and each loss's spec.

Importing a family's module registers its losses; the order here is the order the app lists them.
"""

# isort: off
from dmlviz.losses import softmax, cosine, center, center_based, pair, osm_caa, proxy, wider  # noqa: F401
# isort: on
from dmlviz.losses.base import FAMILIES, FeatureLoss, LossOutput, LossSpec, Paper, Param
from dmlviz.losses.registry import UnknownLoss, build_loss, get_spec, loss_names, register

__all__ = [
    "FAMILIES", "FeatureLoss", "Param", "LossOutput", "LossSpec", "Paper", "UnknownLoss",
    "build_loss", "get_spec", "loss_names", "register",
]
