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


def test_every_command_s_help_renders(capsys):
    """argparse expands % in help texts: a setting's "30 %" once broke ``train --help``."""
    import argparse

    from dmlviz.cli import build_parser

    def commands(parser: argparse.ArgumentParser) -> list[list[str]]:
        found = [[]]
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found += [[name, *rest] for rest in commands(sub)]
        return found

    paths = commands(build_parser())
    assert ["train"] in paths and ["runs", "list"] in paths
    for path in paths:
        with pytest.raises(SystemExit) as info:
            main([*path, "--help"])
        assert info.value.code == 0, path
        assert "usage: python -m dmlviz" in capsys.readouterr().out


def test_missing_dataset_fails_the_run_with_the_reason(tmp_path, capsys):
    code = main(["--store", str(tmp_path / "store"), "train", "--dataset", "mnist",
                 "--data-dir", str(tmp_path / "empty"), "--quiet"])
    assert code == 1
    (record,) = RunStore(tmp_path / "store").list_runs()
    assert record.status == "failed" and "digits" in record.error
    assert "digits" in capsys.readouterr().err


# --------------------------------------------------------------- every way out of a run is recorded
# (issue 15, item 7), runs stop, read-only listing, exit statuses

import os  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from dmlviz import cli  # noqa: E402

_ROOT = Path(__file__).resolve().parents[1]
_TINY = ["--dataset", "digits", "--probe-size", "100", "--device", "cpu", "--quiet"]


