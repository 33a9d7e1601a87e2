"""A run's budget, counted from its settings: it bounds what a real run stores, and a server refuses a run
over its limits with the numbers."""

from pathlib import Path

import pytest

from dmlviz import budget, regions
from dmlviz.config import ConfigError, RunConfig
from dmlviz.engine import formation_due, train
from dmlviz.runner import StoreSink
from dmlviz.store import RunStore

# The settings a visitor used to fill a public demo's disk: ~160 MB a snapshot, hundreds kept.
HOSTILE = {"dataset": "mnist", "feature_dim": 4096, "probe_size": 100_000, "snapshot_steps": 1, "steps": 400,
           "batch_size": 2}


@pytest.mark.parametrize("settings", [{}, {"feature_dim": 64, "loss": "center", "snapshot_steps": 1}])
def test_the_budget_bounds_what_a_real_run_stores(tmp_path: Path, one_thread, settings: dict) -> None:
    config = RunConfig.from_dict({"dataset": "digits", "device": "cpu", "probe_size": 120, "steps": 30,
                                  "snapshot_every": 0.05, "snapshot_budget": 1.0, **settings})
    store = RunStore(tmp_path)
    run_id = store.create_run(config.to_dict())
    assert train(config, tmp_path / "data", StoreSink(store, run_id), threads=1).outcome == "finished"
    db = store._db()
    sizes = [row[0] for row in db.execute(
        "SELECT length(features) + length(class_means) + length(class_vectors) + coalesce(length(decision), 0)"
        " + coalesce(length(forces), 0)"
        " + length(metrics) + 100"
        " FROM snapshots WHERE run_id = ?", (run_id,))]
    (series,) = db.execute("SELECT count(*) FROM series WHERE run_id = ?", (run_id,)).fetchone()
    estimate = budget.estimate(config)
    # A 2-D run's decision map is counted at its uncompressed size: an upper bound of what it takes.
    slack = regions.map_bytes(10) if config.feature_dim == 2 else 0
    assert max(sizes) <= estimate.snapshot_bytes <= max(sizes) + budget.SNAPSHOT_OVERHEAD + slack
    assert len(sizes) <= estimate.snapshots_kept
    assert series * budget.SERIES_ROW <= estimate.series_bytes


@pytest.mark.parametrize("steps", [1, 7, 100, 469, 5000])
def test_formation_count_is_what_the_engine_asks_for(steps: int) -> None:
    last, count = 0, 0
    for step in range(1, steps + 1):
        if formation_due(step, last, steps):
            last, count = step, count + 1
    assert budget.formation_count(steps) == count


def test_the_hostile_run_is_counted_in_tens_of_gigabytes_and_a_default_run_in_megabytes() -> None:
    hostile = budget.estimate(RunConfig.from_dict(HOSTILE))
    # 10,000 test images (the probe is at most the test set) × 4,096 floats: 164 MB a snapshot.
    assert hostile.snapshot_bytes == pytest.approx(10_000 * 4096 * 4, rel=0.01)
    assert hostile.store_bytes > 50e9 and hostile.memory_bytes > 1e9
    default = budget.estimate(RunConfig.from_dict({"dataset": "mnist", "epochs": 1}))
    # 2-D: the decision maps are counted at their uncompressed size (19 kB a snapshot), stored in a few kB.
    assert default.store_bytes < 30e6 and default.memory_bytes < 1e9
    wider = budget.estimate(RunConfig.from_dict({"dataset": "mnist", "epochs": 1, "feature_dim": 128}))
    assert wider.snapshot_bytes > default.snapshot_bytes and wider.memory_bytes > default.memory_bytes


def test_a_public_server_refuses_a_run_over_its_budget_with_the_numbers(monkeypatch) -> None:
    monkeypatch.setenv("DMLVIZ_PUBLIC", "1")
    problems = RunConfig.from_dict(HOSTILE).limit_problems()
    assert len(problems) == 1 and "in the run store (164 MB a snapshot" in problems[0]
    assert "this server allows 1000 MB a run" in problems[0] and "fewer probe images" in problems[0]
    assert RunConfig.from_dict({"dataset": "mnist"}).limit_problems() == []
    monkeypatch.setenv("DMLVIZ_MAX_RUN_MEMORY_MB", "100")
    with pytest.raises(ConfigError, match="of memory; this server allows 100 MB a run"):
        RunConfig.from_dict({"dataset": "mnist"}).check_limits()


def test_an_installation_without_limits_counts_nothing(monkeypatch) -> None:
    for name in ("DMLVIZ_PUBLIC", "DMLVIZ_MAX_RUN_MB", "DMLVIZ_MAX_RUN_MEMORY_MB"):
        monkeypatch.delenv(name, raising=False)
    assert RunConfig.from_dict(HOSTILE).limit_problems() == []  # the owner's own machine: their choice
