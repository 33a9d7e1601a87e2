"""The placeholder home page renders over a real store."""

import numpy as np
from streamlit.testing.v1 import AppTest

from dmlviz import settings
from dmlviz.snapshot import Snapshot
from dmlviz.store import RunStore


def test_home_lists_stored_runs(tmp_path, monkeypatch):
    monkeypatch.setenv(settings.STORE_DIR_ENV, str(tmp_path))
    store = RunStore(tmp_path)
    run_id = store.create_run({"loss": "center", "dataset": "mnist", "feature_dim": 2}, name="petals")
    store.add_snapshot(run_id, Snapshot(5, 0.1, 1.0, "final", {"test_acc": 0.93}, np.zeros((3, 2), np.float32),
                                        np.zeros((10, 2), np.float32)))
    app = AppTest.from_file("../app.py").run(timeout=30)
    assert not app.exception
    table = app.dataframe[0].value
    assert list(table["name"]) == ["petals"] and list(table["test accuracy"]) == [0.93]
