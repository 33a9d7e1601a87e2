"""``RunConfig``: every setting of a run, validated, and the same through dict, JSON, YAML and URLs.

The sidebar, the Compare form, the URL, the CLI and YAML files all go through this one class. Each
setting is a :class:`~dmlviz.params.Param` (:data:`PARAMS`), as each loss hyperparameter is: what they
read, check, write and build their widgets and flags from.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import hashlib
import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from dmlviz import settings
from dmlviz.data import CUSTOM_PREFIX, DATASETS
from dmlviz.losses import LossSpec, UnknownLoss, build_loss, get_spec
from dmlviz.models import model_names, model_specs
from dmlviz.optim import optimizer_names, schedule_names, schedule_specs
from dmlviz.params import MAX_CLASSES, QUOTE_CHARS, Param, number, quote, to_text
from dmlviz.store import MAX_NAME_LENGTH

BUILTIN_DATASETS = tuple(DATASETS)
MODELS = ("auto", *model_names())
NORMS = ("batch", "none")
SAMPLERS = ("auto", "balanced")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16")
# A file or folder name inside the data folder's custom/: no separators, no "..", so no way out of it.
_CUSTOM_NAME = re.compile(r"^custom:(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._ -]*$")

HP_PREFIX = "hp."  # loss hyperparameters in flat forms (URL query, CLI --set) are "hp.<name>"
MAX_NAME = MAX_NAME_LENGTH  # the store refuses a longer name too (a rename)
# Bounds on a config document (YAML, JSON): a whole config is under 2 KB.
MAX_CONFIG_CHARS = 65_536  # characters of text, and characters that YAML aliases may repeat on top of it
MAX_CONFIG_DEPTH = 8  # a config is a mapping of settings, loss_params a mapping in it, classes a list


class ConfigError(ValueError):
    """One or more settings are invalid; ``errors`` lists a message per setting."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors
        super().__init__("; ".join(errors))


def _setting(default: Any, help: str, *, low: float | None = None, high: float | None = None,
             choices: tuple[str, ...] = (), unit: str = "", optional: bool = False, step: float | None = None) -> Any:
    """A field of :class:`RunConfig` with its :class:`Param` (named and typed from the field in :data:`PARAMS`)."""
    param = Param("", default, low, high, help, unit, choices, optional, step)
    if isinstance(default, dict | list):
        return field(default_factory=lambda: type(default)(default), metadata={"param": param})
    return field(default=default, metadata={"param": param})


def _described(specs: list[Any], last: str) -> str:
    """"a (what a is), b or c (what c is)": the registered choices of a setting, for its help."""
    words = [f"{spec.name} ({spec.help})" if spec.help else spec.name for spec in specs]
    return f"{', '.join(words[:-1])}{last}{words[-1]}" if len(words) > 1 else words[0]


