"""``RunConfig``: every setting of a run, validated, and the same through dict, JSON, YAML and URLs.

The sidebar, the URL, the CLI and YAML files all go through this one class; its field metadata
(help text, ranges, choices) is what they build their widgets and flags from.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from dmlviz import settings
from dmlviz.data import CUSTOM_PREFIX, DATASETS
from dmlviz.losses import UnknownLoss, build_loss, get_spec

BUILTIN_DATASETS = tuple(DATASETS)
MODELS = ("auto", "lenetpp", "lenetpp-light", "resnet")
NORMS = ("batch", "none")
OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
SAMPLERS = ("auto", "balanced")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
# A file or folder name inside the data folder's custom/: no separators, no "..", so no way out of it.
_CUSTOM_NAME = re.compile(r"^custom:(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._ -]*$")

HP_PREFIX = "hp."  # loss hyperparameters in flat forms (URL query, CLI --set) are "hp.<name>"
# Bounds on what a link can make the server hold: checking a loss's dims builds it (classes × feature_dim).
MAX_CLASSES = 1000
MAX_NAME = 200


class ConfigError(ValueError):
    """One or more settings are invalid; ``errors`` lists a message per setting."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


def _setting(default: Any, help: str, *, low: float | None = None, high: float | None = None,
             choices: tuple[str, ...] = (), unit: str = "", optional: bool = False) -> Any:
    meta = {"help": help, "low": low, "high": high, "choices": choices, "unit": unit, "optional": optional}
    if isinstance(default, dict | list):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class RunConfig:
    """Every setting of one training run. Build with :meth:`from_dict` to get validation."""

    name: str = _setting("", "A name for the run (optional).")
    dataset: str = _setting("mnist", "Dataset: mnist, fashion-mnist, cifar10, digits (offline), or "
                            "custom:<name> for a folder or .npz in the data folder's custom/.")
    classes: tuple[int, ...] | None = _setting(None, "Classes to train on, e.g. 0,1,2,3,4 (default: all). "
                                               "The others are 'unseen' and still tracked.", optional=True)
    label_noise: float = _setting(0.0, "Fraction of training labels flipped to another class.", low=0.0, high=0.9)
    train_size: int | None = _setting(None, "Use a stratified subset of this many training images "
                                      "(default: all).", low=10, optional=True)
    model: str = _setting("auto", "Backbone: lenetpp (center-loss paper), lenetpp-light (half width, 3×3; "
                          "default on a CPU), resnet (small ResNet for 32×32 colour images).", choices=MODELS)
    norm: str = _setting("batch", "Normalisation in LeNet++: batch (a BatchNorm after each convolution; the "
                         "feature space forms several times faster) or none (the center-loss paper's network "
                         "exactly). The ResNet always has BatchNorm.", choices=NORMS)
    feature_dim: int = _setting(2, "Width d of the feature layer (2 or 3 to see it directly).", low=1, high=4096)
    loss: str = _setting("softmax", "The loss (see the Learn page).")
    loss_params: dict[str, Any] = _setting({}, "Hyperparameters of the loss; unset ones take their defaults.")
    optimizer: str = _setting("adam", "Optimizer of the backbone and the loss's parameters.", choices=OPTIMIZERS)
    lr: float = _setting(3e-3, "Learning rate of the backbone (its peak, with a schedule).", low=1e-6, high=10.0)
    loss_lr: float | None = _setting(None, "Learning rate of the loss's own parameters (classifier, centers, "
                                     "proxies); default: the same as lr.", low=1e-6, high=10.0, optional=True)
    momentum: float = _setting(0.9, "Momentum (SGD, RMSprop).", low=0.0, high=0.999)
    weight_decay: float = _setting(0.0, "L2 weight decay of the backbone.", low=0.0, high=0.1)
    schedule: str = _setting("cosine", "Learning-rate schedule over the run: cosine (from lr down to 0 at the "
                             "end), constant, step (÷10 at half and three quarters) or onecycle (a warm-up over "
                             "the first 30 %, then cosine).", choices=SCHEDULES)
    batch_size: int = _setting(32, "Images per training step. Small batches form the picture in fewer images "
                               "(more steps per image); large ones train more images per second.", low=2,
                               high=4096)
    sampler: str = _setting("auto", "How batches are drawn: auto (class-balanced runs of 4 samples per class for "
                            "pair losses, a plain shuffle otherwise) or balanced (class-balanced for every loss, "
                            "so that runs of different losses see the same batches).", choices=SAMPLERS)
    epochs: float = _setting(3.0, "Length of the run in passes over the training set.", low=0.01, high=1000.0)
    steps: int | None = _setting(None, "Length of the run in steps; overrides epochs when set.", low=1,
                                 high=10_000_000, optional=True)
    seed: int = _setting(0, "Seed of weights, batch order, augmentation and label noise.", low=0, high=2**31 - 1)
    device: str = _setting("auto", "cpu, cuda, cuda:N, mps, or auto (the best one present).")
    precision: str = _setting("auto", "bf16 autocast where the hardware runs it natively (auto), or fp32.",
                              choices=PRECISIONS)
    snapshot_every: float = _setting(0.5, "Seconds between live snapshots.", low=0.05, high=3600.0, unit="s")
    snapshot_budget: float = _setting(0.04, "Largest share of time that live snapshots may take while nobody "
                                      "watches the run live (a watching page allows up to half); they are "
                                      "spaced out further when the probe set is slow to embed.", low=0.005,
                                      high=1.0)
    snapshot_steps: int | None = _setting(None, "Take a snapshot every this many steps instead of on the clock "
                                          "(reproducible timing).", low=1, optional=True)
    probe_size: int = _setting(2000, "Test images whose features are tracked over time.", low=10, high=100_000)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Coerce and validate; raises :class:`ConfigError` listing every bad setting."""
        errors: list[str] = []
        known = {f.name: f for f in fields(cls)}
        values: dict[str, Any] = {}
        hparams = {k[len(HP_PREFIX):]: v for k, v in data.items() if k.startswith(HP_PREFIX)}
        for key, raw in data.items():
            if key.startswith(HP_PREFIX):
                continue
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                errors.append(f"unknown setting {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
                continue
            if key == "loss_params":
                if not isinstance(raw, Mapping):
                    errors.append(f"loss_params must be a mapping of name to value, got {raw!r}")
                    continue
                hparams = {**raw, **hparams}
                continue
            try:
                values[key] = _coerce(known[key], raw)
            except ValueError as exc:
                errors.append(str(exc))
        if hparams:
            values["loss_params"] = _typed_hparams(values.get("loss", cls.loss),
                                                   {str(k): _coerce_hparam(v) for k, v in hparams.items()})
        config = cls(**values)
        errors += config.problems()
        if errors:
            raise ConfigError(errors)
        return config

    @classmethod
    def salvage(cls, data: Mapping[str, Any]) -> tuple[RunConfig, list[str]]:
        """The config of every setting in ``data`` that is valid, the others at their defaults, and what
        was wrong (empty when all is valid): a hand-edited link loses only its mistakes."""
        try:
            return cls.from_dict(data), []
        except ConfigError as error:
            problems = error.errors
        kept: dict[str, Any] = {}
        for key in sorted(data, key=_salvage_order):
            try:
                cls.from_dict({**kept, key: data[key]})
            except ConfigError:
                continue
            kept[key] = data[key]
        return cls.from_dict(kept), problems

    def replace(self, **changes: Any) -> RunConfig:
        """A validated copy with some settings changed."""
        return type(self).from_dict({**self.to_dict(), **changes})

    # -- validation -----------------------------------------------------------------------------

    def validate(self) -> None:
        """Raise :class:`ConfigError` if any setting is out of range or unknown."""
        if errors := self.problems():
            raise ConfigError(errors)

    def problems(self) -> list[str]:
        """A message for each invalid setting (empty when the config is valid)."""
        errors = []
        for f in fields(self):
            value = getattr(self, f.name)
            meta = f.metadata
            if value is None and meta["optional"]:
                continue
            if meta["choices"] and value not in meta["choices"]:
                errors.append(f"{f.name} must be one of {', '.join(meta['choices'])}, got {value!r}")
            if isinstance(value, int | float) and not isinstance(value, bool):
                message = _range_message(f.name, value, meta["low"], meta["high"], meta["unit"])
                if message:
                    errors.append(message)
        if self.dataset.startswith(CUSTOM_PREFIX) and not _CUSTOM_NAME.match(self.dataset):
            errors.append(f"custom dataset names are the name of a folder or .npz file in the data folder's "
                          f"custom/ (letters, digits, '.', '_', '-' and spaces; no '..'), got {self.dataset!r}")
        elif self.dataset not in BUILTIN_DATASETS and not _CUSTOM_NAME.match(self.dataset):
            close = difflib.get_close_matches(self.dataset, BUILTIN_DATASETS, n=1)
            errors.append(
                f"unknown dataset {self.dataset!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; choose {', '.join(BUILTIN_DATASETS)} or custom:<name> (a folder or .npz in the data "
                "folder's custom/)"
            )
        if len(self.name) > MAX_NAME:
            errors.append(f"name must be at most {MAX_NAME} characters, got {len(self.name)}")
        if self.classes is not None:
            if len(set(self.classes)) < 2:
                errors.append("classes must name at least 2 different classes")
            if len(self.classes) > MAX_CLASSES:
                errors.append(f"classes must name at most {MAX_CLASSES} classes, got {len(self.classes)}")
            if any(c < 0 for c in self.classes):
                errors.append("classes must be class numbers 0, 1, 2, …")
            if (info := DATASETS.get(self.dataset)) and (missing := sorted({c for c in self.classes
                                                                             if c >= len(info.class_names)})):
                errors.append(f"{info.display_name} has classes 0–{len(info.class_names) - 1}, so not "
                              f"{', '.join(map(str, missing))}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", self.device):
            errors.append(f"device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        errors.extend(self._loss_errors())
        return errors or self._shape_errors()

    def _loss_errors(self) -> list[str]:
        try:
            spec = get_spec(self.loss)
        except UnknownLoss as exc:
            return [str(exc)]
        errors = []
        names = {hp.name for hp in spec.hparams}
        for key, value in self.loss_params.items():
            if key not in names:
                hint = f"; it has {', '.join(sorted(names))}" if names else "; it has none"
                errors.append(f"{spec.display_name} has no hyperparameter {key!r}{hint}")
            elif message := spec.hparam(key).check(value):
                errors.append(message)
        return errors

    def _shape_errors(self) -> list[str]:
        """What the loss cannot do with this many classes in this feature width (a fixed simplex of 10
        classes in 2-D, AdaCos with 2 classes). The loss's own constructor says so; for a custom dataset
        without ``classes`` the count is only known once its files are read, when the run starts."""
        if self.classes is not None:
            count = len(set(self.classes))
        elif self.dataset in DATASETS:
            count = len(DATASETS[self.dataset].class_names)
        else:
            return []
        try:
            with torch.random.fork_rng(devices=[]):  # building draws initial weights: keep the caller's RNG
                build_loss(self.loss, count, self.feature_dim, **self.loss_hparams())
        except ValueError as error:
            return [str(error)]
        return []

    def limit_problems(self, limits: settings.Limits | None = None) -> list[str]:
        """What this server's limits (``settings.limits()``, e.g. a public demo's) do not allow."""
        limits = limits or settings.limits()
        errors = []
        if not limits.custom_datasets and self.dataset.startswith(CUSTOM_PREFIX):
            errors.append(f"custom datasets are turned off on this server; choose {', '.join(BUILTIN_DATASETS)}")
        most = limits.max_epochs
        if most is not None and self.steps is None and self.epochs > most:
            errors.append(f"epochs must be at most {_number(most)} on this server, got {_number(self.epochs)}")
        elif most is not None and self.steps is not None:
            # A run's work is steps × batch size images; an epoch is the dataset's whole training split.
            info = DATASETS.get(self.dataset)
            if info is None:
                errors.append(f"give the length of a run on {self.dataset} in epochs (at most {_number(most)} on "
                              "this server), not in steps")
            elif self.steps * self.batch_size > most * info.train_images:
                errors.append(f"steps must be at most {int(most * info.train_images) // self.batch_size} with "
                              f"batch_size {self.batch_size} on this server ({_number(most)} epochs of "
                              f"{info.display_name}), got {self.steps}")
        return errors

    def check_limits(self, limits: settings.Limits | None = None) -> None:
        """Raise :class:`ConfigError` if this server's limits do not allow the run."""
        if errors := self.limit_problems(limits):
            raise ConfigError(errors)

    # -- derived --------------------------------------------------------------------------------

    def loss_hparams(self) -> dict[str, Any]:
        """The loss's hyperparameters with defaults filled in."""
        return {**get_spec(self.loss).defaults(), **self.loss_params}

    def config_hash(self) -> str:
        """A short stable hash of the settings that change what is trained (not the name)."""
        data = self.to_dict()
        data.pop("name")
        data["loss_params"] = self.loss_hparams()
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]

    # -- serialisation --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["classes"] = list(self.classes) if self.classes is not None else None
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RunConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError([f"the config is not valid JSON: {exc}"]) from None
        return cls.from_dict(_mapping(data))

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> RunConfig:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError([f"the config is not valid YAML: {exc}"]) from None
        return cls.from_dict(_mapping(data or {}))

    def to_query(self) -> dict[str, str]:
        """Flat string parameters for a URL; only settings that differ from the defaults."""
        default = RunConfig()
        query = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "loss_params":
                query.update({f"{HP_PREFIX}{k}": _to_text(v) for k, v in sorted(value.items())})
            elif value != getattr(default, f.name):
                query[f.name] = _to_text(value)
        return query

    @classmethod
    def from_query(cls, query: Mapping[str, str | list[str]]) -> RunConfig:
        """Parse URL query parameters (as Streamlit's ``st.query_params`` gives them)."""
        flat = {k: (v[-1] if isinstance(v, list) else v) for k, v in query.items()}
        return cls.from_dict(flat)


