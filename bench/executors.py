"""A 12-run sweep on the local executor and on Ray (``python -m bench.executors``).

The sweep: four losses × three seeds on ``digits`` (offline, seconds a run), each run with the same steps
and probe. Measured on this machine, each in a fresh store:

1. local, one run at a time (the app's default on a CPU), two torch threads a run;
2. Ray (a head started in this process, 2 CPUs), one run at a time, two threads a run;
3. Ray, two at a time, one thread each.

For each: the sweep's wall time, each run's time from its start to its end (the store's ``started_at`` and
``finished_at``), and the wait from a run's submission to its first snapshot in the store (start-up and,
on Ray, task scheduling and the snapshot's trip back). Ray's overhead is the ratio of 2. to 1. Then, from
the measured per-run figures, an estimate (arithmetic, not a measurement) of a 30-student class and of a
26-loss × 3-seed sweep on a cluster of N slots: ceil(runs / N) × a run's median time on Ray, plus once the
first run of a new Ray worker (which imports torch).
Results are printed and written to ``bench/results/executors.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from pathlib import Path
from statistics import mean, median

from dmlviz.config import RunConfig
from dmlviz.runner import Runner
from dmlviz.status import RunStatus
from dmlviz.store import RunStore

RESULTS = Path(__file__).parent / "results" / "executors.json"
LOSSES = ("softmax", "center", "normface", "arcface")
SEEDS = (0, 1, 2)


def sweep_configs(steps: int) -> list[RunConfig]:
    return [RunConfig.from_dict({"dataset": "digits", "device": "cpu", "loss": loss, "seed": seed, "steps": steps,
                                 "probe_size": 300, "snapshot_steps": 20})
            for loss in LOSSES for seed in SEEDS]


def measure(runner: Runner, configs: list[RunConfig]) -> dict:
    """Submit every run at once and wait for all: the sweep's wall time, and per run its time and first frame."""
    store = runner.store
    started = time.monotonic()
    ids = [runner.submit(config) for config in configs]
    first_frame: dict[int, float] = {}  # wall clock (the store's) when its first snapshot was there
    while len(first_frame) < len(ids) or any(store.get_run(run_id).active for run_id in ids):
        for run_id in ids:
            if run_id not in first_frame and store.count_snapshots(run_id):
                first_frame[run_id] = time.time()
        time.sleep(0.02)
    wall = time.monotonic() - started
    records = [store.get_run(run_id) for run_id in ids]
    assert all(record.status == RunStatus.FINISHED for record in records), [r.error for r in records]
    # Waiting in the queue aside: from a run's start to its first snapshot, and to its end.
    run_s = [record.finished_at - record.started_at for record in records]
    first = [first_frame[record.id] - record.started_at for record in records]
    return {"wall_s": round(wall, 2), "run_s": {"mean": round(mean(run_s), 2), "median": round(median(run_s), 2),
                                                 "all": [round(s, 2) for s in run_s]},
            "start_to_first_frame_s": {"median": round(median(first), 3)}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="steps a run")
    args = parser.parse_args()
    import ray

    from dmlviz.ray_executor import RayExecutor, connect

    configs = sweep_configs(args.steps)
    root = Path(tempfile.mkdtemp(prefix="bench-executors-"))
    data = root / "data"
    results: dict = {"machine": f"{platform.machine()}, {platform.processor() or platform.system()}",
                     "runs": len(configs), "steps": args.steps, "dataset": "digits", "probe": 300}

    def one(name: str, make) -> None:
        store = RunStore(root / name)
        runner = make(store)
        try:
            # A first run warms up what every later one reuses (the forkserver, Ray's workers, the dataset).
            runner.wait(runner.submit(RunConfig.from_dict({"dataset": "digits", "device": "cpu", "steps": 5})), 300)
            results[name] = measure(runner, configs)
        finally:
            runner.shutdown()
            store.close()
        print(name, json.dumps(results[name]), flush=True)

    one("local_1_at_a_time", lambda store: Runner(store, data, max_concurrent=1, threads=2))
    started = time.monotonic()
    connect(cpus=2)
    results["ray_start_s"] = round(time.monotonic() - started, 2)
    one("ray_1_at_a_time", lambda store: Runner(store, data, max_concurrent=1, threads=2,
                                                executor=RayExecutor(store, data, cpus=2)))
    one("ray_2_at_a_time", lambda store: Runner(store, data, max_concurrent=2, threads=1,
                                                executor=RayExecutor(store, data, cpus=1)))
    ray.shutdown()

    local, on_ray = results["local_1_at_a_time"], results["ray_1_at_a_time"]
    # A Ray worker's first run imports torch and dmlviz (the local executor's forkserver did it beforehand):
    # a cost once per worker process, apart from what every run pays (its snapshots' trip back, the actor).
    per_run_extra = on_ray["run_s"]["median"] - local["run_s"]["median"]
    results["ray_overhead"] = {"wall_ratio": round(on_ray["wall_s"] / local["wall_s"], 3),
                               "run_ratio_median": round(on_ray["run_s"]["median"] / local["run_s"]["median"], 3),
                               "extra_s_per_run": round(per_run_extra, 2),
                               "first_run_in_a_new_worker_s": max(on_ray["run_s"]["all"]),
                               "first_frame_ratio": round(on_ray["start_to_first_frame_s"]["median"]
                                                          / local["start_to_first_frame_s"]["median"], 2)}
    run_s = on_ray["run_s"]["median"]
    cold = max(on_ray["run_s"]["all"]) - run_s
    results["estimates"] = {
        "basis": f"ceil(runs / slots) x {run_s:.1f} s (a digits run on Ray here, median) + {cold:.0f} s once per "
                 "worker (its first run's imports); a GPU slot's own run time would replace this CPU's",
        "class_of_30_s": {str(slots): round(math.ceil(30 / slots) * run_s + cold, 1) for slots in (1, 2, 4, 8, 30)},
        "sweep_26x3_s": {str(slots): round(math.ceil(78 / slots) * run_s + cold, 1) for slots in (1, 4, 8, 16, 78)},
    }
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
