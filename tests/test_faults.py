"""Faults of the machine under a run: a disk that fills up, a store damaged on disk. What was
recorded before is kept, the message says what happened and what to do, and nothing else stops."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dmlviz import runner as runner_module
from dmlviz import settings
from dmlviz.config import RunConfig
from dmlviz.runner import RUN, Runner
from dmlviz.snapshot import Snapshot
from dmlviz.store import RunStore, StoreError

Usage = namedtuple("Usage", "total used free")


def _snapshot(step: int, value: float, rows: int = 500) -> Snapshot:
    return Snapshot(step=step, epoch=0.0, elapsed=0.0, kind="tick", metrics={"loss": 1.0},
                    features=np.full((rows, 2), value, np.float32), class_means=np.zeros((3, 2), np.float32),
                    class_vectors={})


def test_no_run_starts_on_a_nearly_full_disk(tmp_path):
    store = RunStore(tmp_path, min_free_bytes=shutil.disk_usage(tmp_path).free * 2)
    with pytest.raises(StoreError, match="MB free.*delete old runs"):
        store.create_run({})
    runner = Runner(store, max_concurrent=1)
    try:
        with pytest.raises(StoreError, match="MB free"):
            runner.submit(RunConfig(dataset="digits", device="cpu", steps=5))
        assert store.list_runs() == []
    finally:
        runner.shutdown()


def test_a_disk_filling_up_mid_run_fails_the_run_and_keeps_what_it_recorded(tmp_path, monkeypatch):
    """The worker's entry point, run in this process, on a disk whose free space runs out after a few
    snapshots: the run ends as failed with the reason, its snapshots before are kept."""
    store = RunStore(tmp_path / "store")
    config = RunConfig(dataset="digits", device="cpu", steps=200, batch_size=32, probe_size=100, snapshot_steps=5)
    run_id = store.create_run(config.to_dict(), status="queued")
    real, calls = shutil.disk_usage, []

    def filling(path):
        calls.append(path)
        usage = real(path)
        return usage if len(calls) <= 4 else Usage(usage.total, usage.total - 2**20, 2**20)

    monkeypatch.setattr(shutil, "disk_usage", filling)
    value = multiprocessing.Value
    runner_module._work([run_id], [config.to_dict()], str(store.root), str(tmp_path / "data"), value("i", RUN),
                        value("i", 0), value("d", 0.0), value("d", 0.0), os.getpid(), 1)
    record = store.get_run(run_id)
    assert record.status == "failed" and "MB free" in record.error
    kept = store.count_snapshots(run_id)
    assert kept >= 3 and store.get_snapshot(run_id, kept - 1).features.shape == (100, 2)


def test_a_full_disk_during_a_write_says_so_and_loses_nothing_before(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run({})
    store.add_snapshot(run_id, _snapshot(0, 1.0))
    # SQLite's own cap on the file's pages fails a write exactly as a full disk does (SQLITE_FULL).
    (pages,) = store._db().execute("PRAGMA page_count").fetchone()
    store._db().execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StoreError, match="is full.*what was recorded before is kept"):
        store.add_snapshot(run_id, _snapshot(1, 2.0, rows=50_000))
    assert store.count_snapshots(run_id) == 1 and store.get_snapshot(run_id, 0).features[0, 0] == 1.0


def _damaged_store(folder: Path) -> RunStore:
    """Three runs of three snapshots; then bytes of a page that holds run 2's second snapshot are
    overwritten on disk, as a failing disk or a crash of the file system would."""
    store = RunStore(folder)
    for _ in range(3):
        run_id = store.create_run({})
        for seq in range(3):
            store.add_snapshot(run_id, _snapshot(seq, 10.0 * run_id + seq))
    store._db().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    data = bytearray((folder / "runs.db").read_bytes())
    page = data.find(np.full(64, 21.0, np.float32).tobytes()) // 4096
    data[page * 4096:page * 4096 + 16] = b"\xff" * 16
    (folder / "runs.db").write_bytes(bytes(data))
    return RunStore(folder)


def test_damage_on_disk_is_found_and_the_other_runs_stay_readable(tmp_path):
    store = _damaged_store(tmp_path)
    assert store.damage()  # SQLite's quick_check names the broken page
    assert [r.id for r in store.list_runs()] == [3, 2, 1]
    for run_id in (1, 3):
        for seq in range(3):
            assert store.get_snapshot(run_id, seq).features[0, 0] == 10.0 * run_id + seq


def test_the_cli_checks_the_store(tmp_path, capsys):
    from dmlviz.cli import EXIT_FAILED, main

    RunStore(tmp_path / "sound").close()
    assert main(["--store", str(tmp_path / "sound"), "runs", "check"]) == 0
    assert "is sound" in capsys.readouterr().out
    _damaged_store(tmp_path / "damaged").close()
    assert main(["--store", str(tmp_path / "damaged"), "runs", "check"]) == EXIT_FAILED
    out = capsys.readouterr().out
    assert "is damaged" in out and "page" in out.lower()


def test_a_damaged_snapshot_names_itself(tmp_path):
    store = RunStore(tmp_path)
    run_id = store.create_run({})
    store.add_snapshot(run_id, _snapshot(0, 1.0))
    store.add_snapshot(run_id, _snapshot(1, 2.0))
    with store._transaction(write=True) as db:  # its bytes no longer an array
        db.execute("UPDATE snapshots SET features = ? WHERE run_id = ? AND seq = 1", (b"\x93NUMPY garbage", run_id))
    with pytest.raises(StoreError, match=f"snapshot 1 of run {run_id} is damaged.*other runs can still be read"):
        store.get_snapshot(run_id, 1)
    assert store.get_snapshot(run_id, 0).features[0, 0] == 1.0


def test_the_app_says_at_start_that_the_store_is_damaged(tmp_path, monkeypatch):
    _damaged_store(tmp_path / "store").close()
    monkeypatch.setenv(settings.STORE_DIR_ENV, str(tmp_path / "store"))
    app = AppTest.from_file("../app.py", default_timeout=60)
    app.run()
    assert not app.exception
    assert any("is damaged" in error.value for error in app.error)


def test_a_store_that_cannot_open_is_said_and_the_learn_page_still_works(tmp_path, monkeypatch):
    (tmp_path / "runs.db").write_bytes(np.random.default_rng(0).bytes(8192))
    monkeypatch.setenv(settings.STORE_DIR_ENV, str(tmp_path))
    app = AppTest.from_file("../app.py", default_timeout=60)
    app.run()
    assert not app.exception
    assert any("not a dmlviz database" in error.value for error in app.error)
    app.switch_page("app_pages/learn.py").run()
    assert not app.exception
    assert any("ArcFace" in markdown.value for markdown in app.markdown)  # the Learn page still draws


def test_the_runner_keeps_scheduling_when_it_cannot_record_an_end(tmp_path, monkeypatch):
    store = RunStore(tmp_path)
    runner = Runner(store, max_concurrent=1)
    try:
        first = runner.submit(RunConfig(dataset="digits", device="cpu", steps=100_000, probe_size=100))
        deadline = time.monotonic() + 60
        while store.get_run(first).status != "running":
            assert time.monotonic() < deadline, "the first run did not start"
            time.sleep(0.1)
        real = store.set_status

        def failing(run_id, status, **kwargs):
            if status == "failed":
                raise StoreError("the disk is full")
            return real(run_id, status, **kwargs)

        monkeypatch.setattr(store, "set_status", failing)
        runner._job(first).handle.kill()  # its end cannot be recorded
        second = runner.submit(RunConfig(dataset="digits", device="cpu", steps=5, probe_size=100))
        assert runner.wait(second, timeout=60) == "finished"
    finally:
        runner.shutdown()


@pytest.fixture
def read_only_store(tmp_path, monkeypatch):
    """A store with one recorded run whose folder was then made read-only. The system is asked, not
    the mode bits: root may write anywhere, and tests often run as root."""
    folder = tmp_path / "store"
    store = RunStore(folder)
    run_id = store.create_run(RunConfig(dataset="digits").to_dict(), status="finished")
    store.add_snapshot(run_id, _snapshot(0, 1.0))
    store.close()
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != folder and real(path, mode, **kw))
    return folder, run_id


def test_a_read_only_store_folder_keeps_its_runs_viewable_and_starts_none(read_only_store):
    folder, run_id = read_only_store
    store = RunStore(folder)
    assert store.read_only and [r.id for r in store.list_runs()] == [run_id]
    assert store.get_snapshot(run_id, 0).features[0, 0] == 1.0
    with pytest.raises(StoreError, match="is read-only: its runs can be viewed"):
        store.create_run({})
    with pytest.raises(StoreError, match="is read-only"):
        store.rename(run_id, "x")
    runner = Runner(store, max_concurrent=1)  # starting the app marks nothing and fails nothing
    try:
        with pytest.raises(StoreError, match="is read-only"):
            runner.submit(RunConfig(dataset="digits", device="cpu", steps=5))
    finally:
        runner.shutdown()


def test_the_app_on_a_read_only_store_shows_runs_and_refuses_new_ones(read_only_store, tmp_path, monkeypatch):
    folder, run_id = read_only_store
    monkeypatch.setenv(settings.STORE_DIR_ENV, str(folder))
    monkeypatch.setenv(settings.DATA_DIR_ENV, str(tmp_path / "data"))
    app = AppTest.from_file("../app.py", default_timeout=60)
    app.run()
    app.switch_page("app_pages/runs.py").run()
    assert not app.exception
    assert any("is read-only" in error.value for error in app.error)
    assert list(app.dataframe[0].value["id"]) == [run_id]
    assert app.button(key="rename").disabled and app.button(key="train_again").disabled
    app.switch_page("app_pages/train.py").run()
    app.button(key="start").click().run()
    assert not app.exception
    assert any("Not started" in warning.value and "read-only" in warning.value for warning in app.warning)


def test_a_deleted_write_ahead_log_is_named_as_the_cause(tmp_path):
    """Deleting runs.db-wal under a running writer: a new process is told what happened, not to look at
    the folder's permissions; when the writer closes, what its log held is written back."""
    import subprocess
    import sys

    store = RunStore(tmp_path)
    run_id = store.create_run({}, status="running", pid=os.getpid())
    for step in range(3):
        store.add_snapshot(run_id, _snapshot(step, float(step)))
    (tmp_path / "runs.db-wal").unlink()
    reader = ("from dmlviz.store import RunStore, StoreError\n"
              f"try:\n    RunStore({str(tmp_path)!r}).list_runs()\nexcept StoreError as e:\n    print(e)\n")
    said = subprocess.run([sys.executable, "-c", reader], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1]).stdout
    assert "write-ahead log runs.db-wal was deleted or cut short while the store was in use" in said
    assert "permissions" not in said
    store.close()  # the last connection writes its log back into the file
    assert RunStore(tmp_path).count_snapshots(run_id) == 3


