"""The CUDA path end to end in one command, for a lent GPU machine (``python -m bench.gpu_check``).

Parts, each in its own try/except (a failure is recorded and the others still run), each timed:

- ``env``: device, driver, torch / CUDA / cuDNN versions, whether bf16 is native
  (``dmlviz.engine.bf16_native``) and the precision and model a run with ``auto`` settings picks.
- ``engine``: the ``center-loss`` preset for 1 epoch through ``dmlviz.engine`` (``setup`` + ``Engine``,
  a sink that counts snapshots by kind), precision ``auto`` (bf16 where native), trained twice with the
  same seed: images/s up to the final snapshot (live snapshots included, as ``bench.engine`` counts it;
  the first run pays CUDA's start-up, the second is warm), the cost of the final whole-test-set
  evaluation, test accuracy, snapshots, whether the two runs' final features are identical (the engine's
  determinism flags) and the nondeterminism warnings torch gave. Then host-sync-sensitive timings on a
  fresh trainer: ms per step over a block of steps with ``torch.cuda.synchronize`` only around the block
  (what the engine does: it syncs every 25 steps) against a sync after every step, the median cost of a
  live snapshot (2,000 probe images) and of the final one, and peak GPU memory.
- ``fp32``: the same with ``precision=fp32``, for comparison.
- ``syncs``: every registered loss (and each setting of ``dmlviz.syncs.STEP_VARIANTS``: the triplet
  miners, multi-similarity without mining) for ``SYNC_STEPS`` steady steps (after three) on the device, under
  ``torch.cuda.set_sync_debug_mode("warn")`` (the warnings counted per loss: CUDA's own word on what
  waited) and under ``dmlviz.syncs.SyncCounter`` (the operators the CPU test holds to none, by file), so
  the two can be compared.
- ``pairs``: ``bench.pair_losses`` on the device: each pair loss on masks against PML's index lists, ms
  per forward and backward pass (synchronised) at batches of 32, 128 and 256.
- ``picture``: ``bench.picture.images_to_goals`` for the ``center-loss`` and ``arcface-sphere`` presets
  on the device: training images (and seconds) until the probe accuracy reaches 90 / 95 / 97 %.
- ``live`` (only with ``--live``): ``bench.live``'s throughput with the page open, where Chromium,
  Streamlit and Playwright are there; otherwise recorded as skipped with the reason.

Everything is printed and written to one JSON file, rewritten after every part so that a command
stopped at its time limit still returns what it measured: ``--out``, default ``$OUT/gpu_check.json``
where ``$OUT`` is set (the device machine), else ``bench/results/gpu_check.json``. Parts are skipped
once ``--budget-s`` seconds have passed (default 300; the device allows 600 s a command). Expected on
an H100, not yet measured: one to two minutes, most of it CUDA's start-up, MNIST's unpacking and the
two picture runs (at most 1,407 steps and 100 probe evaluations each).

On the lent GPU machine (bare, no internet, torch 2.11 there; ``pytorch-metric-learning`` travels as a
wheel and MNIST's .gz files as data, both in ignored folders): first, here, once::

    bench/gpu_check.sh prepare     # .gpu_data/MNIST/raw/*.gz and .whl/*.whl, both in .git/info/exclude

then the device tool's ``run`` with::

    command:   bash bench/gpu_check.sh
    carry:     [".gpu_data", ".whl"]
    timeout_s: 420
    kind:      nvidia-h100-x1

and the results come back as ``gpu_check.json`` under the reply's ``files_at`` (``--live`` after the
command adds part ``live``; ``--parts engine,fp32`` runs only those). On a CPU, without a GPU, the
whole check runs in well under a minute as a smoke test::

    python -m bench.gpu_check --device cpu --smoke [--out /tmp/gpu_check.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np
import torch

from bench import losses as bench_losses
from bench import pair_losses
from bench.engine import sync
from bench.picture import GOALS, images_to_goals
from dmlviz.config import RunConfig
from dmlviz.engine import Engine, bf16_native, resolve_device, setup
from dmlviz.models import resolve_model_name
from dmlviz.presets import get_preset
from dmlviz.snapshot import Snapshot

RESULTS = Path(__file__).parent / "results"
PARTS = ("env", "syncs", "engine", "fp32", "pairs", "picture", "live")
SYNC_STEPS = 20  # steady steps of each loss under the sync checks
PICTURE_PRESETS = ("center-loss", "arcface-sphere")
# The smoke test: the offline dataset, a few steps, a small probe set; the same code paths otherwise.
SMOKE: dict[str, Any] = {"dataset": "digits", "probe_size": 100, "batch_size": 32}
SMOKE_STEPS = 10


class CountingSink:
    """Keeps the run's facts, the number of snapshots of each kind and the latest snapshot."""

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}
        self.kinds: Counter[str] = Counter()
        self.last: Snapshot | None = None

    def started(self, info: dict[str, Any]) -> None:
        self.info = info

    def snapshot(self, snapshot: Snapshot) -> None:
        self.kinds[snapshot.kind] += 1
        self.last = snapshot


