"""Comparisons: two to four losses trained on equal terms, and what tells stored runs apart.

A :class:`Comparison` is one shared :class:`RunConfig` (dataset, classes, model, feature dim,
optimizer, epochs, batch size, seed, …) and, per loss, what belongs to the loss alone: its name, its
hyperparameters and the learning rate of its own parameters. Its runs then start from the same
backbone weights (same seed and model) and, trained together in lockstep (``Runner.submit_together``),
see the same batches in the same order and are snapshotted at the same steps. When a pair loss is
among them, every run draws class-balanced batches, so the batches stay the same.

A comparison lives in a URL: the shared settings as a run's (``RunConfig.to_query``), each loss as
``loss<i>``, its hyperparameters as ``hp<i>.<name>`` and its learning rate as ``loss_lr<i>``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dmlviz.config import HP_PREFIX, ConfigError, RunConfig
from dmlviz.losses import UnknownLoss, get_spec

MIN_LOSSES, MAX_LOSSES = 2, 4
#: What may differ between the runs of a fair comparison: the loss and what it owns.
PER_LOSS = ("loss", "loss_params", "loss_lr")
_SLOT = re.compile(r"^(loss|loss_lr)([1-9])$|^hp([1-9])\.(.+)$")


@dataclass(frozen=True)
class LossChoice:
    """One loss of a comparison: its name, hyperparameters and, optionally, its own learning rate."""

    loss: str
    params: Mapping[str, Any] = field(default_factory=dict)
    loss_lr: float | None = None


@dataclass(frozen=True)
class Comparison:
    shared: RunConfig
    losses: tuple[LossChoice, ...]

    def configs(self) -> list[RunConfig]:
        """One config per loss, validated; ConfigError lists every problem (of every loss) at once."""
        errors = []
        if not MIN_LOSSES <= len(self.losses) <= MAX_LOSSES:
            errors.append(f"a comparison has {MIN_LOSSES} to {MAX_LOSSES} losses, got {len(self.losses)}")
        pairs = False
        for choice in self.losses:
            try:
                pairs |= get_spec(choice.loss).needs_pairs
            except UnknownLoss as error:
                errors.append(str(error))
        if errors:
            raise ConfigError(errors)
        base = self.shared.to_dict()
        if pairs:
            base["sampler"] = "balanced"  # the pair loss's batches for every run: the same batches for all
        configs = []
        for i, choice in enumerate(self.losses, start=1):
            data = {**base, "loss": choice.loss, "loss_params": dict(choice.params), "loss_lr": choice.loss_lr,
                    "name": f"{self.shared.name} · {choice.loss}" if self.shared.name else ""}
            try:
                configs.append(RunConfig.from_dict(data))
            except ConfigError as error:
                errors += [f"loss {i} ({choice.loss}): {message}" for message in error.errors]
        if errors:
            raise ConfigError(errors)
        return configs

    # -- URLs -------------------------------------------------------------------------------------

    def to_query(self) -> dict[str, str]:
        query = {k: v for k, v in self.shared.to_query().items()
                 if k not in PER_LOSS and not k.startswith(HP_PREFIX)}
        for i, choice in enumerate(self.losses, start=1):
            query[f"loss{i}"] = choice.loss
            if choice.loss_lr is not None:
                query[f"loss_lr{i}"] = f"{choice.loss_lr:g}"
            for name, value in sorted(choice.params.items()):
                query[f"hp{i}.{name}"] = _text(value)
        return query

    @classmethod
    def from_query(cls, query: Mapping[str, str | list[str]]) -> Comparison:
        """Parse a comparison's URL; ConfigError lists what is wrong."""
        comparison, problems = cls.salvage(query)
        if problems or comparison is None:
            raise ConfigError(problems)
        return comparison

    @classmethod
    def salvage(cls, query: Mapping[str, str | list[str]]) -> tuple[Comparison | None, list[str]]:
        """What is valid in a comparison's URL and what is not (empty when all is valid): the valid shared
        settings, and each loss whose name is valid with its valid hyperparameters and learning rate, so a
        hand-edited link loses only its mistakes. None when fewer than two losses remain."""
        shared_part, slots = _split_query(query)
        problems = [f"{key} belongs to each loss (loss<i>, hp<i>.<name>), not to the comparison"
                    for key in shared_part if key in PER_LOSS or key.startswith(HP_PREFIX)]
        shared, wrong = RunConfig.salvage({k: v for k, v in shared_part.items()
                                           if k not in PER_LOSS and not k.startswith(HP_PREFIX)})
        problems += wrong
        base = shared.to_dict()
        choices = []
        for i in range(1, max(slots, default=0) + 1):
            slot = slots.get(i, {})
            if "loss" not in slot:
                problems.append(f"loss{i} is missing")
                continue
            own = {f"{HP_PREFIX}{name}": value for name, value in slot.get("params", {}).items()}
            own.update({key: slot[key] for key in ("loss", "loss_lr") if key in slot})
            config, wrong = RunConfig.salvage({**base, **own})
            problems += [f"loss{i}: {message}" for message in wrong]
            if config.loss == slot["loss"]:
                choices.append(LossChoice(config.loss, config.loss_params, config.loss_lr))
        comparison = cls(shared, tuple(choices))
        try:
            comparison.configs()
        except ConfigError as error:
            return None, problems + error.errors
        return comparison, problems


