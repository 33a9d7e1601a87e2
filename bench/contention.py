"""Training threads when another process wants a core (``python -m bench.contention``).

A live page's server and browser run beside the training worker; on a laptop, so do other programs.
This measures a light LeNet++ training step on MNIST (batch 32, the defaults) with torch on one thread
and on every core, alone and beside a process that keeps one core busy (a Python busy loop), under
OpenMP's default wait policy and under ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep instead of spinning
while they wait for each other). Each case runs in a fresh process (the policy is read when OpenMP
starts) and alternates the thread counts; the median of ``--rounds`` rounds of ``--steps`` steps is
reported in ms a step, with the load average before each case. Results: ``bench/results/contention.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.engine import mnist_cache

OUT = Path(__file__).parent / "results" / "contention.json"
MEASURE = """
import json, statistics, sys, time, torch
from pathlib import Path
from dmlviz.config import RunConfig
from dmlviz.engine import setup
cores, steps, rounds = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
trainer = setup(RunConfig.from_dict({"dataset": "mnist", "device": "cpu", "steps": 100_000}), Path(sys.argv[1]))
times = {1: [], cores: []}
for _ in range(rounds):
    for threads in (cores, 1):
        torch.set_num_threads(threads)
        for _ in range(3):
            trainer.train_step()
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step()
        times[threads].append((time.perf_counter() - start) / steps * 1000)
print(json.dumps({str(k): round(statistics.median(v), 1) for k, v in times.items()}))
"""
BUSY = "while True: pass"


def measure(data_dir: Path, policy: str | None, busy: bool, steps: int, rounds: int) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("OMP_WAIT_POLICY", None)
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    load = os.getloadavg()[0]
    burner = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
    try:
        out = subprocess.run([sys.executable, "-c", MEASURE, str(data_dir), str(os.cpu_count()), str(steps),
                              str(rounds)], env=env, capture_output=True, text=True, check=True).stdout
    finally:
        if burner is not None:
            burner.kill()
            burner.wait()
    return {"policy": policy or "default", "other_core_busy": busy, "load_before": round(load, 2),
            "ms_per_step": json.loads(out.strip().splitlines()[-1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    data_dir = mnist_cache(args.data_dir or Path(tempfile.gettempdir()) / "dmlviz-bench-data")
    results = []
    for policy in (None, "PASSIVE"):
        for busy in (False, True):
            time.sleep(2)  # the previous case's processes gone
            result = measure(data_dir, policy, busy, args.steps, args.rounds)
            print(json.dumps(result), flush=True)
            results.append(result)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"cpu_count": os.cpu_count(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