def preset_config(key: str, args: argparse.Namespace, **changes: Any) -> RunConfig:
    """A preset's settings on the device asked for (the smoke test's small data and probe set on top)."""
    settings = {**get_preset(key).settings, "steps": None, "device": args.device, **changes}
    if args.smoke:
        settings |= SMOKE
    return RunConfig.from_dict(settings)


def engine_run(config: RunConfig, data_dir: Path) -> tuple[dict[str, Any], np.ndarray]:
    """One run through setup + Engine: its figures, and its final probe features (for determinism)."""
    began = time.perf_counter()
    trainer = setup(config, data_dir)
    setup_s = time.perf_counter() - began
    sink = CountingSink()
    began = time.perf_counter()
    result = Engine(trainer, sink).run()
    sync(trainer.device)
    run_s = time.perf_counter() - began
    final = sink.last
    assert final is not None  # the step-0 snapshot comes first, whatever happens after
    row = {"outcome": result.outcome, "error": result.error, "steps": trainer.step,
           "batch_size": trainer.batch_size, "model": sink.info.get("model"), "norm": config.norm,
           "precision": sink.info.get("precision"), "setup_s": setup_s, "run_s": run_s,
           # As bench.engine counts it: training images per second up to the final snapshot, live
           # snapshots included, the final whole-test-set evaluation reported on its own.
           "images_per_s": trainer.step * trainer.batch_size / final.elapsed if final.elapsed else None,
           "final_eval_s": run_s - final.elapsed, "test_acc": final.metrics.get("test_acc"),
           "snapshots": sum(sink.kinds.values()), "snapshot_kinds": dict(sink.kinds),
           "backbone_hash": trainer.backbone_hash}
    return row, final.features


def step_timings(config: RunConfig, data_dir: Path, steps: int, warmup: int) -> dict[str, Any]:
    """Host-sync-sensitive timings on a fresh trainer (no Engine): a block of steps synced only at its
    ends against a sync after every step (the gap is what a per-step ``.item()`` would cost), a live
    snapshot's and the final snapshot's cost, and peak GPU memory."""
    trainer = setup(config.replace(steps=warmup + 2 * steps), data_dir)
    device = trainer.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(warmup):  # kernels chosen, allocator warm
        trainer.train_step()
    sync(device)
    began = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    sync(device)
    block = (time.perf_counter() - began) / steps
    began = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
        sync(device)
    synced = (time.perf_counter() - began) / steps
    ticks = []
    for _ in range(5):  # a snapshot ends in .cpu() copies, so it is synced by itself
        began = time.perf_counter()
        trainer.snapshot("tick", 0.0, 1.0)
        ticks.append(time.perf_counter() - began)
    began = time.perf_counter()
    trainer.snapshot("final", 0.0, 1.0)
    final = time.perf_counter() - began
    row = {"steps_timed": steps, "batch_size": trainer.batch_size, "ms_per_step_block": 1e3 * block,
           "ms_per_step_synced_each": 1e3 * synced, "sync_overhead_ms_per_step": 1e3 * (synced - block),
           "images_per_s_block": trainer.batch_size / block, "snapshot_tick_ms_median": 1e3 * median(ticks),
           "snapshot_final_ms": 1e3 * final, "probe_size": len(trainer.data.probe_labels),
           "test_images": len(trainer.data.x_test)}
    if device.type == "cuda":
        row["peak_memory_mib"] = torch.cuda.max_memory_allocated(device) / 2**20
    return row


