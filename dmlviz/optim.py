"""The optimizers and learning-rate schedules a run can name: one registry each, where ``RunConfig``'s
choices come from and where the engine builds them.

An optimizer is built from parameter groups (the engine gives the loss's parameters their own learning
rate), the peak learning rate and the momentum. A schedule is the factor of the peak learning rate at a
point of the run, ``progress`` = step / total steps in [0, 1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from dmlviz.registry import add_once

OptimizerBuilder = Callable[[list[dict[str, Any]], float, float], torch.optim.Optimizer]
ScheduleFactor = Callable[[float], float]


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer a run can name. ``state_copies``: the state tensors it keeps per parameter (at most),
    which a run's memory budget counts."""

    name: str
    build: OptimizerBuilder
    state_copies: int


@dataclass(frozen=True)
class ScheduleSpec:
    """A learning-rate schedule a run can name, with the words ``RunConfig``'s help gives it."""

    name: str
    help: str
    factor: ScheduleFactor


_OPTIMIZERS: dict[str, OptimizerSpec] = {}
_SCHEDULES: dict[str, ScheduleSpec] = {}


def register_optimizer(name: str, state_copies: int) -> Callable[[OptimizerBuilder], OptimizerBuilder]:
    """Function decorator: ``@register_optimizer("name", state_copies)`` on a builder
    ``(groups, lr, momentum) → torch.optim.Optimizer`` adds the optimizer."""

    def add(build: OptimizerBuilder) -> OptimizerBuilder:
        add_once(_OPTIMIZERS, "optimizer", name, OptimizerSpec(name, build, state_copies))
        return build

    return add


def register_schedule(name: str, help: str = "") -> Callable[[ScheduleFactor], ScheduleFactor]:
    """Function decorator: ``@register_schedule("name", "what it does")`` on ``factor(progress)`` adds the
    schedule."""

    def add(factor: ScheduleFactor) -> ScheduleFactor:
        add_once(_SCHEDULES, "schedule", name, ScheduleSpec(name, help, factor))
        return factor

    return add


def optimizer_spec(name: str) -> OptimizerSpec:
    return _OPTIMIZERS[name]


def optimizer_names() -> tuple[str, ...]:
    return tuple(_OPTIMIZERS)


def schedule_specs() -> list[ScheduleSpec]:
    return list(_SCHEDULES.values())


def schedule_names() -> tuple[str, ...]:
    return tuple(_SCHEDULES)


def build_optimizer(name: str, groups: list[dict[str, Any]], lr: float, momentum: float) -> torch.optim.Optimizer:
    return _OPTIMIZERS[name].build(groups, lr, momentum)


def lr_factor(schedule: str, progress: float) -> float:
    """The factor of the peak learning rate at ``progress`` (step / total steps) under ``schedule``."""
    return _SCHEDULES[schedule].factor(progress)


@register_optimizer("sgd", state_copies=1)
def _sgd(groups: list[dict[str, Any]], lr: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)


@register_optimizer("adam", state_copies=2)
def _adam(groups: list[dict[str, Any]], lr: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(groups, lr=lr)


@register_optimizer("adamw", state_copies=2)
def _adamw(groups: list[dict[str, Any]], lr: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.AdamW(groups, lr=lr)


@register_optimizer("rmsprop", state_copies=1)
def _rmsprop(groups: list[dict[str, Any]], lr: float, momentum: float) -> torch.optim.Optimizer:
    return torch.optim.RMSprop(groups, lr=lr, momentum=momentum)


@register_schedule("constant")
def _constant(progress: float) -> float:
    return 1.0


@register_schedule("step", "÷10 at half and three quarters")
def _step(progress: float) -> float:
    return 1.0 if progress < 0.5 else 0.1 if progress < 0.75 else 0.01


@register_schedule("cosine", "from lr down to 0 at the end")
def _cosine(progress: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * progress))


ONECYCLE_WARMUP = 0.3  # the share of the run over which onecycle rises from 4 % of lr to lr


@register_schedule("onecycle", "a warm-up over the first 30 %, then cosine")
def _onecycle(progress: float) -> float:
    if progress < ONECYCLE_WARMUP:
        return 0.04 + 0.96 * progress / ONECYCLE_WARMUP
    return 0.5 * (1 + math.cos(math.pi * (progress - ONECYCLE_WARMUP) / (1 - ONECYCLE_WARMUP)))