def _cut_short_store(folder: Path, runs: int = 10) -> RunStore:
    store = RunStore(folder)
    for _ in range(runs):
        run_id = store.create_run({"loss": "softmax"}, status="finished")
        store.put_info(run_id, "labels", np.arange(5))
        for seq in range(10):
            store.add_snapshot(run_id, _snapshot(seq, 10.0 * run_id + seq, rows=100))
    store._db().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    store.close()
    data = (folder / "runs.db").read_bytes()
    (folder / "runs.db").write_bytes(data[:len(data) // 2])  # a copy that stopped halfway
    return store


def test_a_store_cut_short_says_so_and_its_readable_runs_are_salvaged(tmp_path, capsys):
    from dmlviz.cli import EXIT_FAILED, main

    _cut_short_store(tmp_path / "store")
    with pytest.raises(StoreError, match=r"is cut short \(its header says .* pages.*runs check --salvage"):
        RunStore(tmp_path / "store")
    out = tmp_path / "salvaged"
    assert main(["--store", str(tmp_path / "store"), "runs", "check", "--salvage", str(out)]) == EXIT_FAILED
    said = capsys.readouterr().out
    assert "run 1, finished: readable (10 snapshot(s) up to step 9" in said
    assert "run 10, finished: nothing to draw" in said  # its snapshots were in the lost half
    salvaged = RunStore(out)
    assert salvaged.damage() == [] and [r.id for r in salvaged.list_runs()] == list(range(10, 0, -1))
    for seq in range(10):
        assert salvaged.get_snapshot(1, seq).features[0, 0] == 10.0 + seq
    assert list(salvaged.get_info(1, "labels")) == list(range(5))
    assert main(["--store", str(out), "runs", "check", "--salvage", str(out)]) == 2  # never over a store