def part_env(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    device = resolve_device(args.device)
    native = bf16_native(device)
    row: dict[str, Any] = {
        "python": platform.python_version(), "torch": torch.__version__, "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "torchvision": _version("torchvision"), "pytorch_metric_learning": _version("pytorch_metric_learning"),
        "device": str(device), "cpu_threads": torch.get_num_threads(), "bf16_native": native,
        # What a run with precision=auto and model=auto picks here (Trainer's own rule).
        "precision_auto_picks": "bf16" if native else "fp32",
        "model_auto_picks": resolve_model_name("auto", device, 1),
        "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG"), "data_dir": str(data_dir),
        # TF32 decides what "fp32" costs on an H100: cuDNN's convolutions use it unless turned off.
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        row |= {"gpu": props.name, "capability": f"{props.major}.{props.minor}",
                "gpu_memory_gib": props.total_memory / 2**30, "multiprocessors": props.multi_processor_count}
    if shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"]
        row["nvidia_smi"] = subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip()
    return row


def _version(module: str) -> str | None:
    try:
        return getattr(__import__(module), "__version__", "?")
    except ImportError:
        return None


def part_engine(args: argparse.Namespace, data_dir: Path, precision: str) -> dict[str, Any]:
    changes: dict[str, Any] = {"epochs": 1, "precision": precision}
    if args.smoke:
        changes["steps"] = SMOKE_STEPS
    config = preset_config("center-loss", args, **changes)
    with warnings.catch_warnings(record=True) as caught:
        # The engine turns on torch's deterministic algorithms with warn_only: its warnings name the
        # operations that stay nondeterministic.
        warnings.simplefilter("always")
        first, features = engine_run(config, data_dir)
        second, again = engine_run(config, data_dir)
    messages = sorted({str(w.message).split("\n")[0][:300] for w in caught})
    row: dict[str, Any] = {
        "config": config.to_dict(), "first_run": first, "second_run": second,
        "images_per_s_warm": second["images_per_s"], "test_acc": second["test_acc"],
        "identical_features": bool(np.array_equal(features, again)),
        "max_feature_difference": float(np.nanmax(np.abs(features - again))) if features.size else 0.0,
        "same_test_acc": first["test_acc"] == second["test_acc"], "warnings": messages,
    }
    steps, warmup = (3, 1) if args.smoke else (200, 20)
    row["step_timings"] = step_timings(config, data_dir, steps, warmup)
    return row


def part_syncs(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    from dmlviz.losses import loss_names
    from dmlviz.syncs import STEP_VARIANTS, SyncCounter

    cuda = torch.device(args.device).type == "cuda"
    rows: dict[str, Any] = {}
    for loss, loss_params in [(name, {}) for name in loss_names()] + list(STEP_VARIANTS):
        label = " ".join([loss, *(f"{key}={value}" for key, value in loss_params.items())])
        try:
            config = RunConfig.from_dict({"dataset": SMOKE["dataset"] if args.smoke else "mnist", "loss": loss,
                                          "loss_params": loss_params, "device": args.device, "feature_dim": 16,
                                          "steps": 100, "probe_size": 100})
            trainer = setup(config, data_dir)
            for _ in range(3):
                trainer.train_step()
            sync(trainer.device)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if cuda:
                    torch.cuda.set_sync_debug_mode("warn")
                try:
                    with SyncCounter() as counter:
                        for _ in range(SYNC_STEPS):
                            trainer.train_step()
                    sync(trainer.device)
                finally:
                    if cuda:
                        torch.cuda.set_sync_debug_mode("default")
            syncing = [str(w.message).split("\n")[0][:200] for w in caught if "synchroniz" in str(w.message)]
            rows[label] = {"cuda_sync_warnings_per_step": len(syncing) / SYNC_STEPS if cuda else None,
                          "cuda_warnings": sorted(set(syncing))[:5],
                          "counted_per_step": sum(counter.waits().values()) / SYNC_STEPS,
                          "counted_files": sorted({where.rsplit(":", 1)[0] for _, where in counter.waits()})}
        except Exception as error:  # noqa: BLE001 — one loss's failure must not hide the others'
            rows[label] = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps({"syncs": label, **rows[label]}), flush=True)
    return rows


def part_picture(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    max_images = SMOKE_STEPS * SMOKE["batch_size"] if args.smoke else args.max_images
    row: dict[str, Any] = {"max_images": max_images}
    for key in PICTURE_PRESETS:
        row[key] = images_to_goals(preset_config(key, args), data_dir, max_images)
        print(json.dumps({"picture": key, **row[key]}), flush=True)
    return row


def part_live(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    """bench.live, shortened, where a browser can run; the reason where it cannot."""
    if not args.live:
        return {"skipped": "not asked for (--live)"}
    from bench.appserver import chromium_path

    if chromium_path() is None:
        return {"skipped": "no chromium"}
    if missing := [m for m in ("streamlit", "playwright", "plotly") if importlib.util.find_spec(m) is None]:
        return {"skipped": f"missing Python packages: {', '.join(missing)}"}
    with tempfile.TemporaryDirectory(prefix="dmlviz-gpu-live-") as folder:
        out = Path(folder) / "live.json"
        command = [sys.executable, "-m", "bench.live", "--skip-memory", "--run-seconds", "20", "--window", "10",
                   "--settle", "5", "--attempts", "1", "--data-dir", str(data_dir), "--out", str(out)]
        # Within the check's budget (plus a minute), so the device command ends inside its limit.
        timeout = max(10.0, min(args.live_timeout, args.deadline + 60 - time.perf_counter()))
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            return {"error": f"bench.live exited {done.returncode}", "output_tail": done.stdout[-2000:]
                    + done.stderr[-2000:]}
        return json.loads(out.read_text())


def _num(value: object, fmt: str) -> str:
    return format(value, fmt) if isinstance(value, int | float) else str(value)


def summary(results: dict[str, Any]) -> str:
    """A few lines to read first; the JSON holds everything."""
    lines = []
    env = results.get("env", {})
    lines.append(f"device {env.get('gpu', env.get('device'))}, torch {env.get('torch')} "
                 f"(CUDA {env.get('torch_cuda')}), bf16 native {env.get('bf16_native')}, "
                 f"auto picks {env.get('precision_auto_picks')} and {env.get('model_auto_picks')}")
    for name in ("engine", "fp32"):
        part = results.get(name)
        if part is None:
            continue
        if "error" in part or "skipped" in part:
            lines.append(f"{name}: {part.get('error') or part.get('skipped')}")
            continue
        run, timing = part["second_run"], part["step_timings"]
        lines.append(f"{name}: {run['precision']} {run['model']}, {_num(part['images_per_s_warm'], '.0f')} img/s "
                     f"warm ({_num(part['first_run']['images_per_s'], '.0f')} first), test acc "
                     f"{_num(part['test_acc'], '.2%')}, "
                     f"{run['snapshots']} snapshots, final eval {run['final_eval_s']:.2f} s; "
                     f"{timing['ms_per_step_block']:.2f} ms/step in a block, {timing['ms_per_step_synced_each']:.2f} "
                     f"synced each; identical features {part['identical_features']}")
    picture = results.get("picture", {})
    for key in PICTURE_PRESETS:
        if key in picture:
            r = picture[key]
            goals = ", ".join(f"{g:.0%}: {r[f'images_{g:.0%}']}" for g in GOALS)
            lines.append(f"picture {key}: images to {goals}; best {r['best']:.1%}")
    if "picture" in results and ("error" in picture or "skipped" in picture):
        lines.append(f"picture: {picture.get('error') or picture.get('skipped')}")
    if (live := results.get("live")) is not None:
        lines.append(f"live: {live.get('skipped') or live.get('error') or 'measured (see the JSON)'}")
    return "\n".join(lines)


def run_part(name: str, measure: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A part's result with its seconds; an exception becomes the part's error, and the check goes on."""
    began = time.perf_counter()
    try:
        row = measure()
    except Exception as error:  # noqa: BLE001 - one failing part must not lose the others' figures
        row = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()[-3000:]}
    row["seconds"] = time.perf_counter() - began
    print(json.dumps({name: row}, default=str), flush=True)
    return row


def default_out(smoke: bool) -> Path:
    if "OUT" in os.environ:  # the device machine's folder of files that come back
        return Path(os.environ["OUT"]) / "gpu_check.json"
    # A smoke test never overwrites the GPU's figures.
    return Path(tempfile.gettempdir()) / "dmlviz-gpu_check-smoke.json" if smoke else RESULTS / "gpu_check.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--smoke", action="store_true", help="digits, a few steps, 100 probe images")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"which of {', '.join(PARTS)} to run")
    parser.add_argument("--live", action="store_true", help="also measure the live page (needs Chromium)")
    parser.add_argument("--live-timeout", type=float, default=240.0)
    parser.add_argument("--max-images", type=int, default=180_000, help="picture: training images at most")
    parser.add_argument("--budget-s", type=float, default=300.0, help="start no part after this many seconds")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    # As the engine's setup does, but before anything touches CUDA: cuBLAS reads it when it starts.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    parts = args.parts.split(",")
    if unknown := set(parts) - set(PARTS):
        raise SystemExit(f"error: unknown part(s) {', '.join(sorted(unknown))}")
    out = args.out or default_out(args.smoke)
    dataset = SMOKE["dataset"] if args.smoke else "mnist"
    data_dir = bench_losses.data_folder(args.data_dir, dataset)
    measures: dict[str, Callable[[], dict[str, Any]]] = {
        "env": lambda: part_env(args, data_dir),
        "syncs": lambda: part_syncs(args, data_dir),
        "engine": lambda: part_engine(args, data_dir, "auto"),
        "fp32": lambda: part_engine(args, data_dir, "fp32"),
        "pairs": lambda: {"rows": pair_losses.measure(args.device, [32] if args.smoke else [32, 128, 256], 2,
                                                      2 if args.smoke else 15)},
        "picture": lambda: part_picture(args, data_dir),
        "live": lambda: part_live(args, data_dir),
    }
    start = time.perf_counter()
    args.deadline = start + args.budget_s
    results: dict[str, Any] = {"args": {k: str(v) for k, v in vars(args).items()}, "started": time.time()}
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in (p for p in PARTS if p in parts):
        if time.perf_counter() > args.deadline:
            results[name] = {"skipped": f"time budget of {args.budget_s:g} s spent"}
        else:
            results[name] = run_part(name, measures[name])
        results["seconds"] = time.perf_counter() - start
        out.write_text(json.dumps(results, indent=2, default=str))  # after every part: a timeout keeps them
    print(summary(results))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
