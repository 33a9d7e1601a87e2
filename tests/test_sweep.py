"""Sweeps: every combination of the axes for every seed, trained once, and each cell's mean with its interval."""

import math

import numpy as np
import pytest
from scipy import stats

from dmlviz import sweep
from dmlviz.cli import main
from dmlviz.config import ConfigError
from dmlviz.store import RunStore

SWEEP = """\
base: {dataset: digits, device: cpu, steps: 12, probe_size: 100, snapshot_steps: 6, batch_size: 32}
axes:
  loss: [softmax, center]
seeds: 2
"""


def test_a_sweep_is_every_combination_of_its_axes_for_every_seed():
    plan = sweep.parse("base: {dataset: digits}\naxes:\n  loss: [softmax, arcface]\n  hp.scale: [10, 20]\n"
                       "seeds: [3, 4, 5]\n")
    # Softmax has no scale: one cell for it, two for ArcFace's scales.
    assert plan.runs == 9 and plan.seeds == (3, 4, 5)
    assert [cell.label for cell in plan.cells] == ["loss=softmax, hp.scale=—", "loss=arcface, hp.scale=10",
                                                   "loss=arcface, hp.scale=20"]
    assert [cell.configs[0].loss_params.get("scale") for cell in plan.cells] == [None, 10.0, 20.0]
    assert all(config.dataset == "digits" for cell in plan.cells for config in cell.configs)
    assert [config.seed for config in plan.cells[0].configs] == [3, 4, 5]


def test_a_bad_sweep_names_every_mistake():
    with pytest.raises(ConfigError) as raised:
        sweep.parse("base: {dataset: digits}\naxes:\n  lerning_rate: [1]\n  lr: 0.1\n  seed: [1, 2]\nseeds: 0\n"
                    "colour: red\n")
    text = "; ".join(raised.value.errors)
    assert "line 3: 'lerning_rate' is not a setting to sweep" in text and "line 4: lr takes a list" in text
    assert "line 5: 'seed' is not a setting to sweep" in text and "line 6: seeds is a count" in text
    assert "line 7: unknown key 'colour'" in text
    with pytest.raises(ConfigError, match="lr=-1: lr must be between"):
        sweep.parse("axes:\n  lr: [0.001, -1]\n")
    with pytest.raises(ConfigError, match="the sweep has 1010 runs; at most 1000"):
        sweep.parse("axes:\n  seed_free: []\n".replace("seed_free: []", "epochs: " + str(list(range(1, 102)))) +
                    "seeds: 10\n")


def test_the_interval_is_student_s_t_over_the_seeds():
    values = np.array([0.9, 0.92, 0.95])
    mean, half = sweep.mean_interval(values)
    assert mean == pytest.approx(0.9233333) and half == pytest.approx(
        stats.t.ppf(0.975, 2) * values.std(ddof=1) / math.sqrt(3))
    assert sweep.mean_interval(np.array([0.5])) == (0.5, None) and sweep.mean_interval(np.array([])) == (None, None)


def test_a_sweep_trains_what_the_store_lacks_and_tabulates_its_cells(tmp_path, capsys, one_thread):
    path = tmp_path / "sweep.yaml"
    path.write_text(SWEEP)
    store_args = ["--store", str(tmp_path / "store"), "sweep", str(path), "--data-dir", str(tmp_path / "data")]
    assert main([*store_args, "--dry-run"]) == 0
    assert "2 cells × 2 seeds = 4 runs" in capsys.readouterr().err
    assert main([*store_args, "--csv", str(tmp_path / "table.csv")]) == 0
    out = capsys.readouterr()
    assert "4/4 loss=center, seed 1: finished (run 4)" in out.err
    store = RunStore(tmp_path / "store")
    runs = store.list_runs()
    assert len(runs) == 4 and {r.status for r in runs} == {"finished"}
    rows = sweep.results(sweep.parse(SWEEP), store)
    assert [(row["loss"], row["runs"]) for row in rows] == [("softmax", 2), ("center", 2)]
    accuracies = [r.summary["test_acc"] for r in sorted(runs, key=lambda r: r.id)[:2]]  # softmax, seeds 0 and 1
    assert rows[0]["test accuracy"] == pytest.approx(np.mean(accuracies))
    assert rows[0]["test accuracy ± 95 %"] == pytest.approx(sweep.mean_interval(np.array(accuracies))[1])
    assert "test accuracy" in out.out and (tmp_path / "table.csv").read_text().startswith("loss,runs,")
    # Run again: every run is stored, nothing trains.
    assert main(store_args) == 0
    assert "1/4 loss=softmax, seed 0: stored" in capsys.readouterr().err and len(store.list_runs()) == 4
    # One seed (stored already): no interval, printed as a dash.
    path.write_text(SWEEP.replace("seeds: 2", "seeds: 1"))
    assert main(store_args) == 0
    table = capsys.readouterr().out
    assert "—" in table and "None" not in table


def test_the_readme_s_example_sweep_parses():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    example = readme.split("## Sweeps", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    plan = sweep.parse(example)
    assert [cell.label for cell in plan.cells][:2] == ["loss=normface, hp.margin=—", "loss=cosface, hp.margin=0.2"]
    assert plan.runs == 7 * 3