def _salvage_order(key: str) -> int:
    """The loss after the settings its dims are checked against, its hyperparameters after the loss."""
    if key.startswith(HP_PREFIX) or key == "loss_params":
        return 2
    return 1 if key == "loss" else 0


def _mapping(data: object) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError([f"a config must be a mapping of setting to value, got {type(data).__name__}"])
    return data


def _to_text(value: Any) -> str:
    if isinstance(value, tuple | list):
        return ",".join(str(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))  # "epochs=3", not "epochs=3.0"
    return "" if value is None else str(value)


def _range_message(name: str, value: float, low: float | None, high: float | None, unit: str) -> str | None:
    if value != value or value in (float("inf"), float("-inf")):
        return f"{name} must be a finite number, got {value}"
    unit = f" {unit}" if unit else ""
    if low is not None and high is not None and not low <= value <= high:
        return f"{name} must be between {_number(low)} and {_number(high)}{unit}, got {_number(value)}"
    if low is not None and value < low:
        return f"{name} must be at least {_number(low)}{unit}, got {_number(value)}"
    if high is not None and value > high:
        return f"{name} must be at most {_number(high)}{unit}, got {_number(value)}"
    return None


def _number(value: float) -> str:
    """Whole numbers in full ("2147483647", not "2.14748e+09"), others short ("0.01", "1e-06")."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _coerce(f: dataclasses.Field, raw: Any) -> Any:
    """Turn a value from JSON, YAML, a URL or a flag into the field's type, or say why not."""
    kind = f.type if isinstance(f.type, str) else str(f.type)
    optional = f.metadata["optional"]
    if optional and (raw is None or (isinstance(raw, str) and raw.strip().lower() in ("", "none", "null"))):
        return None
    if kind.startswith("tuple[int"):
        items = raw.split(",") if isinstance(raw, str) else raw
        if not isinstance(items, list | tuple):
            raise ValueError(f"{f.name} must be a list of class numbers like 0,1,2, got {raw!r}")
        try:
            return tuple(_parse_int(f.name, item) for item in items if str(item).strip() != "")
        except ValueError:
            raise ValueError(f"{f.name} must be a list of class numbers like 0,1,2, got {raw!r}") from None
    if kind.startswith("int"):
        return _parse_int(f.name, raw)
    if kind.startswith("float"):
        return _parse_float(f.name, raw)
    if not isinstance(raw, str):
        raise ValueError(f"{f.name} must be text, got {raw!r}")
    return raw.strip()


