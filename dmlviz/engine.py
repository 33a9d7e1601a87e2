"""The training loop of one run: steps, schedules, evaluation and snapshots.

Pure PyTorch: no UI and no I/O. What a run produces goes to a :class:`RunSink`; who may go on
is asked of a :class:`Control` before every step, so pause, single-step and stop act within one
step whether the run lives in a worker process or in the CLI.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from statistics import median
from typing import Any, Literal, Protocol

import numpy as np
import torch

from dmlviz import geometry, settings
from dmlviz.config import RunConfig
from dmlviz.data import TrainingData, prepare
from dmlviz.losses import FeatureLoss, build_loss, get_spec
from dmlviz.losses.base import class_mask, class_sums
from dmlviz.metrics import active_metric, schedule_metric, term_metric
from dmlviz.models import build_model, resolve_model_name
from dmlviz.optim import build_optimizer, lr_factor
from dmlviz.regions import decision_map, force_sample
from dmlviz.snapshot import Snapshot
from dmlviz.status import RunStatus

# "pause": the run has just been paused; the engine records where it stands, then asks again.
Action = Literal["run", "step", "stop", "pause"]
Outcome = Literal[RunStatus.FINISHED, RunStatus.STOPPED, RunStatus.DIVERGED]  # how a run ended, as its status

EVAL_BATCH = 256  # forward passes are fastest at 128–256 images on a CPU (cache-sized activations)
EVAL_BATCH_GPU = 4096  # a GPU wants its probe (2,000 images) in one pass
# While a page watches a run, live snapshots may take this share of the time, so that its figures move
# at 1 / snapshot_every (2 Hz by default) even on a 2-core CPU; unwatched, the run's own budget holds.
WATCHED_SNAPSHOT_BUDGET = 0.5
PAIR_SAMPLES = 4  # samples per class in each batch for pair losses (the usual m of m-per-class sampling)


class Control(Protocol):
    def gate(self) -> Action:
        """Called before every step; blocks while the run is paused, after returning "pause" once
        when it becomes paused (so the engine can record the step it stopped at)."""

    def watched(self) -> bool:
        """Whether someone watches the run live right now (a page polling it)."""


class RunSink(Protocol):
    def started(self, info: dict[str, Any]) -> None:
        """Run-level facts, once: probe labels and indices, class names, resolved model and device."""

    def snapshot(self, snapshot: Snapshot) -> None: ...


class FreeRunning:
    """A control that never pauses: the CLI's."""

    def gate(self) -> Action:
        return "run"

    def watched(self) -> bool:
        return False


@dataclass
class RunResult:
    outcome: Outcome
    step: int
    error: str | None = None


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; asking for an absent device is an error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device cuda was asked for, but this machine has no usable CUDA GPU; use auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("device mps was asked for, but Apple MPS is not available here; use auto or cpu")
    return device


def bf16_native(device: torch.device) -> bool:
    """Whether bf16 autocast runs natively (and so pays) on this device: on CUDA, tensor cores with bf16
    (compute capability 8.0, Ampere, or later) of the run's own GPU; ``torch.cuda.is_bf16_supported()`` also
    counts the emulation of older GPUs (V100, T4), which is slower than float32."""
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags
    return False


def geometry_device(device: torch.device) -> torch.device:
    """Where a snapshot's probe geometry is computed: on the run's device, but on the CPU for Apple MPS,
    which has no float64 for the geometry's (and pytorch-metric-learning's MAP@R) sums; the probe,
    2,000 × d, is small."""
    return torch.device("cpu") if device.type == "mps" else device


def _optimizer(config: RunConfig, model: torch.nn.Module, loss_fn: FeatureLoss) -> torch.optim.Optimizer:
    groups = [{"params": list(model.parameters()), "weight_decay": config.weight_decay}]
    loss_params = [p for p in loss_fn.parameters() if p.requires_grad]
    if loss_params:
        groups.append({"params": loss_params, "lr": config.loss_lr or config.lr, "weight_decay": 0.0})
    return build_optimizer(config.optimizer, groups, config.lr, config.momentum)