@dataclass(frozen=True)
class RunConfig:
    """Every setting of one training run. Build with :meth:`from_dict` to get validation."""

    name: str = _setting("", "A name for the run (optional).")
    dataset: str = _setting("mnist", "Dataset: mnist, fashion-mnist, cifar10, digits (offline), or "
                            "custom:<name> for a folder or .npz in the data folder's custom/.")
    classes: tuple[int, ...] | None = _setting(None, "Classes to train on, e.g. 0,1,2,3,4 (default: all). "
                                               "The others are 'unseen' and still tracked.", optional=True)
    label_noise: float = _setting(0.0, "Fraction of training labels flipped to another class.", low=0.0, high=0.9,
                                  step=0.05)
    train_size: int | None = _setting(None, "Use a stratified subset of this many training images "
                                      "(default: all).", low=10, optional=True)
    model: str = _setting("auto", f"Backbone: {_described(model_specs(), ', ')}.", choices=MODELS)
    norm: str = _setting("batch", "Normalisation in LeNet++: batch (a BatchNorm after each convolution; the "
                         "feature space forms several times faster) or none (the center-loss paper's network "
                         "exactly; give it lr 1e-3: at 3e-3 it fell apart after 5 epochs). The ResNet always "
                         "has BatchNorm.", choices=NORMS)
    feature_dim: int = _setting(2, "Width d of the feature layer (2 or 3 to see it directly).", low=1, high=4096)
    loss: str = _setting("softmax", "The loss (see the Learn page).")
    loss_params: dict[str, Any] = _setting({}, "Hyperparameters of the loss; unset ones take their defaults.")
    optimizer: str = _setting("adam", "Optimizer of the backbone and the loss's parameters.", choices=optimizer_names())
    lr: float = _setting(3e-3, "Learning rate of the backbone (its peak, with a schedule).", low=1e-6, high=10.0,
                         step=1e-4)
    loss_lr: float | None = _setting(None, "Learning rate of the loss's own parameters (classifier, centers, "
                                     "proxies); default: the same as lr.", low=1e-6, high=10.0, optional=True,
                                     step=1e-4)
    momentum: float = _setting(0.9, "Momentum (SGD, RMSprop).", low=0.0, high=0.999, step=0.05)
    weight_decay: float = _setting(0.0, "L2 weight decay of the backbone.", low=0.0, high=0.1, step=1e-4)
    schedule: str = _setting("cosine", f"Learning-rate schedule over the run: {_described(schedule_specs(), ' or ')}.",
                             choices=schedule_names())
    batch_size: int = _setting(32, "Images per training step. Small batches form the picture in fewer images "
                               "(more steps per image); large ones train more images per second.", low=2,
                               high=4096)
    sampler: str = _setting("auto", "How batches are drawn: auto (class-balanced runs of 4 samples per class for "
                            "pair losses, a plain shuffle otherwise) or balanced (class-balanced for every loss, "
                            "so that runs of different losses see the same batches).", choices=SAMPLERS)
    epochs: float = _setting(3.0, "Length of the run in passes over the training set.", low=0.01, high=1000.0, step=0.5)
    steps: int | None = _setting(None, "Length of the run in steps; overrides epochs when set.", low=1,
                                 high=10_000_000, optional=True)
    seed: int = _setting(0, "Seed of weights, batch order, augmentation and label noise.", low=0, high=2**31 - 1)
    device: str = _setting("auto", "cpu, cuda, cuda:N, mps, or auto (the best one present).")
    precision: str = _setting("auto", "bf16 autocast where the hardware runs it natively (auto), or fp32.",
                              choices=PRECISIONS)
    snapshot_every: float = _setting(0.5, "Seconds between live snapshots.", low=0.05, high=3600.0, unit="s", step=0.1)
    snapshot_budget: float = _setting(0.04, "Largest share of time that live snapshots may take while nobody "
                                      "watches the run live (a watching page allows up to half); they are "
                                      "spaced out further when the probe set is slow to embed.", low=0.005,
                                      high=1.0, step=0.01)
    snapshot_steps: int | None = _setting(None, "Take a snapshot every this many steps instead of on the clock "
                                          "(reproducible timing).", low=1, optional=True)
    probe_size: int = _setting(2000, "Test images whose features are tracked over time.", low=10, high=100_000)

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        """Coerce and validate; raises :class:`ConfigError` listing every bad setting."""
        errors: list[str] = []
        values: dict[str, Any] = {}
        if bad := [key for key in data if not isinstance(key, str)]:
            errors.append(f"setting names are text (like seed), got {', '.join(quote(key) for key in bad[:5])}")
            data = {key: value for key, value in data.items() if isinstance(key, str)}
        hparams = {k[len(HP_PREFIX):]: v for k, v in data.items() if k.startswith(HP_PREFIX)}
        for key, raw in data.items():
            if key.startswith(HP_PREFIX):
                continue
            if key not in PARAMS and key != "loss_params":
                errors.append(f"unknown setting {quote(key)}" + _did_you_mean(key, [*PARAMS, "loss_params"]))
                continue
            if key == "loss_params":
                if not isinstance(raw, Mapping):
                    errors.append(f"loss_params must be a mapping of name to value, got {quote(raw)}")
                    continue
                hparams = {**raw, **hparams}
                continue
            try:
                values[key] = PARAMS[key].parse(raw)
            except ValueError as exc:
                errors.append(str(exc))
        if hparams:
            values["loss_params"] = _parse_hparams(values.get("loss", cls.loss), hparams, errors)
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
        errors = [message for name, param in PARAMS.items() if (message := param.check(getattr(self, name)))]
        if self.dataset.startswith(CUSTOM_PREFIX) and not _CUSTOM_NAME.match(self.dataset):
            errors.append(f"custom dataset names are the name of a folder or .npz file in the data folder's "
                          f"custom/ (letters, digits, '.', '_', '-' and spaces; no '..'), got {quote(self.dataset)}")
        elif self.dataset not in BUILTIN_DATASETS and not _CUSTOM_NAME.match(self.dataset):
            errors.append(
                f"unknown dataset {quote(self.dataset)}" + _did_you_mean(self.dataset, BUILTIN_DATASETS)
                + f"; choose {', '.join(BUILTIN_DATASETS)} or custom:<name> (a folder or .npz in the data "
                "folder's custom/)"
            )
        if len(self.name) > MAX_NAME:
            errors.append(f"name must be at most {MAX_NAME} characters, got {len(self.name)}")
        if self.classes is not None:
            if len(set(self.classes)) < 2:
                errors.append("classes must name at least 2 different classes")
            elif repeated := sorted(c for c, n in Counter(self.classes).items() if n > 1)[:10]:
                errors.append(f"classes must name each class once, got {', '.join(map(number, repeated))} "
                              "more than once")
            if len(self.classes) > MAX_CLASSES:
                errors.append(f"classes must name at most {MAX_CLASSES} classes, got {len(self.classes)}")
            if any(c < 0 for c in self.classes):
                errors.append("classes must be class numbers 0, 1, 2, …")
            if (info := DATASETS.get(self.dataset)) and (missing := sorted({c for c in self.classes
                                                                             if c >= len(info.class_names)})):
                more = f" (and {len(missing) - 10} more)" if len(missing) > 10 else ""
                errors.append(f"{info.display_name} has classes 0–{len(info.class_names) - 1}, so not "
                              f"{', '.join(map(number, missing[:10]))}{more}")
        if not re.fullmatch(r"auto|cpu|cuda(:\d{1,4})?|mps", self.device):
            errors.append(f"device must be auto, cpu, cuda, cuda:N or mps, got {quote(self.device)}")
        errors.extend(self._loss_errors())
        return errors or self._shape_errors()

    def _loss_errors(self) -> list[str]:
        if len(self.loss) > QUOTE_CHARS:  # no loss has a long name: no "did you mean" to look for
            return [f"unknown loss {quote(self.loss)}"]
        try:
            spec = get_spec(self.loss)
        except UnknownLoss as exc:
            return [str(exc)]
        errors = []
        names = {hp.name for hp in spec.hparams}
        for key, value in self.loss_params.items():
            if key not in names:
                hint = f"; it has {', '.join(sorted(names))}" if names else "; it has none"
                errors.append(f"{spec.display_name} has no hyperparameter {quote(key)}{hint}")
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
            errors.append(f"epochs must be at most {number(most)} on this server, got {number(self.epochs)}")
        elif most is not None and self.steps is not None:
            # A run's work is steps × batch size images; an epoch is the dataset's whole training split.
            info = DATASETS.get(self.dataset)
            if info is None:
                errors.append(f"give the length of a run on {self.dataset} in epochs (at most {number(most)} on "
                              "this server), not in steps")
            elif self.steps * self.batch_size > most * info.train_images:
                errors.append(f"steps must be at most {int(most * info.train_images) // self.batch_size} with "
                              f"batch_size {self.batch_size} on this server ({number(most)} epochs of "
                              f"{info.display_name}), got {self.steps}")
        if not errors:  # a run's footprint is counted from settings that are within the other limits
            from dmlviz import budget  # imports the engine, which imports this module

            errors += budget.problems(self, limits.max_run_mb, limits.max_run_memory_mb)
        return errors

    def check_limits(self, limits: settings.Limits | None = None) -> None:
        """Raise :class:`ConfigError` if this server's limits do not allow the run."""
        if errors := self.limit_problems(limits):
            raise ConfigError(errors)

    # -- derived --------------------------------------------------------------------------------

    def loss_hparams(self) -> dict[str, Any]:
        """The loss's hyperparameters with defaults filled in."""
        return {**get_spec(self.loss).defaults(), **self.loss_params}

    def feature_spec(self) -> LossSpec:
        """The spec of the loss that reads the features: a loss built on a base loss (ring,
        class-adversarial, IntraLoss) reads them as its base does (normalised or not)."""
        return get_spec(self.loss_hparams().get("base", self.loss))

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
        _check_size(text)
        if (depth := _json_depth(text)) > MAX_CONFIG_DEPTH:
            raise ConfigError([_too_deep(depth)])
        try:
            data = json.loads(text)
        except (ValueError, RecursionError) as exc:  # JSONDecodeError, or a number of over 4300 digits
            raise ConfigError([f"the config is not valid JSON: {_first_line(exc)}"]) from None
        return cls.from_dict(_mapping(data))

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> RunConfig:
        data, _ = yaml_document(text)
        return cls.from_dict(_mapping({} if data is None else data))

    def to_query(self) -> dict[str, str]:
        """Flat string parameters for a URL; only settings that differ from the defaults."""
        default = RunConfig()
        query = {name: param.to_text(getattr(self, name)) for name, param in PARAMS.items()
                 if getattr(self, name) != getattr(default, name)}
        query.update({f"{HP_PREFIX}{k}": to_text(v) for k, v in sorted(self.loss_params.items())})
        return query

    @classmethod
    def from_query(cls, query: Mapping[str, str | list[str]]) -> RunConfig:
        """Parse URL query parameters (as Streamlit's ``st.query_params`` gives them)."""
        flat = {k: ((v[-1] if v else "") if isinstance(v, list) else v) for k, v in query.items()}
        return cls.from_dict(flat)