def _parse_int(name: str, raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError(f"{name} must be a whole number, got {raw!r}")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str):
        try:
            return int(raw.strip())
        except ValueError:
            pass
    raise ValueError(f"{name} must be a whole number, got {raw!r}")


def _parse_float(name: str, raw: Any) -> float:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw.strip())
        except ValueError:
            pass
    raise ValueError(f"{name} must be a number, got {raw!r}")


def _typed_hparams(loss: str, params: dict[str, Any]) -> dict[str, Any]:
    """Whole numbers given for real-valued hyperparameters become floats ("scale=20" → 20.0), so a
    config reads back from a URL exactly as it was written."""
    try:
        spec = get_spec(loss)
    except UnknownLoss:
        return params
    names = {hp.name: hp for hp in spec.hparams}
    return {k: float(v) if k in names and names[k].kind is float and type(v) is int else v for k, v in params.items()}


def _coerce_hparam(raw: Any) -> Any:
    """Hyperparameters arrive as text from URLs and flags; the loss spec checks the type later."""
    if not isinstance(raw, str):
        return raw
    text = raw.strip()
    if text.lower() in _TRUE - {"1"}:
        return True
    if text.lower() in _FALSE - {"0"}:
        return False
    for parse in (int, float):
        try:
            return parse(text)
        except ValueError:
            pass
    return text
