"""Fixtures shared by the test files: writable copies of the offline datasets."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def _shared_data() -> Path:
    """The read-only offline datasets (see their README.md): ``$DMLVIZ_TEST_DATA``, else ``shared/data``
    beside the checkout, else the workplace's copy. Tests copy from it and never write into it."""
    candidates = [Path(os.environ["DMLVIZ_TEST_DATA"])] if "DMLVIZ_TEST_DATA" in os.environ else []
    candidates += [Path(__file__).resolve().parents[2] / "shared" / "data", Path("/work/shared/data")]
    return next((path for path in candidates if (path / "MNIST" / "raw").is_dir()), candidates[0])


SHARED_DATA = _shared_data()


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The read-only shared data folder; tests that need it are skipped where it is absent."""
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"no offline datasets in {SHARED_DATA} (set DMLVIZ_TEST_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def data_dir_with_mnist(shared_data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A writable data dir holding MNIST's .gz files, once per session (torchvision unpacks them there)."""
    root = tmp_path_factory.mktemp("data")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for source in (shared_data_dir / "MNIST" / "raw").glob("*.gz"):
        # copyfile, not copy2: the shared files are read-only and the copies must not be.
        shutil.copyfile(source, raw / source.name)
    return root


@pytest.fixture
def one_thread():
    """Tiny tensors: a second thread only adds waiting, a lot of it on a busy machine (20x measured)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
