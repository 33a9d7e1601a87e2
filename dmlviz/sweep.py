"""Sweeps: one protocol for every loss and setting, several seeds, and the spread of what they give.

A sweep is a YAML file: ``base`` settings (as ``RunConfig`` reads them), ``axes`` (a setting, ``loss`` or a
loss hyperparameter ``hp.<name>``, each with the values to try) and ``seeds`` (a count, or the seeds). Its
cells are every combination of the axes' values; each cell is trained once per seed. Its runs are ordinary
runs of the store: a run already there with the same settings (``config_hash``) is used again, so a sweep
that was stopped goes on where it stopped. The results are each cell's mean and 95 % confidence interval
(Student's t over the seeds) of the numbers its runs ended with.
"""

from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dmlviz.config import HP_PREFIX, PARAMS, ConfigError, RunConfig, yaml_document
from dmlviz.losses import UnknownLoss, get_spec
from dmlviz.status import ACTIVE, RunStatus
from dmlviz.store import MAX_NAME_LENGTH, RunRecord, RunStore

if TYPE_CHECKING:
    from pathlib import Path

    from dmlviz.engine import Control

MAX_RUNS = 1000  # a sweep's cells × seeds: a typo in a range must not queue a year of training
#: The numbers a sweep's table gives for each cell (summary metrics of the runs' ends), and their columns.
RESULTS = {"test_acc": "test accuracy", "p_at_1": "P@1", "map_at_r": "MAP@R", "fisher_ratio": "Fisher ratio",
           "intra_angle": "intra angle (°)", "inter_angle": "inter angle (°)", "elapsed": "seconds"}


@dataclass(frozen=True)
class Cell:
    """One combination of the axes' values, and its run's settings for each seed."""

    values: dict[str, Any]
    configs: tuple[RunConfig, ...]

    @property
    def label(self) -> str:
        return ", ".join(f"{name}={value}" for name, value in self.values.items()) or "base"


@dataclass(frozen=True)
class Sweep:
    cells: tuple[Cell, ...]
    seeds: tuple[int, ...]

    @property
    def runs(self) -> int:
        return len(self.cells) * len(self.seeds)


def parse(text: str) -> Sweep:
    """The sweep a YAML text describes; a ``ConfigError`` naming every mistake (with its line) at once."""
    data, lines = yaml_document(text)
    if not isinstance(data, dict):
        raise ConfigError(["a sweep is a mapping of base, axes and seeds"])
    errors = [f"line {lines.get((key,), 1)}: unknown key {key!r}; a sweep has base, axes and seeds"
              for key in data if key not in ("base", "axes", "seeds")]
    base, axes, seeds = data.get("base") or {}, data.get("axes") or {}, data.get("seeds", 1)
    if not isinstance(base, dict):
        errors.append(f"line {lines.get(('base',), 1)}: base is a mapping of settings")
        base = {}
    if not isinstance(axes, dict):
        errors.append(f"line {lines.get(('axes',), 1)}: axes is a mapping of a setting to its values")
        axes = {}
    for name, values in axes.items():
        if not isinstance(name, str) or (name not in PARAMS and not name.startswith(HP_PREFIX)) or name == "seed":
            errors.append(f"line {lines.get(('axes', name), 1)}: {name!r} is not a setting to sweep: a setting, "
                          f"loss, or a hyperparameter hp.<name> (seeds have their own key)")
        elif not isinstance(values, list) or not values:
            errors.append(f"line {lines.get(('axes', name), 1)}: {name} takes a list of values, e.g. [0.1, 0.5]")
    if isinstance(seeds, bool) or not (isinstance(seeds, int) and seeds >= 1 or isinstance(seeds, list) and seeds
                                       and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)):
        errors.append(f"line {lines.get(('seeds',), 1)}: seeds is a count (≥ 1) or a list of seeds")
        seeds = 1
    seed_list = tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds)
    if errors:
        raise ConfigError(errors)
    names = list(axes)
    combinations = list(itertools.product(*(axes[name] for name in names)))
    if len(combinations) * len(seed_list) > MAX_RUNS:
        raise ConfigError([f"the sweep has {len(combinations) * len(seed_list)} runs; at most {MAX_RUNS}"])
    cells, seen = [], set()
    for combination in combinations:
        values = dict(zip(names, combination, strict=True))
        # A hyperparameter's axis reaches only the losses that have it: the others get one cell, marked "—".
        own = _hparams(values.get("loss", base.get("loss", RunConfig.loss)))
        settings = {name: value for name, value in values.items()
                    if own is None or not name.startswith(HP_PREFIX) or name[len(HP_PREFIX):] in own}
        if repr(sorted(settings.items())) in seen:
            continue
        seen.add(repr(sorted(settings.items())))
        values = {name: values[name] if name in settings else "—" for name in names}
        try:
            configs = tuple(RunConfig.from_dict({**base, **settings, "seed": seed}) for seed in seed_list)
        except ConfigError as error:
            errors += [f"{Cell(values, ()).label}: {message}" for message in error.errors]
            continue
        cells.append(Cell(values, configs))
    if errors:
        raise ConfigError(errors)
    return Sweep(tuple(cells), seed_list)


