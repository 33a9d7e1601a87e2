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
MAX_RUN_MB_ENV = "DMLVIZ_MAX_RUN_MB"
MAX_RUN_MEMORY_MB_ENV = "DMLVIZ_MAX_RUN_MEMORY_MB"
MAX_QUEUE_ENV = "DMLVIZ_MAX_QUEUE"
MAX_CUSTOM_MB_ENV = "DMLVIZ_MAX_CUSTOM_MB"
# What DMLVIZ_PUBLIC=1 allows unless the variables above say otherwise.
PUBLIC_MAX_EPOCHS = 10.0
PUBLIC_MAX_RUNS = 1
PUBLIC_MAX_RUN_MB = 1000.0  # a 1-epoch default run stores a few MB; 4096-wide features of 10,000 probe images, 66 GB
PUBLIC_MAX_RUN_MEMORY_MB = 4000.0  # a default run's budget is about 0.5 GB (dmlviz.budget)
PUBLIC_MAX_QUEUE = 8  # jobs queued or running on the whole server
# A custom dataset decoded (1 MB = 2**20 bytes), on any server: eleven CIFAR-10s; loading holds about twice it.
DEFAULT_MAX_CUSTOM_MB = 2048.0


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
    ``max_run_mb`` / ``max_run_memory_mb``: the most a run may take in the store and in memory, by its
    budget counted before it starts (``dmlviz.budget``; None: no cap).
    ``max_queue``: the most jobs (a run, or a comparison's runs) queued or running on the whole server.
    ``owner_only``: only the visitor who started a run may stop, rename, tag or delete it (a public demo).
    ``max_custom_mb``: the most a custom dataset may take once decoded, checked from its files' headers.
    """

    custom_datasets: bool = True
    max_epochs: float | None = None
    max_runs: int | None = None
    max_run_mb: float | None = None
    max_run_memory_mb: float | None = None
    max_queue: int | None = None
    owner_only: bool = False
    max_custom_mb: float = DEFAULT_MAX_CUSTOM_MB


def public() -> bool:
    """Whether ``$DMLVIZ_PUBLIC`` makes this server a public demo."""
    return os.environ.get(PUBLIC_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def limits() -> Limits:
    """The limits set by ``$DMLVIZ_PUBLIC`` and the ``$DMLVIZ_MAX_*`` variables."""
    shared = public()
    return Limits(
        custom_datasets=not shared,
        max_epochs=_positive(MAX_EPOCHS_ENV, float, PUBLIC_MAX_EPOCHS if shared else None),
        max_runs=_positive(MAX_RUNS_ENV, int, PUBLIC_MAX_RUNS if shared else None),
        max_run_mb=_positive(MAX_RUN_MB_ENV, float, PUBLIC_MAX_RUN_MB if shared else None),
        max_run_memory_mb=_positive(MAX_RUN_MEMORY_MB_ENV, float, PUBLIC_MAX_RUN_MEMORY_MB if shared else None),
        max_queue=_positive(MAX_QUEUE_ENV, int, PUBLIC_MAX_QUEUE if shared else None),
        owner_only=shared,
        max_custom_mb=_positive(MAX_CUSTOM_MB_ENV, float, DEFAULT_MAX_CUSTOM_MB),
    )


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
