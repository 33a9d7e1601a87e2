"""The run store against a real SQLite file: round-trips, concurrency, recovery and bad folders."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from dmlviz.snapshot import Snapshot
from dmlviz.store import BUSY_TIMEOUT_S, RunStore, SnapshotInfo, StoreError

LINUX = sys.platform.startswith("linux")


def make_snapshot(step: int, metrics: dict[str, float] | None = None, kind: str = "tick") -> Snapshot:
    rng = np.random.default_rng(step)
    class_means = rng.normal(size=(5, 8)).astype(np.float32)
    class_means[3] = np.nan  # a class absent from the probe
    return Snapshot(
        step=step,
        epoch=step / 100,
        elapsed=step * 0.5,
        kind=kind,
        metrics={"loss": 1.0 / (step + 1), "test_acc": 0.1 * step} if metrics is None else metrics,
        features=rng.normal(size=(40, 8)).astype(np.float32),
        class_means=class_means,
        class_vectors={"weights": rng.normal(size=(4, 8)).astype(np.float32)},
    )


def assert_same_snapshot(got: Snapshot, want: Snapshot) -> None:
    assert (got.step, got.epoch, got.elapsed, got.kind) == (want.step, want.epoch, want.elapsed, want.kind)
    assert got.metrics == pytest.approx(want.metrics, nan_ok=True)
    for name in ("features", "class_means"):
        got_array, want_array = getattr(got, name), getattr(want, name)
        assert got_array.dtype == want_array.dtype == np.float32
        np.testing.assert_array_equal(got_array, want_array)  # NaN rows compare equal
    assert got.class_vectors.keys() == want.class_vectors.keys()
    for name, array in want.class_vectors.items():
        assert got.class_vectors[name].dtype == array.dtype
        np.testing.assert_array_equal(got.class_vectors[name], array)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    opened = RunStore(tmp_path / "store")
    yield opened
    opened.close()


def test_create_get_list_and_rename(store: RunStore) -> None:
    before = time.time()
    config = {"loss": {"name": "arcface", "margin": np.float32(0.5)}, "epochs": 3, "classes": [0, 1]}
    first = store.create_run(config, name="first", config_hash="abc", pid=123)
    second = store.create_run({"epochs": 1}, status="running")
    third = store.create_run({"epochs": 2}, status="finished")

    run = store.get_run(first)
    assert run.id == first and run.name == "first" and run.config_hash == "abc" and run.pid == 123
    assert run.config == {"loss": {"name": "arcface", "margin": 0.5}, "epochs": 3, "classes": [0, 1]}
    assert run.status == "queued" and run.active and run.error is None and run.summary == {}
    assert before <= run.created_at == run.updated_at <= time.time()
    assert run.started_at is None and run.finished_at is None and run.duration is None
    assert store.get_run(second).started_at is not None
    assert store.get_run(third).finished_at is not None and not store.get_run(third).active

    assert [r.id for r in store.list_runs()] == [third, second, first]
    assert [r.id for r in store.list_runs(["queued", "running"])] == [second, first]
    assert [r.id for r in store.list_runs("finished")] == [third]
    assert store.list_runs([]) == []

    store.rename(first, "renamed")
    assert store.get_run(first).name == "renamed"


def test_tags_are_trimmed_kept_once_and_bounded(store: RunStore) -> None:
    run_id = store.create_run({})
    assert store.get_run(run_id).tags == []
    assert store.set_tags(run_id, [" lecture 3 ", "arcface", "", "lecture 3"]) == ["lecture 3", "arcface"]
    assert store.get_run(run_id).tags == ["lecture 3", "arcface"] == store.list_runs()[0].tags
    with pytest.raises(StoreError, match="at most 40 characters"):
        store.set_tags(run_id, ["x" * 41])
    assert store.get_run(run_id).tags == ["lecture 3", "arcface"]  # nothing half-written
    with pytest.raises(StoreError, match="no run with id 999"):
        store.set_tags(999, ["a"])


@pytest.mark.parametrize("version", [1, 2, 3])
def test_a_store_of_an_older_format_gains_the_new_columns_and_keeps_its_runs(tmp_path: Path, version: int) -> None:
    from dmlviz.store import _SCHEMA

    folder = tmp_path / "old"
    folder.mkdir()
    db = sqlite3.connect(folder / "runs.db")
    # Format 1: the same tables, without the tags, owner and decision columns; format 2: without the owner
    # and decision maps; format 3: without decision maps.
    runs_table = _SCHEMA[0]
    if version < 3:
        runs_table = runs_table.replace(",\n        owner TEXT", "")
    if version == 1:
        runs_table = runs_table.replace(",\n        tags TEXT NOT NULL DEFAULT '[]'", "")
    assert ("owner" in runs_table) == (version == 3) and ("tags" in runs_table) == (version >= 2)
    db.execute(runs_table)
    for statement in _SCHEMA[1:]:
        db.execute(statement.replace(",\n        decision BLOB,\n        forces BLOB", ""))
    db.execute("INSERT INTO runs (name, config, status, created_at, updated_at) VALUES ('old', '{}', 'finished', 1, 1)")
    db.execute(f"PRAGMA user_version = {version}")
    db.commit()
    db.close()
    store = RunStore(folder)
    (old,) = store.list_runs()
    assert old.name == "old" and old.tags == [] and old.owner is None
    store.set_tags(old.id, ["kept"])
    assert RunStore(folder).get_run(old.id).tags == ["kept"]
    new = store.create_run({}, owner="visitor-1")
    assert RunStore(folder).get_run(new).owner == "visitor-1"
    shot = make_snapshot(0)
    shot.decision = {"box": np.zeros((2, 2)), "winner": np.eye(4, dtype=np.uint8)}
    store.add_snapshot(new, shot)
    assert np.array_equal(RunStore(folder).get_snapshot(new, 0).decision["winner"], np.eye(4))


def test_set_status_times_error_and_pid(store: RunStore) -> None:
    run_id = store.create_run({}, pid=1)
    store.set_status(run_id, "running", pid=4242)
    running = store.get_run(run_id)
    assert running.status == "running" and running.pid == 4242 and running.started_at is not None
    assert running.finished_at is None and running.duration == running.updated_at - running.started_at

    store.set_status(run_id, "paused")
    store.set_status(run_id, "running")
    assert store.get_run(run_id).started_at == running.started_at  # only the first start counts
    assert store.get_run(run_id).pid == 4242  # kept when not passed

    store.set_status(run_id, "failed", error="CUDA out of memory")
    failed = store.get_run(run_id)
    assert failed.status == "failed" and failed.error == "CUDA out of memory" and not failed.active
    assert failed.finished_at is not None and failed.duration == failed.finished_at - failed.started_at



def test_a_status_follows_only_from_where_a_run_may_come(store: RunStore) -> None:
    run_id = store.create_run({}, pid=1)
    assert not store.set_status(run_id, "paused")  # a queued run starts before it can pause
    assert store.set_status(run_id, "running", pid=7, was={"queued"})
    assert not store.set_status(run_id, "running", was={"queued"})  # a second worker does not start it again
    assert store.get_run(run_id).pid == 7
    assert store.set_status(run_id, "paused") and store.set_status(run_id, "diverged", error="loss is nan")
    for later in ("running", "paused", "failed", "interrupted", "stopped"):  # a run that ended stays as it ended
        assert not store.set_status(run_id, later, error="late")
    ended = store.get_run(run_id)
    assert ended.status == "diverged" and ended.error == "loss is nan" and ended.finished_at is not None
    assert store.mark_interrupted([run_id]) == []


def test_a_worker_and_the_command_line_never_undo_each_other(store: RunStore) -> None:
    """Two writers race for a queued run: whichever comes first decides, the other sees False."""
    stopped, started = store.create_run({}), store.create_run({})
    assert store.set_status(stopped, "stopped", was={"queued"})  # `runs stop` while it waits
    assert not store.set_status(stopped, "running", pid=os.getpid(), was={"queued"})  # its worker then declines
    assert store.set_status(started, "running", pid=os.getpid(), was={"queued"})  # the worker first
    assert not store.set_status(started, "stopped", was={"queued"})  # then `runs stop` signals it instead
    assert [store.get_run(i).status for i in (stopped, started)] == ["stopped", "running"]


def test_invalid_status_and_missing_run(store: RunStore) -> None:
    run_id = store.create_run({})
    with pytest.raises(ValueError, match="status must be one of"):
        store.set_status(run_id, "done")
    with pytest.raises(ValueError, match="status must be one of"):
        store.create_run({}, status="bogus")
    with pytest.raises(ValueError, match="status must be one of"):
        store.list_runs(["bogus"])
    assert store.get_run(run_id).status == "queued"

    missing = run_id + 100
    calls = [
        lambda: store.get_run(missing),
        lambda: store.set_status(missing, "running"),
        lambda: store.update_summary(missing, {"loss": 1.0}),
        lambda: store.rename(missing, "x"),
        lambda: store.put_info(missing, "classes", [1]),
        lambda: store.add_snapshot(missing, make_snapshot(0)),
        lambda: store.get_snapshot(missing, 0),
        lambda: store.delete_run(missing),
    ]
    for call in calls:
        with pytest.raises(StoreError, match=f"no run with id {missing}"):
            call()
    with pytest.raises(StoreError, match=f"run {run_id} has no snapshot 0"):
        store.get_snapshot(run_id, 0)


def test_update_summary_merges(store: RunStore) -> None:
    run_id = store.create_run({})
    store.update_summary(run_id, {"loss": np.float32(0.5), "step": np.int64(10)})
    store.update_summary(run_id, {"test_acc": 0.75, "loss": 0.25})
    summary = store.get_run(run_id).summary
    assert summary == {"loss": 0.25, "step": 10, "test_acc": 0.75}
    assert type(summary["step"]) is int
    with pytest.raises(ValueError, match="'loss' must be a number"):
        store.update_summary(run_id, {"loss": "low"})


def test_info_round_trip(store: RunStore) -> None:
    run_id = store.create_run({})
    labels = np.arange(12, dtype=np.int64) % 3
    weights = np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3)
    store.put_info(run_id, "probe_labels", labels)
    store.put_info(run_id, "weights", weights)
    store.put_info(run_id, "class_names", ["cat", "dog"])
    store.put_info(run_id, "meta", {"seed": np.int64(3), "ratio": 0.5})
    store.put_info(run_id, "title", "hello")
    store.put_info(run_id, "count", 7)

    got = store.get_info(run_id, "probe_labels")
    assert got.dtype == np.int64 and got.shape == (12,)
    np.testing.assert_array_equal(got, labels)
    np.testing.assert_array_equal(store.get_info(run_id, "weights"), weights)
    assert store.get_info(run_id, "weights").dtype == np.float32
    assert store.get_info(run_id, "class_names") == ["cat", "dog"]
    assert store.get_info(run_id, "meta") == {"seed": 3, "ratio": 0.5}
    assert store.get_info(run_id, "title") == "hello"
    assert store.get_info(run_id, "count") == 7
    assert store.get_info(run_id, "absent") is None
    assert store.get_info(run_id, "absent", default=[]) == []

    store.put_info(run_id, "title", "replaced")
    assert store.get_info(run_id, "title") == "replaced"
    with pytest.raises(ValueError, match="numeric array"):
        store.put_info(run_id, "bad", np.array([object()]))


def test_snapshots_round_trip(store: RunStore) -> None:
    run_id = store.create_run({})
    assert store.latest_snapshot(run_id) is None and store.count_snapshots(run_id) == 0
    snapshots = [
        make_snapshot(0),
        make_snapshot(10, {"loss": float("nan"), "lr": np.float32(0.25)}),  # no test_acc; a NaN loss
        make_snapshot(20, kind="final"),
    ]
    snapshots[2].class_vectors = {}
    assert [store.add_snapshot(run_id, snap) for snap in snapshots] == [0, 1, 2]

    for seq, snap in enumerate(snapshots):
        assert_same_snapshot(store.get_snapshot(run_id, seq), snap)
    assert_same_snapshot(store.latest_snapshot(run_id), snapshots[2])
    assert store.count_snapshots(run_id) == 3
    assert store.snapshot_index(run_id) == [
        SnapshotInfo(seq=0, step=0, epoch=0.0, elapsed=0.0, kind="tick"),
        SnapshotInfo(seq=1, step=10, epoch=0.1, elapsed=5.0, kind="tick"),
        SnapshotInfo(seq=2, step=20, epoch=0.2, elapsed=10.0, kind="final"),
    ]

    series = store.series(run_id)
    assert set(series) == {"step", "epoch", "elapsed", "loss", "test_acc", "lr"}
    assert series["step"].dtype == np.int64
    np.testing.assert_array_equal(series["step"], [0, 10, 20])
    np.testing.assert_array_equal(series["epoch"], [0.0, 0.1, 0.2])
    np.testing.assert_array_equal(series["elapsed"], [0.0, 5.0, 10.0])
    np.testing.assert_array_equal(series["loss"], [1.0, np.nan, 1 / 21])
    np.testing.assert_array_equal(series["test_acc"], [0.0, np.nan, 0.1 * 20])
    np.testing.assert_array_equal(series["lr"], [np.nan, 0.25, np.nan])

    summary = store.get_run(run_id).summary
    assert summary["step"] == 20 and summary["epoch"] == 0.2
    assert summary["test_acc"] == 0.1 * 20 and summary["lr"] == 0.25  # merged across snapshots

    bad = make_snapshot(30)
    bad.features = np.array([object()])
    with pytest.raises(ValueError, match="features must be a numeric array"):
        store.add_snapshot(run_id, bad)
    with pytest.raises(ValueError, match="snapshot kind"):
        store.add_snapshot(run_id, make_snapshot(30, kind="sometimes"))
    assert store.count_snapshots(run_id) == 3
    empty = store.series(store.create_run({}))
    assert set(empty) == {"step", "epoch", "elapsed"} and all(a.size == 0 for a in empty.values())


def test_survives_reopening(tmp_path: Path) -> None:
    first = RunStore(tmp_path)
    run_id = first.create_run({"epochs": 2}, name="kept")
    snap = make_snapshot(5)
    first.add_snapshot(run_id, snap)
    first.put_info(run_id, "classes", [3, 4])
    first.set_status(run_id, "finished")
    first.close()

    again = RunStore(tmp_path)
    assert again.path == tmp_path / "runs.db"
    run = again.get_run(run_id)
    assert (run.name, run.status, run.config) == ("kept", "finished", {"epochs": 2})
    assert_same_snapshot(again.get_snapshot(run_id, 0), snap)
    assert again.get_info(run_id, "classes") == [3, 4]
    assert again.create_run({}) == run_id + 1
    again.close()
    assert again.count_snapshots(run_id) == 1  # usable again after close: it reconnects


def _write_snapshots(root: str, run_id: int, count: int, results: multiprocessing.Queue) -> None:
    store = RunStore(root)
    start = time.perf_counter()
    for step in range(count):
        store.add_snapshot(run_id, make_snapshot(step))
    results.put((run_id, time.perf_counter() - start))
    store.close()


def test_readers_never_block_writers(store: RunStore) -> None:
    runs = [store.create_run({}, status="running") for _ in range(2)]
    reader = sqlite3.connect(store.path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT COUNT(*) FROM snapshots").fetchone() == (0,)

    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    root = str(store.root)
    writers = [context.Process(target=_write_snapshots, args=(root, run_id, 20, results)) for run_id in runs]
    for writer in writers:
        writer.start()
    timings = dict(results.get(timeout=60) for _ in writers)
    for writer in writers:
        writer.join(timeout=30)
        assert writer.exitcode == 0
    assert set(timings) == set(runs)
    assert max(timings.values()) < BUSY_TIMEOUT_S / 2  # nobody waited out a lock

    # The open read transaction still sees the database as it was when it began...
    assert reader.execute("SELECT COUNT(*) FROM snapshots").fetchone() == (0,)
    reader.execute("COMMIT")
    # ...and sees everything once it has ended.
    assert reader.execute("SELECT COUNT(*) FROM snapshots").fetchone() == (40,)
    reader.close()
    for run_id in runs:
        assert store.count_snapshots(run_id) == 20
        assert store.series(run_id)["step"].tolist() == list(range(20))


def test_threads_read_while_writing(store: RunStore) -> None:
    run_id = store.create_run({}, status="running")
    store.add_snapshot(run_id, make_snapshot(0))
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                assert store.latest_snapshot(run_id) is not None
                store.list_runs()
                store.series(run_id)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(6)]
    for thread in readers:
        thread.start()
    for step in range(1, 21):
        store.add_snapshot(run_id, make_snapshot(step))
    done.set()
    for thread in readers:
        thread.join(timeout=30)
    assert errors == []
    assert store.count_snapshots(run_id) == 21


def _add_one(store: RunStore, run_id: int) -> None:
    store.add_snapshot(run_id, make_snapshot(99))


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs fork")
def test_usable_after_fork(store: RunStore) -> None:
    run_id = store.create_run({})
    store.add_snapshot(run_id, make_snapshot(1))  # the parent's connection is open when it forks
    child = multiprocessing.get_context("fork").Process(target=_add_one, args=(store, run_id))
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert [info.step for info in store.snapshot_index(run_id)] == [1, 99]


def test_mark_interrupted(store: RunStore) -> None:
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    crashed = store.create_run({}, status="running", pid=exited.pid)
    for step in (10, 20):
        store.add_snapshot(crashed, make_snapshot(step))
    never_started = store.create_run({})  # queued, no pid
    alive = store.create_run({}, status="running", pid=os.getpid())
    finished = store.create_run({}, status="running", pid=exited.pid)
    store.set_status(finished, "finished")

    assert sorted(store.mark_interrupted()) == sorted([crashed, never_started])
    run = store.get_run(crashed)
    assert run.status == "interrupted" and run.finished_at is not None
    assert "stopped" in run.error and "up to step 20" in run.error
    assert store.count_snapshots(crashed) == 2
    assert_same_snapshot(store.get_snapshot(crashed, 1), make_snapshot(20))
    assert "had not started" in store.get_run(never_started).error
    assert store.get_run(alive).status == "running"
    assert store.get_run(finished).status == "finished"
    assert store.mark_interrupted() == []


@pytest.mark.skipif(not LINUX, reason="zombies and process start times are read from Linux's /proc")
def test_mark_interrupted_zombie_and_reused_pid(store: RunStore) -> None:
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet reaped
    try:
        zombie_run = store.create_run({}, status="running", pid=zombie.pid)
        # A pid now held by a process that started after the run was last updated was reused.
        reused_run = store.create_run({}, status="running", pid=os.getpid())
        with sqlite3.connect(store.path) as db:
            db.execute("UPDATE runs SET updated_at = 0 WHERE id = ?", (reused_run,))
        assert sorted(store.mark_interrupted()) == sorted([zombie_run, reused_run])
        assert "had not recorded anything yet" in store.get_run(zombie_run).error
    finally:
        zombie.wait()


def test_delete_run_removes_only_that_run(store: RunStore) -> None:
    doomed, kept = store.create_run({}), store.create_run({})
    for run_id in (doomed, kept):
        for step in range(3):
            store.add_snapshot(run_id, make_snapshot(step))
        store.put_info(run_id, "labels", np.arange(4))
    big = make_snapshot(3)
    big.features = np.ones((20_000, 64), dtype=np.float32)  # ~5 MB that the delete gives back
    store.add_snapshot(doomed, big)
    size_before = store.size_bytes()

    store.delete_run(doomed)
    with pytest.raises(StoreError, match=f"no run with id {doomed}"):
        store.get_run(doomed)
    assert store.count_snapshots(doomed) == 0 and store.snapshot_index(doomed) == []
    assert store.series(doomed)["step"].size == 0 and store.get_info(doomed, "labels") is None
    with sqlite3.connect(store.path) as db:
        for table in ("snapshots", "series", "info"):
            assert db.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id = ?", (doomed,)).fetchone() == (0,)

    assert [r.id for r in store.list_runs()] == [kept]
    assert store.count_snapshots(kept) == 3
    assert_same_snapshot(store.get_snapshot(kept, 2), make_snapshot(2))
    np.testing.assert_array_equal(store.get_info(kept, "labels"), np.arange(4))
    assert store.series(kept)["loss"].size == 3
    assert store.path.stat().st_size < size_before
    assert store.create_run({}) == kept + 1  # ids are never reused


def test_size_bytes_counts_the_files(store: RunStore) -> None:
    empty = store.size_bytes()
    assert empty > 0
    store.add_snapshot(store.create_run({}), make_snapshot(0))
    assert store.size_bytes() > empty


def test_corrupt_database(tmp_path: Path) -> None:
    (tmp_path / "runs.db").write_bytes(np.random.default_rng(0).bytes(8192))
    with pytest.raises(StoreError, match="not a dmlviz database") as raised:
        RunStore(tmp_path)
    assert str(tmp_path / "runs.db") in str(raised.value)


def test_folder_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(StoreError, match="cannot be created") as raised:
        RunStore(blocker / "store")
    assert str(blocker / "store") in str(raised.value)


def test_read_only_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    # The system is asked, not the mode bits (root may write anywhere, and tests often run as root).
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != folder and real(path, mode, **kw))
    with pytest.raises(StoreError, match="is not writable") as raised:
        RunStore(folder)
    assert str(folder) in str(raised.value)


def test_a_long_run_keeps_epoch_ends_and_a_few_hundred_other_snapshots(store: RunStore) -> None:
    from dmlviz.store import KEEP_TICKS, THIN_EVERY

    run_id = store.create_run({"loss": "softmax"})
    total = 3 * KEEP_TICKS
    for step in range(total):
        kind = "epoch" if step % 50 == 49 else "tick"
        store.add_snapshot(run_id, make_snapshot(step, {"loss": float(step)}, kind=kind))
    store.add_snapshot(run_id, make_snapshot(total, kind="final"))
    index = store.snapshot_index(run_id)
    ticks = [info for info in index if info.kind == "tick"]
    assert len(ticks) <= KEEP_TICKS + THIN_EVERY
    assert [info.step for info in index if info.kind == "epoch"] == list(range(49, total, 50))  # every epoch end
    assert index[0].step == 0 and index[-1].kind == "final"
    gaps = np.diff([info.step for info in ticks])
    assert gaps.max() <= 4 * np.median(gaps)  # spread over the whole run, not cut at one end
    assert len(store.series(run_id)["loss"]) == total + 1  # the curves keep every point
    assert store.thin_snapshots(run_id, 10) > 0
    assert len([i for i in store.snapshot_index(run_id) if i.kind == "tick"]) == 10 + 1  # and the first
    np.testing.assert_array_equal(store.get_snapshot(run_id, index[-1].seq).features,
                                  make_snapshot(total).features)


def test_thinning_keeps_every_formation_snapshot(store: RunStore) -> None:
    """A long run nobody watched: the formation snapshots that the engine takes (every step at first, then
    spread out) outlive any thinning among the clock's ticks, so its replay keeps its formation."""
    from dmlviz.engine import formation_due
    from dmlviz.store import KEEP_TICKS, THIN_EVERY

    run_id = store.create_run({"loss": "center"})
    total, formed, formation = 4 * KEEP_TICKS, 0, []
    store.add_snapshot(run_id, make_snapshot(0))
    for step in range(1, total):
        if formation_due(step, formed, total):
            store.add_snapshot(run_id, make_snapshot(step, kind="formation"))
            formation.append(formed := step)
        else:
            store.add_snapshot(run_id, make_snapshot(step))  # a clock tick at every other step
    store.add_snapshot(run_id, make_snapshot(total, kind="final"))
    assert store.thin_snapshots(run_id, 10) > 0  # and once more, harder
    index = store.snapshot_index(run_id)
    assert [info.step for info in index if info.kind == "formation"] == formation
    assert len([info for info in index if info.kind == "tick"]) <= KEEP_TICKS + THIN_EVERY
    steps = [info.step for info in index]
    assert steps[0] == 0 and steps[-1] == total and max(np.diff(steps)) <= total / 40


def test_a_store_written_by_a_newer_version_is_refused_with_a_reason(tmp_path: Path) -> None:
    RunStore(tmp_path).close()
    db = sqlite3.connect(tmp_path / "runs.db")
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="written by a newer dmlviz \\(format 99"):
        RunStore(tmp_path)
