"""Settings of the installation, as opposed to settings of a run: where data and runs live, and what a
public server allows.

These never come from a run's config or a URL, so nothing a page receives can name a path or lift a limit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T", int, float)

DATA_DIR_ENV = "DMLVIZ_DATA_DIR"
STORE_DIR_ENV = "DMLVIZ_STORE_DIR"
PUBLIC_ENV = "DMLVIZ_PUBLIC"
MAX_EPOCHS_ENV = "DMLVIZ_MAX_EPOCHS"
MAX_RUNS_ENV = "DMLVIZ_MAX_RUNS"
# What DMLVIZ_PUBLIC=1 allows unless DMLVIZ_MAX_EPOCHS / DMLVIZ_MAX_RUNS say otherwise.
PUBLIC_MAX_EPOCHS = 10.0
PUBLIC_MAX_RUNS = 1


class SettingsError(ValueError):
    """An installation setting (an environment variable) has a value that means nothing."""


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The dataset cache: ``override``, else ``$DMLVIZ_DATA_DIR``, else ``~/.cache/dmlviz``."""
    chosen = override or os.environ.get(DATA_DIR_ENV) or Path.home() / ".cache" / "dmlviz"
    return Path(chosen).expanduser()


def store_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The run store: ``override``, else ``$DMLVIZ_STORE_DIR``, else ``~/.local/share/dmlviz``."""
    chosen = override or os.environ.get(STORE_DIR_ENV) or Path.home() / ".local" / "share" / "dmlviz"
    return Path(chosen).expanduser()


def export_dir(store: str | os.PathLike[str]) -> Path:
    """Where ``python -m dmlviz export`` writes a file it is not given a path for: ``exports/`` in the
    run store's folder, beside the runs it comes from, whatever folder the command runs in."""
    return Path(store) / "exports"


@dataclass(frozen=True)
class Limits:
    """What this server lets a run do (a public demo: no custom data, short runs, few at a time).

    ``custom_datasets``: whether runs may read ``<data dir>/custom/`` (a public server keeps its files).
    ``max_epochs``: the longest run, in passes over its dataset (None: no cap).
    ``max_runs``: the most runs training at once (None: the runner's own default).
    """

    custom_datasets: bool = True
    max_epochs: float | None = None
    max_runs: int | None = None


def limits() -> Limits:
    """The limits set by ``$DMLVIZ_PUBLIC``, ``$DMLVIZ_MAX_EPOCHS`` and ``$DMLVIZ_MAX_RUNS``."""
    public = os.environ.get(PUBLIC_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    max_epochs = _positive(MAX_EPOCHS_ENV, float, PUBLIC_MAX_EPOCHS if public else None)
    max_runs = _positive(MAX_RUNS_ENV, int, PUBLIC_MAX_RUNS if public else None)
    return Limits(not public, max_epochs, max_runs)


def _positive(name: str, kind: Callable[[str], T], default: T | None) -> T | None:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or not 0 < value < float("inf"):
        # The owner's mistake, not a visitor's: refuse to run rather than run without the cap.
        raise SettingsError(f"${name} must be a positive {'whole ' if kind is int else ''}number, got {text!r}")
    return value
