"""Settings of the installation, as opposed to settings of a run: where data and runs live.

These never come from a run's config or a URL, so nothing a page receives can name a path.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "DMLVIZ_DATA_DIR"
STORE_DIR_ENV = "DMLVIZ_STORE_DIR"


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The dataset cache: ``override``, else ``$DMLVIZ_DATA_DIR``, else ``~/.cache/dmlviz``."""
    chosen = override or os.environ.get(DATA_DIR_ENV) or Path.home() / ".cache" / "dmlviz"
    return Path(chosen).expanduser()


def store_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The run store: ``override``, else ``$DMLVIZ_STORE_DIR``, else ``~/.local/share/dmlviz``."""
    chosen = override or os.environ.get(STORE_DIR_ENV) or Path.home() / ".local" / "share" / "dmlviz"
    return Path(chosen).expanduser()
