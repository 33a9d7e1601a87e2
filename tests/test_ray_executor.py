"""Runs on a real Ray (a head started in this process, no dashboard, 2 CPUs): they train, record, obey
pause / step / stop through Ray, end failed when their worker is killed, and give the same snapshots as
the local executor."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest

from dmlviz.config import RunConfig
from dmlviz.runner import Runner
from dmlviz.status import RunStatus
from dmlviz.store import RunStore

ray = pytest.importorskip("ray", reason="Ray is not installed (requirements-dev.txt)")
pytestmark = pytest.mark.slow

DIGITS = {"dataset": "digits", "device": "cpu", "probe_size": 100, "snapshot_steps": 10}


@pytest.fixture(scope="module")
def cluster():
    from dmlviz.ray_executor import connect

    connect(cpus=2)
    yield
    ray.shutdown()


@pytest.fixture
def on_ray(cluster, tmp_path):
    from dmlviz.ray_executor import RayExecutor

    store = RunStore(tmp_path / "store")
    executor = RayExecutor(store, tmp_path / "data")
    runner = Runner(store, tmp_path / "data", max_concurrent=executor.slots(), threads=1, executor=executor)
    yield runner
    runner.shutdown()
    store.close()


def wait_for(condition, what: str, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


def features(store: RunStore, run_id: int) -> list[np.ndarray]:
    return [store.get_snapshot(run_id, info.seq).features for info in store.snapshot_index(run_id)]


def test_a_sweep_on_ray_records_every_run_as_the_local_executor_does(on_ray, tmp_path):
    configs = [RunConfig.from_dict({**DIGITS, "loss": loss, "steps": 30, "seed": seed})
               for loss in ("softmax", "center") for seed in (0, 1)]
    ids = [on_ray.submit(config) for config in configs]
    assert on_ray.max_concurrent == 2  # the cluster's two CPUs, one run each
    for run_id in ids:
        assert on_ray.wait(run_id, timeout=180) == RunStatus.FINISHED
    store = on_ray.store
    assert all(store.get_run(run_id).summary["step"] == 30 for run_id in ids)
    assert store.get_info(ids[0], "ray_worker")["pid"] != os.getpid()  # trained in a Ray worker
    # The same seed on the local executor (one thread, as on Ray) gives the same snapshots.
    local_store = RunStore(tmp_path / "local")
    local = Runner(local_store, tmp_path / "data", max_concurrent=1, threads=1)
    try:
        here = local.submit(configs[1])
        assert local.wait(here, timeout=180) == RunStatus.FINISHED
        there, mine = features(store, ids[1]), features(local_store, here)
        assert len(there) == len(mine) > 2
        for a, b in zip(there, mine, strict=True):
            np.testing.assert_array_equal(a, b)
    finally:
        local.shutdown()
        local_store.close()


def test_pause_step_and_stop_reach_a_run_on_ray(on_ray):
    run_id = on_ray.submit(RunConfig.from_dict({**DIGITS, "loss": "softmax", "steps": 100_000}))
    store = on_ray.store
    wait_for(lambda: store.get_run(run_id).summary.get("step", 0) > 0, "the first snapshot")
    on_ray.pause(run_id)
    wait_for(lambda: store.get_run(run_id).status == RunStatus.PAUSED, "the run to pause")
    paused_at = store.get_run(run_id).summary["step"]
    on_ray.step(run_id, 3)
    wait_for(lambda: store.latest_snapshot(run_id).step == paused_at + 3, "three more steps, recorded")
    time.sleep(0.5)
    assert store.get_run(run_id).status == RunStatus.PAUSED and store.latest_snapshot(run_id).step == paused_at + 3
    on_ray.resume(run_id)
    wait_for(lambda: store.get_run(run_id).summary.get("step", 0) > paused_at + 3, "the run to go on")
    # The command line does not signal the run's process, which is this one (the server's).
    from dmlviz.cli import main

    assert main(["--store", str(store.root), "runs", "stop", str(run_id)]) == 2
    on_ray.stop(run_id)
    assert on_ray.wait(run_id, timeout=60) == RunStatus.STOPPED


def test_a_killed_ray_worker_leaves_the_run_failed_with_what_it_recorded(on_ray):
    run_id = on_ray.submit(RunConfig.from_dict({**DIGITS, "loss": "softmax", "steps": 100_000}))
    store = on_ray.store
    wait_for(lambda: store.count_snapshots(run_id) >= 2, "two snapshots")
    os.kill(store.get_info(run_id, "ray_worker")["pid"], signal.SIGKILL)
    assert on_ray.wait(run_id, timeout=120) == RunStatus.FAILED
    record = store.get_run(run_id)
    assert "Ray worker was lost" in record.error and "is kept" in record.error
    assert store.count_snapshots(run_id) >= 2


def test_the_command_line_runs_a_sweep_on_ray(cluster, tmp_path, capsys):
    from dmlviz.cli import main

    sweep_file = tmp_path / "sweep.yaml"
    sweep_file.write_text("base: {dataset: digits, device: cpu, steps: 20, probe_size: 100}\n"
                          "axes: {loss: [softmax, normface]}\nseeds: 1\n")
    store = ["--store", str(tmp_path / "store")]
    assert main([*store, "sweep", str(sweep_file), "--executor", "ray", "--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr()
    assert "2 runs queued on Ray, 2 at a time" in out.err
    assert "loss=softmax" not in out.out and "softmax" in out.out and "normface" in out.out
    finished = RunStore(tmp_path / "store").list_runs([RunStatus.FINISHED])
    assert sorted(record.name for record in finished) == ["sweep · loss=normface · seed 0",
                                                          "sweep · loss=softmax · seed 0"]