def _hparams(loss: Any) -> set[str] | None:
    """The names of a loss's hyperparameters; None for a name that is no loss (its cells then say why)."""
    try:
        return {hp.name for hp in get_spec(loss).hparams}
    except (UnknownLoss, TypeError):
        return None


def finished(store: RunStore) -> dict[str, RunRecord]:
    """The store's newest finished run of each set of settings, by ``config_hash`` (the name aside)."""
    found: dict[str, RunRecord] = {}
    for record in store.list_runs([RunStatus.FINISHED]):  # newest first
        found.setdefault(record.config_hash, record)
    return found


def planned(sweep: Sweep) -> list[tuple[Cell, RunConfig]]:
    """Every run of the sweep, seed by seed: every cell has its first seed before any has its second, so the
    comparison takes shape early and each further seed narrows the intervals."""
    return [(cell, cell.configs[i]) for i in range(len(sweep.seeds)) for cell in sweep.cells]


def missing(sweep: Sweep, store: RunStore) -> list[tuple[Cell, RunConfig]]:
    """The runs to train: neither finished in the store nor queued or running already (each once)."""
    taken = set(finished(store)) | {record.config_hash for record in store.list_runs(list(ACTIVE))}
    todo = []
    for cell, config in planned(sweep):
        if config.config_hash() not in taken:
            taken.add(config.config_hash())
            todo.append((cell, config))
    return todo


def run_name(cell: Cell, config: RunConfig) -> str:
    """A sweep run's name, the same from the command line and the Sweep page."""
    return f"sweep · {cell.label} · seed {config.seed}"[:MAX_NAME_LENGTH]


def run(sweep: Sweep, store: RunStore, data_dir: Path | None, control: Control,
        said: Any = print) -> list[str]:
    """Train every run of the sweep the store does not have yet, one at a time; each one's outcome."""
    from dmlviz import settings
    from dmlviz.engine import train
    from dmlviz.runner import StoreSink

    outcomes = []
    done = finished(store)
    planned = [(cell, config) for cell in sweep.cells for config in cell.configs]
    for number, (cell, config) in enumerate(planned, start=1):
        where = f"{number}/{sweep.runs} {cell.label}, seed {config.seed}"
        if config.config_hash() in done:
            said(f"{where}: stored")
            continue
        run_id = store.create_run(config.to_dict(), name=run_name(cell, config),
                                  config_hash=config.config_hash(), status=RunStatus.RUNNING, pid=os.getpid())
        try:
            result = train(config, settings.data_dir(data_dir), StoreSink(store, run_id), control)
        except Exception as error:  # noqa: BLE001 — recorded with the run, then said by the caller
            store.set_status(run_id, RunStatus.FAILED, error=str(error))
            raise
        store.set_status(run_id, result.outcome, error=result.error)
        said(f"{where}: {result.outcome} (run {run_id})")
        outcomes.append(result.outcome)
        if result.outcome == RunStatus.STOPPED:
            break
    return outcomes


def results(sweep: Sweep, store: RunStore) -> list[dict[str, Any]]:
    """A row per cell: its values, how many of its seeds have a finished run, and for each number of
    ``RESULTS`` the mean over them and the half-width of its 95 % confidence interval (None with one run)."""
    rows = []
    done = finished(store)
    for cell in sweep.cells:
        records = [done[config.config_hash()] for config in cell.configs if config.config_hash() in done]
        row: dict[str, Any] = {**cell.values, "runs": len(records)}
        for key, column in RESULTS.items():
            values = np.array([r.summary[key] for r in records if math.isfinite(r.summary.get(key, math.nan))])
            row[column], row[f"{column} ± 95 %"] = mean_interval(values)
        rows.append(row)
    return rows


def mean_interval(values: np.ndarray) -> tuple[float | None, float | None]:
    """The mean and the half-width of its 95 % confidence interval by Student's t (None for fewer than two)."""
    if len(values) == 0:
        return None, None
    if len(values) == 1:
        return float(values[0]), None
    from scipy import stats

    spread = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return float(values.mean()), float(spread)
