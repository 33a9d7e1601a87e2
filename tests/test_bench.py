"""The measurement scripts of bench/, on the offline digits with a few steps, writing into a temp folder."""

import json
import sys

import numpy as np
import torch

from dmlviz.config import RunConfig
from dmlviz.engine import setup


def digits(**settings):
    return RunConfig.from_dict({"dataset": "digits", "device": "cpu", "probe_size": 100, **settings})


def test_evaluating_every_epoch_leaves_training_as_it_was(one_thread):
    from bench.converge import evaluate, train_epoch

    # BatchNorm too: the evaluation runs in eval mode, so its running statistics must not move.
    config = digits(loss="center", model="lenetpp-light", train_size=64, batch_size=16, epochs=2)
    evaluated, plain = setup(config), setup(config)
    for _ in range(2):
        assert train_epoch(evaluated) and train_epoch(plain)
        assert 0.0 <= evaluate(evaluated, 1.0, 1.0)["test_acc"] <= 1.0
    for (name, a), b in zip(evaluated.model.state_dict().items(), plain.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert torch.equal(evaluated.loss_fn.centers, plain.loss_fn.centers)


def test_converge_paper_stops_after_patience_epochs_without_a_new_best(tmp_path, monkeypatch, one_thread):
    from bench import converge

    argv = ["converge", "paper", "--dataset", "digits", "--device", "cpu", "--max-epochs", "3", "--patience", "1",
            "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path), "--set", "model=lenetpp-light",
            "--set", "train_size=64", "--set", "batch_size=16", "--set", "probe_size=100"]
    monkeypatch.setattr(sys, "argv", argv)
    converge.main()
    (label, result), = json.loads((tmp_path / "converge.json").read_text()).items()
    assert label.startswith("lenetpp norm=none model=lenetpp-light")
    accuracies = [epoch["test_acc"] for epoch in result["epochs"]]
    assert 1 <= len(accuracies) <= 3 and result["best_test_acc"] == max(accuracies)
    assert accuracies.index(max(accuracies)) + 1 == result["best_epoch"]
    if result["stopped"].startswith("no new best"):
        assert len(accuracies) - result["best_epoch"] == 1
    assert "98.50%" in (tmp_path / "converge.md").read_text()


def test_converge_losses_writes_its_budgets_table_with_outcomes(tmp_path, monkeypatch, one_thread):
    from bench import converge

    argv = ["converge", "losses", "--dataset", "digits", "--device", "cpu", "--losses", "center", "--dims", "3",
            "--steps", "3", "--probe-size", "100", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", argv)
    converge.main()
    (row,) = json.loads((tmp_path / "losses-3steps.json").read_text())
    assert (row["loss"], row["dim"], row["outcome"], row["steps"]) == ("center", 3, "finished", 3)
    assert "| center | 3 | all | finished |" in (tmp_path / "losses-3steps.md").read_text()


def test_a_loss_that_cannot_take_the_dim_is_a_skipped_row_and_a_diverging_one_says_so(one_thread):
    from bench.losses import BASE, measure, outcome_text, results_stem

    base = {**BASE, "dataset": "digits", "steps": 10, "probe_size": 100, "classes": None}
    skipped = measure("fixed-simplex", 3, 1.0, 0, None, base)  # all 10 classes need d ≥ 9
    assert skipped["outcome"] == "skipped" and "feature_dim ≥ C − 1" in outcome_text(skipped)
    wild = {**base, "classes": None, "lr": 10.0, "optimizer": "sgd", "momentum": 0.99, "norm": "none"}
    diverged = measure("center", 2, 1.0, 0, None, wild)
    assert diverged["outcome"] == "diverged" and outcome_text(diverged).startswith("diverged at step")
    assert diverged["test_acc"] is None
    assert (results_stem(0.5), results_stem(3), results_stem(3, 20)) == ("losses", "losses-3ep", "losses-20steps")


def test_gpu_check_smoke_on_a_cpu(tmp_path, monkeypatch):
    from bench import gpu_check

    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # the check sets it; the test leaves it as it was
    monkeypatch.delenv("OUT", raising=False)
    out = tmp_path / "gpu_check.json"
    monkeypatch.setattr(sys, "argv", ["gpu_check", "--device", "cpu", "--smoke", "--data-dir", str(tmp_path / "data"),
                                      "--out", str(out)])
    gpu_check.main()
    results = json.loads(out.read_text())
    assert set(results) >= {"env", "engine", "fp32", "pairs", "picture", "live"}
    assert not [name for name in gpu_check.PARTS if "error" in results[name]]
    assert results["env"]["precision_auto_picks"] in ("bf16", "fp32")
    assert results["engine"]["identical_features"] and results["fp32"]["second_run"]["precision"] == "fp32"
    assert results["engine"]["second_run"]["snapshots"] >= 3
    assert np.isfinite(results["engine"]["step_timings"]["ms_per_step_block"])
    assert results["live"] == {"skipped": "not asked for (--live)", "seconds": results["live"]["seconds"]}


def test_pair_losses_times_masks_against_pml_s_lists_and_counts_their_waits(tmp_path, monkeypatch, one_thread):
    from bench import pair_losses

    out = tmp_path / "pair_losses.json"
    monkeypatch.setattr(sys, "argv", ["pair_losses", "--batch-sizes", "16", "--repeats", "1", "--out", str(out)])
    pair_losses.main()
    rows = json.loads(out.read_text())["rows"]
    assert {(row["loss"], row["params"].get("miner")) for row in rows} >= {
        ("contrastive", None), ("triplet", None), ("triplet", "semihard"), ("triplet", "hard"), ("circle", None)}
    assert all(row["forward_waits"] == 0 and row["forward_ms"] > 0 and row["listed_ms"] > 0 for row in rows)
    assert all(row["listed_waits"] > 0 for row in rows), "PML's lists wait for a GPU: the comparison shows it"