def _kind(annotation: str) -> type:
    """The type of a field's value from its annotation ("int | None" → int; the classes are a tuple)."""
    return {"str": str, "int": int, "float": float, "tuple": tuple}[re.match(r"\w+", annotation).group()]


#: Every run setting as a :class:`Param`, by name, in the order of the fields (the loss's own
#: hyperparameters, ``loss_params``, are the loss spec's).
PARAMS: dict[str, Param] = {f.name: dataclasses.replace(f.metadata["param"], name=f.name, kind=_kind(f.type))
                            for f in fields(RunConfig) if f.name != "loss_params"}


def yaml_document(text: str, limit: int = MAX_CONFIG_CHARS) -> tuple[Any, dict[tuple, int]]:
    """A YAML text read within a config's bounds (at most ``limit`` characters, ``_yaml_loader``), and the
    line (from 1) of every key and list item in it, by its path of keys and indexes, so that a message can
    point at a line; ``ConfigError`` saying what cannot be read."""
    import yaml

    _check_size(text, limit)
    try:
        loader = _yaml_loader()(text)  # its reader refuses control characters at once
        node = loader.get_single_node()
    except ConfigError:
        raise
    except yaml.YAMLError as exc:
        raise ConfigError([f"the config is not valid YAML: {_yaml_problem(exc)}"]) from None
    try:
        data = None if node is None else loader.construct_document(node)
    except (yaml.YAMLError, ValueError, ArithmeticError) as exc:  # "2020-13-45", a 5000-digit integer
        raise ConfigError([f"the config is not valid YAML: {_yaml_problem(exc)}"]) from None
    except (LookupError, TypeError, AttributeError):  # PyYAML's own slips, on "!!int " with no digits
        raise ConfigError(["the config is not valid YAML: a value in it cannot be read as the type its tag "
                           "gives"]) from None
    finally:
        loader.dispose()
    lines: dict[tuple, int] = {}

    def walk(node: Any, path: tuple) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                lines[(*path, key.value)] = key.start_mark.line + 1
                walk(value, (*path, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                lines[(*path, index)] = item.start_mark.line + 1
                walk(item, (*path, index))

    if node is not None:
        walk(node, ())
    return data, lines


def _salvage_order(key: str) -> int:
    """The loss after the settings its dims are checked against, its hyperparameters after the loss."""
    if key.startswith(HP_PREFIX) or key == "loss_params":
        return 2
    return 1 if key == "loss" else 0


def _did_you_mean(text: str, choices: Any) -> str:
    """" (did you mean 'x'?)" for a close match among ``choices``; none for a long text (no name is long)."""
    close = difflib.get_close_matches(text, choices, n=1) if len(text) <= QUOTE_CHARS else []
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_size(text: str, limit: int = MAX_CONFIG_CHARS) -> None:
    if not isinstance(text, str):
        raise ConfigError([f"a config is text, got {type(text).__name__}"])
    if len(text) > limit:
        what = "a run config is at most" if limit == MAX_CONFIG_CHARS else "it may have at most"
        raise ConfigError([f"the config is {len(text)} characters long; {what} {limit}"
                           + (" (a whole one is under 2000)" if limit == MAX_CONFIG_CHARS else "")])


def _too_deep(depth: int | None = None) -> str:
    got = f", got {depth}" if depth is not None else ""
    return f"the config is nested too deeply: at most {MAX_CONFIG_DEPTH} levels of lists and mappings{got}"


def _json_depth(text: str) -> int:
    """How deeply the lists and objects of a JSON text nest, counted before parsing it (``json`` would
    recurse once a level, and a 100,000-deep ``[[[…]]]`` overflows Python's stack)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def _yaml_problem(exc: BaseException) -> str:
    """PyYAML's problem in one line with where it is ("found unhashable key (line 1, column 3)"), not
    its several lines that quote the text around it."""
    mark = getattr(exc, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
    return _first_line(getattr(exc, "problem", None) or getattr(exc, "context", None) or exc) + where


def _first_line(exc: object) -> str:
    """The first line of an error from a parser, at most 200 characters."""
    line = str(exc).strip().split("\n", 1)[0]
    if "integer string conversion" in line:  # Python's own limit, with advice meant for programmers
        return "a number in it has more than 4300 digits"
    return line if len(line) <= 200 else f"{line[:200]}…"


@functools.cache
def _yaml_loader() -> type:
    """``yaml.SafeLoader`` with bounds: nesting at most :data:`MAX_CONFIG_DEPTH` deep (PyYAML's composer
    recurses once a level), and aliases (``*name``) only of single values, whose repeats may add at most
    :data:`MAX_CONFIG_CHARS` characters. An alias of a list or mapping is refused: nine levels of them
    (the "billion laughs") make a text of a few hundred bytes into 10⁹ values, and quoting or checking it
    would expand them all."""
    import yaml

    class BoundedLoader(yaml.SafeLoader):
        def __init__(self, stream: str) -> None:
            super().__init__(stream)
            self.depth = 0
            self.repeated = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                node = self.anchors.get(event.anchor)
                if node is not None and not isinstance(node, yaml.ScalarNode):
                    raise ConfigError([f"the config repeats a list or mapping with the YAML alias "
                                       f"*{event.anchor[:QUOTE_CHARS]} (line {event.start_mark.line + 1}); "
                                       "write it out instead (an alias may only repeat a single value)"])
                if node is not None:
                    self.repeated += len(node.value)
                    if self.repeated > MAX_CONFIG_CHARS:
                        raise ConfigError([f"the config's YAML aliases repeat more than {MAX_CONFIG_CHARS} "
                                           "characters; write the values out instead"])
                return super().compose_node(parent, index)
            self.depth += 1
            try:
                if self.depth > MAX_CONFIG_DEPTH + 1:  # + 1: the scalars inside the deepest list
                    raise ConfigError([_too_deep()])
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return BoundedLoader


def _mapping(data: object) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError([f"a config must be a mapping of setting to value, got {type(data).__name__}"])
    return data


def _parse_hparams(loss: str, raw: Mapping[Any, Any], errors: list[str]) -> dict[str, Any]:
    """The loss's hyperparameters, each read by its :class:`Param` ("scale=20" → 20.0, "bias=true" → True);
    what cannot be read goes to ``errors``. An unknown loss or name keeps its value: ``problems()`` names it."""
    try:
        spec = get_spec(loss)
    except UnknownLoss:
        return {str(k): v for k, v in raw.items()}
    params = {hp.name: hp for hp in spec.hparams}
    parsed = {}
    for key, value in raw.items():
        try:
            parsed[str(key)] = params[key].parse(value) if key in params else value
        except ValueError as exc:
            errors.append(str(exc))
    return parsed