def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def _wait_for(predicate, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_runs_stop_stops_a_command_line_run_cleanly_with_sigterm(tmp_path):
    """`runs stop` from another shell sends SIGTERM; the run stops after its step, is kept as stopped with
    the reason, and its process exits with 128 + 15."""
    store_dir = tmp_path / "store"
    train = subprocess.Popen([sys.executable, "-m", "dmlviz", "--store", str(store_dir), "train", *_TINY,
                              "--steps", "100000", "--snapshot-steps", "5"], cwd=_ROOT, stderr=subprocess.PIPE,
                             text=True)
    try:
        _wait_for(lambda: (store_dir / "runs.db").exists() and any(
            RunStore(store_dir).count_snapshots(r.id) >= 2 for r in RunStore(store_dir).list_runs()))
        (record,) = RunStore(store_dir).list_runs()
        assert record.status == "running" and record.pid == train.pid
        assert main(["--store", str(store_dir), "runs", "stop", str(record.id)]) == 0
        assert train.wait(60) == 128 + signal.SIGTERM
    finally:
        train.kill()
        train.wait()
    record = RunStore(store_dir).get_run(record.id)
    assert record.status == "stopped" and "SIGTERM" in record.error
    assert "Traceback" not in train.stderr.read()
    assert main(["--store", str(store_dir), "runs", "stop", str(record.id)]) == 0  # nothing left to stop


def test_runs_stop_marks_a_run_whose_process_is_gone_interrupted_and_delete_then_works(tmp_path, capsys):
    store = RunStore(tmp_path)
    orphan = store.create_run({"loss": "softmax"}, status="running", pid=_dead_pid())
    assert main(["--store", str(tmp_path), "runs", "stop", str(orphan)]) == 0
    assert "is gone: marked interrupted" in capsys.readouterr().out
    assert store.get_run(orphan).status == "interrupted"
    stuck = store.create_run({"loss": "softmax"}, status="running", pid=_dead_pid())
    assert main(["--store", str(tmp_path), "runs", "delete", str(stuck)]) == 0  # its process is gone
    alive = store.create_run({"loss": "softmax"}, status="running", pid=os.getppid())
    assert main(["--store", str(tmp_path), "runs", "delete", str(alive)]) == 2
    assert f"runs stop {alive}" in capsys.readouterr().err


def test_runs_stop_reaches_the_apps_queue_and_its_workers(tmp_path):
    """A queued run of the app is marked stopped and never starts; a running one stops through its control."""
    from dmlviz.config import RunConfig
    from dmlviz.runner import Runner

    store = RunStore(tmp_path)
    runner = Runner(store, max_concurrent=1)
    try:
        config = RunConfig(dataset="digits", device="cpu", steps=100_000, probe_size=100)
        first, second = runner.submit(config), runner.submit(config)
        _wait_for(lambda: store.get_run(first).status == "running")
        assert main(["--store", str(tmp_path), "runs", "stop", str(second)]) == 0
        assert store.get_run(second).status == "stopped"
        assert main(["--store", str(tmp_path), "runs", "stop", str(first)]) == 0
        assert runner.wait(first, timeout=60) == "stopped"
        assert runner.wait(second, timeout=60) == "stopped"
        assert store.get_run(second).started_at is None  # it never trained
    finally:
        runner.shutdown()


def _bomb() -> BaseException:
    from PIL import Image

    return Image.DecompressionBombError("Image size (200000000 pixels) exceeds limit")


@pytest.mark.parametrize(("raised", "message"), [
    (MemoryError(), "out of memory"),
    (_bomb(), "DecompressionBombError: Image size"),
    (KeyError("x"), "KeyError"),
], ids=["memory", "decompression-bomb", "a-bug"])
def test_any_exception_fails_the_run_with_its_message(tmp_path, monkeypatch, capsys, raised, message):
    import dmlviz.engine

    def failing(config, data_dir, sink, control):
        sink.started({"model": "m", "device": "cpu", "precision": "fp32", "steps_per_epoch": 1, "total_steps": 1})
        raise raised

    monkeypatch.setattr(dmlviz.engine, "train", failing)
    assert main(["--store", str(tmp_path), "train", *_TINY]) == cli.EXIT_FAILED
    (record,) = RunStore(tmp_path).list_runs()
    assert record.status == "failed" and message in record.error
    assert f"error: {record.error}" in capsys.readouterr().err


def test_a_disk_that_fills_mid_run_fails_the_run_with_exit_status_4(tmp_path, monkeypatch, capsys):
    real = RunStore.add_snapshot
    calls = []

    def filling(self, run_id, snapshot):
        calls.append(run_id)
        if len(calls) == 4:  # SQLite's cap on the file's pages fails the write as a full disk does
            (pages,) = self._db().execute("PRAGMA page_count").fetchone()
            self._db().execute(f"PRAGMA max_page_count = {pages}")
            snapshot.features = np.zeros((200_000, 2), np.float32)
        return real(self, run_id, snapshot)

    monkeypatch.setattr(RunStore, "add_snapshot", filling)
    code = main(["--store", str(tmp_path), "train", *_TINY, "--steps", "50", "--snapshot-steps", "1"])
    assert code == cli.EXIT_DISK_FULL
    (record,) = RunStore(tmp_path).list_runs()
    assert record.status == "failed" and "is full" in record.error
    assert RunStore(tmp_path).count_snapshots(record.id) == 3  # what came before is kept
    assert "is full" in capsys.readouterr().err


def test_an_end_that_cannot_be_recorded_says_how_to_mark_it(tmp_path, monkeypatch, capsys):
    from dmlviz.store import StoreFull

    def full(self, run_id, status, **kwargs):
        raise StoreFull("the disk is full")

    monkeypatch.setattr(RunStore, "set_status", full)
    assert main(["--store", str(tmp_path), "train", *_TINY, "--steps", "3"]) == cli.EXIT_DISK_FULL
    err = capsys.readouterr().err
    assert "could not be recorded as finished" in err and "runs stop 1" in err


def test_runs_list_and_show_only_read_the_store(tmp_path, capsys):
    """No lock file can be made (as on a full disk): listing and showing still work; training says the store
    cannot be used (exit 3), not that the input was bad."""
    store = RunStore(tmp_path)
    store.create_run({"loss": "softmax", "dataset": "digits"}, name="kept", status="finished")
    store.close()
    (tmp_path / "runs.db-shm").mkdir()  # SQLite cannot create its shared-memory file
    assert main(["--store", str(tmp_path), "runs", "list"]) == 0
    assert "kept" in capsys.readouterr().out
    assert main(["--store", str(tmp_path), "runs", "show", "1"]) == 0
    assert "run 1 (kept): finished" in capsys.readouterr().out
    assert main(["--store", str(tmp_path), "train", *_TINY, "--steps", "3"]) == cli.EXIT_STORE
    assert RunStore(tmp_path, read_only=True).list_runs()[0].name == "kept"


def test_output_cut_short_by_its_reader_is_no_traceback(tmp_path):
    """`python -m dmlviz runs list | head`: the reader has gone before the output is written."""
    store = RunStore(tmp_path)
    for _ in range(3):
        store.create_run({"loss": "softmax"}, status="finished")
    store.close()
    read, write = os.pipe()
    os.close(read)
    with os.fdopen(write, "w") as out:
        done = subprocess.run([sys.executable, "-m", "dmlviz", "--store", str(tmp_path), "runs", "show", "1"],
                              cwd=_ROOT, stdout=out, stderr=subprocess.PIPE, text=True, timeout=60)
    assert done.returncode == cli.EXIT_PIPE and done.stderr == ""


def test_exit_statuses_are_documented():
    text = cli.build_parser().format_help()
    for code in (cli.EXIT_OK, cli.EXIT_FAILED, cli.EXIT_USAGE, cli.EXIT_STORE, cli.EXIT_DISK_FULL, cli.EXIT_PIPE):
        assert f"\n  {code} " in text
    assert "130" in text and "143" in text
