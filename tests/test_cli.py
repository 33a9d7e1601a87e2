"""The CLI: real training into the store, run management, and clear errors for bad input."""

import numpy as np
import pytest

from dmlviz.cli import main
from dmlviz.store import RunStore


@pytest.mark.slow
def test_short_real_mnist_run_learns_far_above_chance(tmp_path, data_dir_with_mnist, capsys):
    code = main(["--store", str(tmp_path), "train", "--dataset", "mnist", "--data-dir", str(data_dir_with_mnist),
                 "--train-size", "4000", "--epochs", "3", "--batch-size", "64", "--lr", "0.002", "--loss", "center",
                 "--probe-size", "1000", "--device", "cpu", "--quiet"])
    assert code == 0
    store = RunStore(tmp_path)
    (record,) = store.list_runs()
    assert record.status == "finished" and record.summary["step"] == 3 * (4000 // 64)
    # 2-D features learn slowly at first: 186 steps reach about 60 % (chance is 10 %).
    assert record.summary["test_acc"] > 0.45
    index = store.snapshot_index(record.id)
    assert index[0].step == 0 and index[-1].kind == "final"  # the untrained feature space comes first
    assert [i.kind for i in index].count("epoch") == 2  # the third epoch end is the final snapshot
    final = store.latest_snapshot(record.id)
    assert final.features.shape == (1000, 2) and final.features.dtype == np.float32
    assert final.class_vectors["centers"].shape == (10, 2)
    assert store.get_info(record.id, "model") == "lenetpp-light"
    assert f"run {record.id} finished" in capsys.readouterr().err


def test_a_one_epoch_run_keeps_its_formation_without_gaps(tmp_path):
    """Nobody watches a CLI run, so the clock keeps to its small budget; the formation snapshots still
    cover the epoch: dense at the start, never more than a tenth of the run apart."""
    assert main(["--store", str(tmp_path), "train", "--dataset", "digits", "--loss", "center", "--feature-dim", "2",
                 "--epochs", "1", "--batch-size", "8", "--probe-size", "100", "--device", "cpu", "--quiet"]) == 0
    store = RunStore(tmp_path)
    (record,) = store.list_runs()
    total = record.summary["step"]
    assert record.status == "finished" and total == 1348 // 8
    steps = [info.step for info in store.snapshot_index(record.id)]
    assert len(steps) >= 30 and steps[0] == 0 and steps[-1] == total
    assert max(np.diff(steps)) <= total / 10
    assert steps[:6] == list(range(6))  # every step at first


def test_train_from_yaml_with_flag_overrides_then_list_show_delete(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("dataset: digits\nloss: center\nloss_params: {lambda: 0.5}\nsteps: 50\nseed: 3\n")
    store_dir = str(tmp_path / "store")
    assert main(["--store", store_dir, "train", "--config", str(config), "--steps", "8", "--hp", "alpha=0.25",
                 "--name", "yaml run", "--quiet"]) == 0
    (record,) = RunStore(store_dir).list_runs()
    assert record.config["steps"] == 8 and record.config["seed"] == 3
    assert record.config["loss_params"] == {"lambda": 0.5, "alpha": 0.25}
    capsys.readouterr()
    assert main(["--store", store_dir, "runs", "list"]) == 0
    assert "yaml run" in capsys.readouterr().out
    assert main(["--store", store_dir, "runs", "show", str(record.id)]) == 0
    shown = capsys.readouterr().out
    assert "finished" in shown and "lambda: 0.5" in shown
    assert main(["--store", store_dir, "runs", "delete", str(record.id)]) == 0
    assert RunStore(store_dir).list_runs() == []


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "--lr", "fast"], "error: lr must be a number, got 'fast'"),
    (["train", "--loss", "arcfce"], "error: unknown loss 'arcfce'"),
    (["train", "--loss", "center", "--hp", "alpha=2"], "error: alpha must be between 0 and 1, got 2"),
    (["train", "--hp", "lambda"], "error: --hp takes NAME=VALUE, got 'lambda'"),
    (["train", "--config", "/nonexistent.yaml"], "error: cannot read the config file /nonexistent.yaml"),
    (["runs", "show", "999"], "error: no run with id 999"),
])
def test_bad_input_gets_a_message_and_exit_status_2(tmp_path, capsys, argv, message):
    assert main(["--store", str(tmp_path), *argv]) == 2
    assert message in capsys.readouterr().err
    assert RunStore(tmp_path).list_runs() == []  # nothing half-made is left behind


def test_unknown_flag_is_refused_by_the_parser(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["--store", str(tmp_path), "train", "--learning-rate", "0.1"])
    assert info.value.code == 2
    assert "unrecognized arguments: --learning-rate" in capsys.readouterr().err


def test_missing_dataset_fails_the_run_with_the_reason(tmp_path, capsys):
    code = main(["--store", str(tmp_path / "store"), "train", "--dataset", "mnist",
                 "--data-dir", str(tmp_path / "empty"), "--quiet"])
    assert code == 1
    (record,) = RunStore(tmp_path / "store").list_runs()
    assert record.status == "failed" and "digits" in record.error
    assert "digits" in capsys.readouterr().err