class Trainer:
    """Model, loss, optimizer and data of one run, and the operations on them."""

    def __init__(self, config: RunConfig, data: TrainingData, device: torch.device) -> None:
        self.config = config
        self.data = data
        self.device = device
        spec = get_spec(config.loss)
        feature_spec = config.feature_spec()
        self.model_name = resolve_model_name(config.model, device, data.channels)
        torch.manual_seed(config.seed)
        # Cosine heads read angles only; a PReLU in front of them would fold the feature space.
        self.model = build_model(self.model_name, data.channels, data.image_size, config.feature_dim,
                                 feature_activation=not feature_spec.normalized,
                                 batch_norm=config.norm == "batch")
        self.loss_fn = build_loss(config.loss, data.num_train_classes, config.feature_dim, **config.loss_hparams())
        # channels_last pays everywhere with torch 2.14 on a CPU: its NCHW max-pooling is slow, so even
        # 1-channel MNIST trains 1.2–1.4× and embeds the probe set 1.5–2× faster (bench/engine.py).
        self.memory_format = torch.channels_last
        self.model.to(device, memory_format=self.memory_format)
        self.loss_fn.to(device)
        precision = config.precision
        self.bf16 = precision == "bf16" or (precision == "auto" and bf16_native(device))
        self.generator = torch.Generator().manual_seed(config.seed)
        # Augmentation's random numbers, drawn on the device (no per-step copy to a GPU).
        self.augment_generator = torch.Generator(device).manual_seed(config.seed)
        self.per_class = PAIR_SAMPLES if spec.needs_pairs or config.sampler == "balanced" else 1
        self.normalized = feature_spec.normalized
        counts = torch.bincount(data.y_train.cpu(), minlength=data.num_train_classes)
        n = int((counts // self.per_class * self.per_class).sum())
        self.batch_size = max(self.per_class, min(config.batch_size, n) // self.per_class * self.per_class)
        self.steps_per_epoch = max(1, n // self.batch_size)
        self.total_steps = config.steps or max(1, math.ceil(config.epochs * self.steps_per_epoch))
        self.step = 0
        self.lr = config.lr * lr_factor(config.schedule, 0.0)
        self.scheduled: dict[str, float | torch.Tensor] = {}  # a learned one stays on the device until read
        self._order = data.epoch_order(self.generator, self.per_class)
        self.backbone_hash = backbone_hash(self.model)
        # Running sums on the device, read only at snapshots: no host sync per step on a GPU.
        self._loss_sum = torch.zeros((), device=device)
        # The loss's terms and active shares by metric name: their sums and the steps that reported them.
        self._part_sums: dict[str, torch.Tensor] = {}
        self._part_steps: dict[str, int] = {}
        self._correct = torch.zeros((), device=device, dtype=torch.long)
        self._seen = 0
        self._classified = 0
        self._steps_since = 0
        # Losses without a classifier are scored by the nearest mean of recent training features.
        self.has_classifier = self.loss_fn.predict(torch.zeros(1, config.feature_dim, device=device)) is not None
        self._class_sums = torch.zeros(data.num_train_classes, config.feature_dim, device=device)
        self._class_counts = torch.zeros(data.num_train_classes, device=device)
        self._class_means: torch.Tensor | None = None

    @functools.cached_property
    def optimizer(self) -> torch.optim.Optimizer:
        """Built on the first step: creating a torch optimizer imports torch._dynamo (about a
        second), which the step-0 snapshot need not wait for."""
        optimizer = _optimizer(self.config, self.model, self.loss_fn)
        for group in optimizer.param_groups:
            group["base_lr"] = group["lr"]
        return optimizer

    @property
    def epoch(self) -> float:
        return self.step / self.steps_per_epoch

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        with self._autocast():
            return self.model(images.contiguous(memory_format=self.memory_format)).float()

    def train_step(self) -> torch.Tensor:
        """One optimisation step on the next batch; returns the loss (a device tensor)."""
        progress = self.step / self.total_steps
        factor = lr_factor(self.config.schedule, progress)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor
        self.lr = self.config.lr * factor
        # Recorded as schedules (``schedule.margin``), so no reader mistakes them for measurements.
        self.scheduled = {schedule_metric(name): value for name, value in self.loss_fn.set_progress(progress).items()}
        position = self.step % self.steps_per_epoch
        if position == 0 and self.step > 0:  # the first epoch's order is drawn with the trainer
            self._order = self.data.epoch_order(self.generator, self.per_class)
        index = self._order[position * self.batch_size:(position + 1) * self.batch_size]
        images, labels = self.data.train_batch(index, self.augment_generator)
        self.model.train()
        self.loss_fn.train()
        features = self._features(images)
        out = self.loss_fn(features, labels)
        if not self.has_classifier:
            mask = class_mask(labels, len(self._class_counts))  # no index_add_ or bincount: they wait for a GPU
            self._class_sums += class_sums(self._directions(features.detach()), mask)
            self._class_counts += mask.sum(0)
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        self.optimizer.step()
        self.step += 1
        loss = out.loss.detach()
        self._loss_sum += loss
        self._add_parts({**{term_metric(name): value for name, value in out.terms.items()},
                         **{active_metric(name): value for name, value in out.active.items()}})
        if out.logits is not None:
            self._correct += (out.logits.detach().argmax(1) == labels).sum()
            self._classified += len(labels)
        self._seen += len(labels)
        self._steps_since += 1
        return loss

    @torch.no_grad()
    def _add_parts(self, parts: dict[str, torch.Tensor]) -> None:
        """Add a step's terms and active shares to their running sums, on the device."""
        for name, value in parts.items():
            if name in self._part_sums:
                self._part_sums[name] += value.detach().float()
            else:
                self._part_sums[name] = value.detach().float().clone()
            self._part_steps[name] = self._part_steps.get(name, 0) + 1

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Features of already-normalised images, in evaluation mode, batch by batch."""
        self.model.eval()
        size = EVAL_BATCH if self.device.type == "cpu" else EVAL_BATCH_GPU
        parts = [self._features(images[i:i + size]) for i in range(0, len(images), size)]
        return torch.cat(parts) if parts else torch.empty(0, self.config.feature_dim, device=self.device)

    def _directions(self, features: torch.Tensor) -> torch.Tensor:
        """What nearest-class-mean compares: directions for normalised losses, raw features otherwise."""
        return torch.nn.functional.normalize(features, dim=1) if self.normalized else features

    @torch.no_grad()
    def scores(self, features: torch.Tensor) -> torch.Tensor | None:
        """Training-class scores of features, as accuracy is measured: the loss's classifier, or the nearest
        class mean of the training features seen up to the previous snapshot (None before there are any)."""
        self.loss_fn.eval()
        if self.has_classifier:
            return self.loss_fn.predict(features)
        if self._class_means is None:
            return None
        return -torch.cdist(self._directions(features), self._class_means)

    @torch.no_grad()
    def accuracy(self, features: torch.Tensor, labels: torch.Tensor) -> float | None:
        """Accuracy on features whose labels are training-class indices (see :meth:`scores`)."""
        scores = self.scores(features) if len(labels) else None
        return None if scores is None else (scores.argmax(1) == labels).float().mean().item()

    def _update_class_means(self) -> None:
        seen = self._class_counts > 0
        if seen.any():
            means = self._class_sums / self._class_counts.clamp(min=1).unsqueeze(1)
            # A class absent since the last snapshot keeps its previous mean (or none at all).
            previous = self._class_means if self._class_means is not None else torch.full_like(means, torch.inf)
            self._class_means = torch.where(seen.unsqueeze(1), means, previous)
        self._class_sums.zero_()
        self._class_counts.zero_()

    @torch.no_grad()
    def snapshot(self, kind: str, elapsed: float, interval: float) -> Snapshot:
        """Probe features, class vectors and means, and the numbers since the last snapshot.

        The final snapshot embeds the whole test set for ``test_acc`` and takes the probe's rows
        from it; the others embed only the probe set, which keeps them cheap enough to take live.
        """
        data = self.data
        if not self.has_classifier:
            self._update_class_means()
        metrics: dict[str, float] = {"lr": self.lr, **{name: float(value) for name, value in self.scheduled.items()}}
        if kind == "final":
            # In slices, so a large test set is never normalised into float all at once.
            test_features = torch.cat([self.embed(data.normalize(data.x_test[i:i + 4096]))
                                       for i in range(0, len(data.x_test), 4096)])
            features = test_features[data.probe_index]
            test_labels = data.to_train_label[data.y_test]
            test_acc = self.accuracy(test_features[test_labels >= 0], test_labels[test_labels >= 0])
            if test_acc is not None:
                metrics["test_acc"] = test_acc
        else:
            features = self.embed(data.probe_batch())
        num_classes = data.num_classes
        sums = torch.zeros(num_classes, features.shape[1], device=self.device).index_add_(
            0, data.probe_labels, features)
        counts = torch.bincount(data.probe_labels, minlength=num_classes).unsqueeze(1)
        means = torch.where(counts > 0, sums / counts.clamp(min=1), torch.nan)
        if self._steps_since:
            metrics["loss"] = (self._loss_sum / self._steps_since).item()
            if self._classified:
                metrics["train_acc"] = self._correct.item() / self._classified
            metrics["images_per_s"] = self._seen / interval if interval > 0 else math.nan
        if self._part_sums:
            # One read from the device for all of them.
            parts = torch.stack([total / self._part_steps[name] for name, total in self._part_sums.items()])
            metrics.update(zip(self._part_sums, parts.tolist(), strict=True))
        seen = data.to_train_label[data.probe_labels]
        probe_acc = self.accuracy(features[seen >= 0], seen[seen >= 0])
        if probe_acc is not None:
            metrics["probe_acc"] = probe_acc
        metrics.update(self._geometry(features, seen >= 0))
        # From the loss's own parameters on a grid, no pass through the network (dmlviz.regions).
        decision = decision_map(features, self.scores, self.loss_fn.training_logits, directions=self.normalized)
        forces = self.forces(features, seen) if features.shape[1] <= 3 else {}
        self._loss_sum.zero_()
        self._part_sums.clear()
        self._part_steps.clear()
        self._correct.zero_()
        self._seen = self._classified = self._steps_since = 0
        return Snapshot(
            step=self.step, epoch=self.epoch, elapsed=elapsed, kind=kind, metrics=metrics,
            features=features.cpu().numpy(), class_means=means.cpu().numpy(),
            class_vectors={k: v.detach().float().cpu().numpy() for k, v in self.loss_fn.class_vectors().items()},
            decision=decision, forces=forces,
        )

    def forces(self, features: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
        """Where the loss pushes some probe points now: −∂L/∂f of each, the loss evaluated on those points
        (``regions.force_sample``) as its batch, in evaluation mode (no center or scale updates), times the
        batch size, so that a loss averaged over the batch gives each point its own pull. The loss alone,
        from its current parameters: no pass through the network."""
        rows = torch.as_tensor(force_sample(labels.cpu().numpy()), device=features.device)
        if len(rows) < 2:
            return {}
        points = features[rows].detach().float().clone().requires_grad_(True)
        self.loss_fn.eval()
        with torch.enable_grad():
            loss = self.loss_fn(points, labels[rows]).loss
            (gradient,) = torch.autograd.grad(loss, points, allow_unused=True)
        if gradient is None:  # a loss whose value does not depend on the features
            gradient = torch.zeros_like(points)
        pull = torch.nan_to_num(-gradient * len(rows), nan=0.0, posinf=0.0, neginf=0.0)
        return {"rows": rows.cpu().numpy(), "vectors": pull.cpu().numpy()}

    def _geometry(self, features: torch.Tensor, seen: torch.Tensor) -> dict[str, float]:
        """Retrieval, separation and angles of the probe's training classes, and how well the
        feature space retrieves the classes it never trained on (``unseen_p_at_1``)."""
        at = geometry_device(self.device)
        features, labels, seen = features.to(at), self.data.probe_labels.to(at), seen.to(at)
        metrics = geometry.snapshot_metrics(features[seen], labels[seen], self.normalized)
        if torch.unique(labels[~seen]).numel() > 1:
            unseen = geometry.retrieval_metrics(features[~seen], labels[~seen], self.normalized)
            metrics["unseen_p_at_1"] = unseen["p_at_1"]
        return metrics

    def info(self) -> dict[str, Any]:
        data = self.data
        return {
            "probe_labels": data.probe_labels.cpu().numpy(),
            "probe_index": data.probe_index.cpu().numpy(),
            "class_names": list(data.class_names),
            "train_classes": list(data.train_classes),
            # How the views draw the run (on the unit circle or not), so that they need not know the losses.
            "normalized": self.normalized,
            "model": self.model_name,
            "device": str(self.device),
            "precision": "bf16" if self.bf16 else "fp32",
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
            # What makes runs comparable: the same initial backbone and the same batches.
            "backbone_hash": self.backbone_hash,
            "first_batch": self._order[:self.batch_size].cpu().numpy(),
        }


def backbone_hash(model: torch.nn.Module) -> str:
    """A fingerprint of a backbone's weights, leaving out the feature layer's activation (present only
    before losses that read raw features), so runs of different losses compare their shared weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if not name.startswith("activation."):
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def setup(config: RunConfig, data_dir: Path | None = None, threads: int | None = None,
          data: TrainingData | None = None) -> Trainer:
    """Everything before the first step: device, threads, determinism, data (``data``: already prepared for
    these settings, as for the runs of a comparison) and the trainer."""
    device = resolve_device(config.device)
    if threads:
        torch.set_num_threads(threads)
    if device.type == "cuda":
        if device.index is not None:
            torch.cuda.set_device(device)  # the run's GPU for whatever allocates on "cuda" without an index
        # Same config, same numbers on the same GPU, at a small cost in speed.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)
        # Determinism would also fill every new allocation (NaN or a marker) on the GPU, a kernel each.
        torch.utils.deterministic.fill_uninitialized_memory = False
    if data is None:
        data = prepare(config.dataset, settings.data_dir(data_dir), device, **data_settings(config))
    return Trainer(config, data, device)


def data_settings(config: RunConfig) -> dict[str, Any]:
    """The settings of ``config`` that shape its prepared data, besides the dataset and the device."""
    return {"classes": config.classes, "label_noise": config.label_noise, "train_size": config.train_size,
            "probe_size": config.probe_size, "seed": config.seed}


class Engine:
    """Runs trainers to their end in lockstep, taking snapshots on the clock, at epoch ends, as the
    feature space forms, and on request.

    Two cadences meet. The clock's live snapshots (kind "tick") come every ``snapshot_every`` within the
    time budget (``snapshot_budget``, or ``WATCHED_SNAPSHOT_BUDGET`` while a page watches): what a
    watching page draws. Formation snapshots (kind "formation", which store thinning keeps) come at steps
    chosen by :func:`formation_due`, dense at the start and then evenly spaced, watched or not, so that
    any run replays its formation without gaps. They do not restart the clock or enter its cost median;
    a step where both are due gets one snapshot, of kind "formation". ``snapshot_steps`` replaces both
    with a snapshot every that many steps.

    One trainer is one run. Several (a comparison) train one step each in turn, under one control, and
    are snapshotted at the same steps: with the same seed and sampler they start from the same
    backbone weights and see the same batches, so their snapshots line up step for step.
    """

    def __init__(self, trainers: Trainer | Sequence[Trainer], sinks: RunSink | Sequence[RunSink],
                 control: Control | None = None, on_end: Callable[[int, RunResult], None] | None = None) -> None:
        self.trainers = [trainers] if isinstance(trainers, Trainer) else list(trainers)
        self.sinks = list(sinks) if isinstance(sinks, Sequence) else [sinks]
        if len(self.sinks) != len(self.trainers):
            raise ValueError(f"{len(self.trainers)} trainers need as many sinks, got {len(self.sinks)}")
        self.control = control or FreeRunning()
        # Called as each run ends (its index, its result), while the others may still train.
        self.on_end = on_end
        # Checking the loss forces a host sync; on a GPU do it every few steps instead of every step.
        self.check_every = 1 if self.trainers[0].device.type == "cpu" else 25

    def run(self) -> RunResult:
        """Train a single run; its result."""
        (result,) = self.run_all()
        return result

    def run_all(self) -> list[RunResult]:
        """Train every run to its end (or a stop, or its divergence); their results in order."""
        trainers, config = self.trainers, self.trainers[0].config
        for trainer, sink in zip(trainers, self.sinks, strict=True):
            sink.started(trainer.info())
        results: list[RunResult | None] = [None] * len(trainers)
        start = time.perf_counter()
        last = last_start = start
        # The steps of the latest snapshot, and of the latest one that store thinning keeps (a step at
        # which every active run has its first, an epoch-end, a formation or a final snapshot).
        snapshot_step = formed = 0

        def active() -> list[int]:
            return [i for i, result in enumerate(results) if result is None]

        def take(kind: str, which: list[int] | None = None, formation: bool = False, clock: bool = True) -> float:
            """Snapshot the runs (``which``, or every active one); a tick where a formation snapshot is due
            is a formation snapshot. ``clock``: the clock's next live snapshot counts from this one."""
            nonlocal last, last_start, snapshot_step, formed
            began = time.perf_counter()
            kept = which is None
            for i in active() if which is None else which:
                trainer = trainers[i]
                # An epoch end of one run is a plain tick of a run whose epochs are longer.
                mid_epoch = kind == "epoch" and trainer.step % trainer.steps_per_epoch != 0
                own = "tick" if mid_epoch else kind
                if own == "tick" and formation:
                    own = "formation"
                with threads.every_core():
                    snapshot = trainer.snapshot(own, began - start, began - last)
                if not _finite(snapshot):
                    # The step's update broke the weights after its loss (computed before it) was checked.
                    end(i, RunStatus.DIVERGED, _divergence_message(trainer.config, trainer.step))
                    continue
                kept = kept and own != "tick"
                self.sinks[i].snapshot(snapshot)
            if running := active():
                snapshot_step = trainers[running[0]].step
                if kept:
                    formed = snapshot_step
            if clock:
                last_start = began
            last = time.perf_counter()
            return last - began

        def end(i: int, outcome: Outcome, error: str | None = None) -> None:
            results[i] = RunResult(outcome, trainers[i].step, error)
            if self.on_end is not None:
                self.on_end(i, results[i])

        # The budget is for snapshots taken while training runs; the first one (which also warms
        # the evaluation path up) and those of a paused run's single steps cost no training time.
        threads = WatchedThreads(trainers[0].device)
        take("tick")
        costs: deque[float] = deque(maxlen=5)  # of the latest snapshots taken while training
        while running := active():
            action = self.control.gate()
            threads.follow(self.control.watched())
            if action == "pause":
                if trainers[running[0]].step != snapshot_step:
                    take("tick")
                continue
            if action == "stop":
                take("final")
                for i in active():
                    end(i, RunStatus.STOPPED)
                break
            for i in running:
                trainer = trainers[i]
                loss = trainer.train_step()
                if trainer.step % self.check_every == 0 or action == "step" or trainer.step == trainer.total_steps:
                    if not torch.isfinite(loss).item():
                        end(i, RunStatus.DIVERGED, _divergence_message(trainer.config, trainer.step))
            done = [i for i in active() if trainers[i].step == trainers[i].total_steps]
            if done:
                take("final", done)
                for i in done:
                    if results[i] is None:
                        end(i, RunStatus.FINISHED)
            if not active():
                break
            lead = trainers[active()[0]]  # runs in lockstep: the first active one's step is every one's
            formation = not config.snapshot_steps and formation_due(lead.step, formed, lead.total_steps)
            if any(trainers[i].step % trainers[i].steps_per_epoch == 0 for i in active()):
                costs.append(take("epoch", formation=formation))
            elif action == "step":
                take("tick", formation=formation)
            elif config.snapshot_steps:
                if lead.step % config.snapshot_steps == 0:
                    take("tick")
            else:
                budget = WATCHED_SNAPSHOT_BUDGET if self.control.watched() else config.snapshot_budget
                # Runs trained together share the cadence: each is snapshotted every n × snapshot_every,
                # so snapshots take the same share of the time whatever the number of runs.
                period = snapshot_period(median(costs) if costs else 0.0, budget,
                                         config.snapshot_every * len(active()))
                if time.perf_counter() >= last_start + period:
                    costs.append(take("tick", formation=formation))
                elif formation:
                    take("formation", clock=False)
        return [result for result in results if result is not None]


def snapshot_period(cost: float, budget: float, every: float) -> float:
    """Seconds from the start of one live snapshot to the next: ``every``, or longer when snapshots
    that take ``cost`` seconds would otherwise take more than ``budget`` of the time (a slow probe set
    must not slow training down). ``cost`` is the median of the latest ones, so one slow snapshot (the
    machine busy for a moment) does not open a long gap."""
    return max(every, cost / budget)


# Formation snapshots: each gap is FORMATION_GROWTH of the steps done (at least one step) until it reaches
# 1 / FORMATION_SPAN of the run, then stays there. For 469 steps: 0, 1, 2, 3, 4, 5, 7, 9, 12, 15, 19, 24,
# 30, 38, 48, 60, then every 12: 51 with the first and the final one. A run ten times longer gets about
# ten more (10 million steps: 96), so the store keeps them all.
FORMATION_GROWTH = 0.25
FORMATION_SPAN = 40


class WatchedThreads:
    """On a CPU, training leaves a core to the page while one watches the run.

    The page's server and (often) its browser need a core of their own to draw the frames. Training on
    every core beside them makes torch's OpenMP threads wait for each other at every operation, which
    on two cores costs far more than the second thread gives (``python -m bench.contention``; what the
    page gains: ``python -m bench.live``). Unwatched, the run has every core, and so do snapshots: the
    page draws a frame after its snapshot, not while it is taken."""

    def __init__(self, device: torch.device) -> None:
        self.cores = torch.get_num_threads()
        self.enabled = device.type == "cpu" and self.cores > 1
        self.watched = False

    def follow(self, watched: bool) -> None:
        if self.enabled and watched != self.watched:
            torch.set_num_threads(self.cores - 1 if watched else self.cores)
            self.watched = watched

    @contextmanager
    def every_core(self) -> Iterator[None]:
        """Every core for what the page waits on (a snapshot), whoever watches."""
        if not (self.enabled and self.watched):
            yield
            return
        torch.set_num_threads(self.cores)
        try:
            yield
        finally:
            torch.set_num_threads(self.cores - 1)


def formation_due(step: int, last_step: int, total_steps: int) -> bool:
    """Whether a formation snapshot is due at ``step``, the latest kept one being at ``last_step``.

    The feature space changes fastest in the first steps, whatever the run's length: formation snapshots
    come at every step at first, then at steps spaced geometrically (a gap of a quarter of the steps
    done), and never more than ``total_steps / FORMATION_SPAN`` apart, so that a replay has no gap
    longer than a fortieth of the run, whatever the clock and the budget allowed."""
    gap = min(FORMATION_GROWTH * last_step, total_steps / FORMATION_SPAN)
    return step - last_step >= max(1.0, gap)


def _finite(snapshot: Snapshot) -> bool:
    """Whether a snapshot's arrays hold only finite numbers (a NaN or an infinity shows in min or max)."""
    arrays = [snapshot.features, *snapshot.class_vectors.values()]
    return all(math.isfinite(float(a.min())) and math.isfinite(float(a.max())) for a in arrays if a.size)


def _divergence_message(config: RunConfig, step: int) -> str:
    hint = f"lower the learning rate (now {config.lr:g})"
    if "scale" in config.loss_hparams():
        hint += " or the loss's scale"
    return f"diverged at step {step}: the loss became NaN or infinite; {hint}"


def train(config: RunConfig, data_dir: Path | None, sink: RunSink, control: Control | None = None,
          threads: int | None = None) -> RunResult:
    """Set up and run one training run to its end."""
    (result,) = train_together([config], data_dir, [sink], control, threads)
    return result


def train_together(configs: Sequence[RunConfig], data_dir: Path | None, sinks: Sequence[RunSink],
                   control: Control | None = None, threads: int | None = None,
                   on_end: Callable[[int, RunResult], None] | None = None) -> list[RunResult]:
    """Set up several runs (a comparison) and train them in lockstep to their ends."""
    # One copy of the data for runs that read the same (a comparison's, on a GPU's memory too).
    prepared: dict[tuple, TrainingData] = {}
    trainers = []
    for config in configs:
        key = (config.dataset, config.device, repr(data_settings(config)))
        trainers.append(setup(config, data_dir, threads, prepared.get(key)))
        prepared.setdefault(key, trainers[-1].data)
    return Engine(trainers, sinks, control, on_end).run_all()
