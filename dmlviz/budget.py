"""What a run will take before it starts: bytes in the store and working memory, from its settings alone.

A shared server refuses a run over its budget (``settings.limits()``: ``$DMLVIZ_MAX_RUN_MB``,
``$DMLVIZ_MAX_RUN_MEMORY_MB``) with these numbers, instead of finding out when its disk or memory is gone.

The store's share is counted from what the store keeps: a snapshot holds the probe's features (float32,
probe × d), the class means (C × d) and the loss's class vectors; thinning keeps the first, the latest,
the final, every epoch end and formation snapshot, and at most ``KEEP_TICKS + THIN_EVERY`` clock ticks;
the curves keep one row per metric for *every* snapshot taken. Working memory is counted from the
tensors a run holds: the dataset as uint8 on the device, the model with its gradients and optimizer
state, a training batch's activations (measured by running the model once on the ``meta`` device, so
no memory is used to find out), the whole test set's features at the final snapshot, and the probe's
distance matrix that the geometry numbers come from. Both are upper bounds of the run's own data; the
worker's libraries (torch and the rest) come on top.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from dmlviz.config import RunConfig
from dmlviz.data import CUSTOM_PREFIX, DATASETS
from dmlviz.engine import FORMATION_GROWTH, FORMATION_SPAN, resolve_device
from dmlviz.models import build_model, resolve_model_name
from dmlviz.optim import optimizer_spec
from dmlviz.regions import force_bytes, map_bytes
from dmlviz.store import KEEP_TICKS, THIN_EVERY

MB = 1_000_000
FLOAT = 4  # bytes of a float32
# Measured on stored runs (tests/test_budget.py): a snapshot's row without its arrays (metrics JSON,
# .npy/.npz headers, SQLite's record and index) and a metric's row in the curves, rounded up.
SNAPSHOT_OVERHEAD = 4_000
SERIES_ROW = 80
SERIES_PER_SNAPSHOT = 30  # metrics recorded per snapshot, at most (schedules and unseen classes included)
# A custom dataset's size is only known once its files are read: the budget assumes the largest the
# loader accepts in images of 32 × 32 × 3 (dmlviz.data's limits refuse larger data before decoding it).
CUSTOM_IMAGES = 100_000
CUSTOM_SHAPE = (3, 32)
EMBED_SLICE = 4096  # images embedded at once by the final snapshot (engine.Trainer.snapshot)


@dataclass(frozen=True)
class RunBudget:
    """A run's footprint, counted from its settings (upper bounds, in bytes)."""

    snapshot_bytes: int  # one stored snapshot
    snapshots_kept: int  # the most snapshots the store keeps of the run
    series_bytes: int  # the curves: a row per metric for every snapshot taken
    memory_bytes: int  # the run's tensors at their peak

    @property
    def store_bytes(self) -> int:
        return self.snapshot_bytes * self.snapshots_kept + self.series_bytes

    def describe_store(self) -> str:
        return (f"about {_mb(self.store_bytes)} in the run store ({_mb(self.snapshot_bytes)} a snapshot × up to "
                f"{self.snapshots_kept:,} kept, and {_mb(self.series_bytes)} of curves)")

    def describe_memory(self) -> str:
        return f"about {_mb(self.memory_bytes)} of memory"


