"""The one registry of losses and the one factory that builds them (timm-style decorators)."""

from __future__ import annotations

import difflib
from collections.abc import Callable

from dmlviz.losses.base import FeatureLoss, LossSpec
from dmlviz.registry import add_once

_REGISTRY: dict[str, LossSpec] = {}


class UnknownLoss(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def register(spec: LossSpec) -> Callable[[type[FeatureLoss]], type[FeatureLoss]]:
    """Class decorator: ``@register(LossSpec(...))`` adds the loss to the registry."""

    def add(cls: type[FeatureLoss]) -> type[FeatureLoss]:
        add_once(_REGISTRY, "loss", spec.name, LossSpec(**{**spec.__dict__, "factory": cls}))
        return cls

    return add


def loss_names() -> list[str]:
    return list(_REGISTRY)


def get_spec(name: str) -> LossSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, _REGISTRY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownLoss(f"unknown loss {name!r}{hint}; known losses: {', '.join(_REGISTRY)}") from None


def build_loss(name: str, num_classes: int, dim: int, **hp: object) -> FeatureLoss:
    """Build a registered loss; missing hyperparameters take their defaults."""
    spec = get_spec(name)
    unknown = set(hp) - {p.name for p in spec.hparams}
    if unknown:
        raise ValueError(f"{spec.display_name} has no hyperparameter {', '.join(sorted(unknown))}")
    assert spec.factory is not None
    return spec.factory(num_classes, dim, **{**spec.defaults(), **hp})