def _split_query(query: Mapping[str, str | list[str]]) -> tuple[dict[str, Any], dict[int, dict[str, Any]]]:
    """A comparison's URL as its shared settings and, per loss slot, ``loss``, ``loss_lr`` and ``params``."""
    flat = {k: (v[-1] if isinstance(v, list) else v) for k, v in query.items()}
    shared_part: dict[str, Any] = {}
    slots: dict[int, dict[str, Any]] = {}
    for key, value in flat.items():
        match = _SLOT.match(key)
        if match is None:
            shared_part[key] = value
        elif match.group(1):
            slots.setdefault(int(match.group(2)), {})[match.group(1)] = value
        else:
            slots.setdefault(int(match.group(3)), {}).setdefault("params", {})[match.group(4)] = value
    return shared_part, slots


def differences(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """The settings other than the loss's own in which stored runs differ, each as "name: a / b"."""
    if len(configs) < 2:
        return []
    names = [name for name in configs[0] if name not in (*PER_LOSS, "name")]
    names += [name for c in configs[1:] for name in c if name not in names and name not in (*PER_LOSS, "name")]
    found = []
    for name in names:
        values = [c.get(name) for c in configs]
        if any(_canonical(v) != _canonical(values[0]) for v in values[1:]):
            found.append(f"{name}: " + " / ".join(_text(v) for v in values))
    return found


def _canonical(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return "—" if value is None else str(value)


# -- presets ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ComparisonPreset:
    key: str
    title: str
    what_to_watch: str
    shared: Mapping[str, Any]
    losses: tuple[str, ...]

    def comparison(self) -> Comparison:
        """The losses with their recommended settings for this feature width (the registry's)."""
        shared = RunConfig.from_dict(self.shared)
        choices = []
        for name in self.losses:
            recommended = get_spec(name).recommended.get(shared.feature_dim, {})
            choices.append(LossChoice(name, recommended.get("loss_params", {}), recommended.get("loss_lr")))
        return Comparison(shared, tuple(choices))


COMPARISON_PRESETS: tuple[ComparisonPreset, ...] = (
    ComparisonPreset("softmax-vs-center", "Softmax vs center loss (2-D, MNIST)",
                     "The same network and batches: softmax grows long radial petals, the center loss pulls each "
                     "class into a tight cluster around its center.",
                     {"dataset": "mnist", "feature_dim": 2, "epochs": 3}, ("softmax", "center")),
    ComparisonPreset("sphere-margins", "NormFace vs CosFace vs ArcFace (3-D sphere, MNIST)",
                     "All three normalise features onto the sphere; the margins of CosFace (cosine) and ArcFace "
                     "(angle) shrink the class caps and widen the gaps between them.",
                     {"dataset": "mnist", "feature_dim": 3, "epochs": 3}, ("normface", "cosface", "arcface")),
    ComparisonPreset("triplet-vs-osm", "Triplet vs OSM + CAA (2-D, MNIST)",
                     "Two pair losses without a classifier: semi-hard triplets against orthogonality-constrained "
                     "similarity learning with class-aware attention.",
                     {"dataset": "mnist", "feature_dim": 2, "epochs": 3}, ("triplet", "osm-caa")),
    ComparisonPreset("center-family", "IE loss vs center loss vs contrastive-center (2-D, MNIST)",
                     "Three ways to make classes compact: pull to centers (center), pull and push between centers "
                     "(contrastive-center), and include-and-exclude (IE).",
                     {"dataset": "mnist", "feature_dim": 2, "epochs": 3}, ("ie", "center", "contrastive-center")),
)


def get_comparison_preset(key: str) -> ComparisonPreset:
    for preset in COMPARISON_PRESETS:
        if preset.key == key:
            return preset
    raise KeyError(f"unknown comparison preset {key!r}; choose one of "
                   f"{', '.join(p.key for p in COMPARISON_PRESETS)}")