def estimate(config: RunConfig) -> RunBudget:
    """The budget of a run with these settings on its dataset (a custom one: the largest accepted)."""
    info = DATASETS.get(config.dataset)
    if info is not None:
        channels, size, train, test = info.channels, info.image_size, info.train_images, info.test_images
        classes = len(set(config.classes)) if config.classes is not None else len(info.class_names)
    else:
        assert config.dataset.startswith(CUSTOM_PREFIX), config.dataset
        (channels, size), train, test = CUSTOM_SHAPE, CUSTOM_IMAGES, CUSTOM_IMAGES
        classes = len(set(config.classes)) if config.classes is not None else 1000
    train = min(train, config.train_size or train)
    probe = min(config.probe_size, test)
    d = config.feature_dim
    steps = config.steps or max(1, math.ceil(config.epochs * max(1, train // max(1, config.batch_size))))
    epochs = math.ceil(steps * config.batch_size / max(1, train))

    vectors = classes * d * FLOAT * 2  # class means, and the loss's class vectors (weights, centers, proxies)
    decision = map_bytes(classes) if d in (2, 3) else 0  # a decision map, at most (it is compressed)
    forces = force_bytes(d) if d <= 3 else 0
    snapshot_bytes = probe * d * FLOAT + vectors + decision + forces + SNAPSHOT_OVERHEAD
    if config.snapshot_steps:
        taken = steps // config.snapshot_steps + epochs + 2
        kept = min(taken, KEEP_TICKS + THIN_EVERY + epochs + 2)
    else:
        taken = steps + 2  # at most one a step, whatever the clock
        kept = min(taken, formation_count(steps) + KEEP_TICKS + THIN_EVERY + epochs + 2)
    series_bytes = taken * SERIES_PER_SNAPSHOT * SERIES_ROW

    model = _model(config, channels, size)
    parameters = sum(p.numel() for p in model.parameters()) + classes * d * 2  # the loss's own, roughly
    weights = parameters * FLOAT * (2 + optimizer_spec(config.optimizer).state_copies)  # + gradients + state
    outputs = _outputs(model, channels, size)
    activations = sum(outputs) + channels * size * size  # the input batch too
    training = config.batch_size * activations * FLOAT * 2  # kept for backward, and their gradients
    # Without autograd a layer's input and output are alive at once.
    embedding = min(EMBED_SLICE, test) * max(outputs) * FLOAT * 2
    data = (train + test) * channels * size * size  # uint8 on the device
    features = (test + 3 * probe) * d * FLOAT  # the final snapshot's test set; the probe's working copies
    distances = 3 * probe * probe * FLOAT  # the geometry's distance matrix, sorted and masked copies
    memory = data + weights + max(training, embedding) + features + distances
    return RunBudget(snapshot_bytes, kept, series_bytes, memory)


def formation_count(steps: int) -> int:
    """How many formation snapshots :func:`dmlviz.engine.formation_due` asks for in a run of ``steps``."""
    count, last = 0, 0
    while True:
        last += max(1, math.ceil(min(FORMATION_GROWTH * last, steps / FORMATION_SPAN)))
        if last > steps:
            return count
        count += 1


def problems(config: RunConfig, max_store_mb: float | None, max_memory_mb: float | None) -> list[str]:
    """What a server allowing ``max_store_mb`` of store and ``max_memory_mb`` of memory a run refuses."""
    if max_store_mb is None and max_memory_mb is None:
        return []
    budget = estimate(config)
    hint = "fewer probe images, a narrower feature_dim, a shorter run or a larger snapshot_steps"
    errors = []
    if max_store_mb is not None and budget.store_bytes > max_store_mb * MB:
        errors.append(f"this run would take {budget.describe_store()}; this server allows {_number(max_store_mb)} MB "
                      f"a run: choose {hint}")
    if max_memory_mb is not None and budget.memory_bytes > max_memory_mb * MB:
        errors.append(f"this run would need {budget.describe_memory()}; this server allows "
                      f"{_number(max_memory_mb)} MB a run: choose fewer probe images, a smaller batch_size or "
                      "a narrower feature_dim")
    return errors


def _model(config: RunConfig, channels: int, size: int) -> nn.Module:
    """The run's backbone on the ``meta`` device: shapes and parameter counts without memory."""
    feature_spec = config.feature_spec()
    try:
        device = resolve_device(config.device)  # "auto" means a network of its own on a GPU
    except RuntimeError:  # a device this machine lacks: the run will say so when it starts
        device = torch.device("cpu")
    name = resolve_model_name(config.model, device, channels)
    with torch.device("meta"):
        return build_model(name, channels, size, config.feature_dim,
                           feature_activation=not feature_spec.normalized, batch_norm=config.norm == "batch")


def _outputs(model: nn.Module, channels: int, size: int) -> list[int]:
    """The number of values each leaf module outputs for one image (run on the meta device)."""
    sizes: list[int] = []
    hooks = [module.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel()))
             for module in model.modules() if not list(module.children())]
    try:
        with torch.no_grad():
            model(torch.empty(1, channels, size, size, device="meta"))
    finally:
        for hook in hooks:
            hook.remove()
    return sizes


def _mb(count: int) -> str:
    if count < MB:
        return f"{count / 1000:,.0f} kB"
    return f"{count / MB:,.1f} MB" if count < 10 * MB else f"{count / MB:,.0f} MB"


def _number(value: float) -> str:
    return f"{value:g}"
