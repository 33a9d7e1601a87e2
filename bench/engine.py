"""Engine speed on MNIST, measured side by side in one process (``make bench``).

1. the engine with default snapshots against a plain PyTorch loop over the same in-memory tensors;
2. the engine with snapshots off against the tutorial loop (torchvision MNIST, ``ToTensor`` and
   ``Normalize`` through a ``DataLoader``);
3. time from ``python -m dmlviz train`` to the first snapshot in the store, dataset cached;
4. images/s of full and light LeNet++ in fp32 and bf16, and their share of the CPU's fp32 peak;
5. time to 95 % MNIST test accuracy with the light LeNet++ (default settings, d = 2).

Throughput is training images per second of wall time from the first step to the last, with
every live snapshot the engine takes in between (the step-0 snapshot included), but without the
end-of-run evaluation of the whole test set, which is reported on its own. Runs of the compared
loops alternate, so drifts in machine speed hit both sides alike. Results are printed and
written to ``bench/results/engine.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

import torch
import torch.nn.functional as F

from dmlviz import settings
from dmlviz.config import RunConfig
from dmlviz.data import prepare
from dmlviz.engine import Engine, FreeRunning, setup
from dmlviz.models import build_model
from dmlviz.store import RunStore

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "MNIST"
NOMINAL_PEAK_GFLOPS = 230.0  # the 2-core development CPU's fp32 peak as the project notes give it


class NullSink:
    def __init__(self) -> None:
        self.snapshots: list = []

    def started(self, info: dict) -> None:
        pass

    def snapshot(self, snapshot: object) -> None:
        self.snapshots.append(snapshot)


def sync(device: torch.device) -> None:
    """Wait for the GPU's queued work, so a clock reads work done rather than work queued (no-op on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def mnist_cache(data_dir: Path) -> Path:
    """The MNIST cache, filled from the shared offline copy when it is empty."""
    raw = data_dir / "MNIST" / "raw"
    if not raw.exists() and SHARED_MNIST.exists():
        shutil.copytree(SHARED_MNIST, data_dir / "MNIST")
    return data_dir


def engine_rate(config: RunConfig, data_dir: Path) -> tuple[float, int, float]:
    """Training images/s up to the final snapshot, the number of snapshots, and the final one's cost."""
    trainer = setup(config, data_dir)
    sink = NullSink()
    start = time.perf_counter()
    Engine(trainer, sink).run()
    total = time.perf_counter() - start
    final = sink.snapshots[-1]
    return trainer.step * trainer.batch_size / final.elapsed, len(sink.snapshots), total - final.elapsed


def plain_rate(config: RunConfig, data_dir: Path) -> float:
    """A plain loop over the same on-device tensors: randperm, index, normalise, step. No snapshots."""
    trainer = setup(config, data_dir)  # same data, model, classifier, optimizer and precision
    data, model, head, optimizer = trainer.data, trainer.model, trainer.loss_fn.classifier, trainer.optimizer
    bs = trainer.batch_size
    model.train()
    start = time.perf_counter()
    order = torch.randperm(len(data.y_train))
    for step in range(trainer.total_steps):
        index = order[step * bs:(step + 1) * bs]
        x, y = data.normalize(data.x_train[index]), data.y_train[index]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=trainer.bf16):
            loss = F.cross_entropy(head(model(x).float()), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return trainer.total_steps * bs / (time.perf_counter() - start)


def tutorial_rate(config: RunConfig, data_dir: Path) -> float:
    """The usual tutorial loop: per-image ToTensor + Normalize through a DataLoader."""
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])
    train_set = datasets.MNIST(data_dir, train=True, download=True, transform=transform)
    trainer = setup(config, data_dir)
    model, head, optimizer = trainer.model, trainer.loss_fn.classifier, trainer.optimizer
    loader = torch.utils.data.DataLoader(train_set, batch_size=trainer.batch_size, shuffle=True, drop_last=True)
    start = time.perf_counter()
    model.train()
    for step, (x, y) in enumerate(loader):
        if step == trainer.total_steps:
            break
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=trainer.bf16):
            loss = F.cross_entropy(head(model(x).float()), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return trainer.total_steps * trainer.batch_size / (time.perf_counter() - start)


def first_snapshot_seconds(data_dir: Path) -> float:
    """From starting ``python -m dmlviz train`` to its first snapshot being readable in the store."""
    with tempfile.TemporaryDirectory() as store_dir:
        store = RunStore(store_dir)
        env = {**os.environ, settings.DATA_DIR_ENV: str(data_dir), settings.STORE_DIR_ENV: store_dir}
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-m", "dmlviz", "train", "--quiet", "--steps", "2000"],
                                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while True:
                runs = store.list_runs()
                if runs and store.count_snapshots(runs[0].id):
                    return time.perf_counter() - start
                if process.poll() is not None:
                    raise RuntimeError("the train command ended before its first snapshot")
                time.sleep(0.01)
        finally:
            process.kill()
            process.wait()


def training_flops_per_image(model: torch.nn.Module, channels: int, size: int) -> float:
    """2 FLOP per multiply-accumulate of the forward pass, times 3 for forward + backward.

    Padded taps count, as in the usual nominal figure (0.49 GFLOP for LeNet++); oneDNN skips
    them, so the work really done is about a fifth less.
    """
    macs = 0

    def count(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, torch.nn.Conv2d):
            macs += output.numel() * module.in_channels * module.kernel_size[0] * module.kernel_size[1]
        elif isinstance(module, torch.nn.Linear):
            macs += module.in_features * module.out_features
    hooks = [m.register_forward_hook(count) for m in model.modules()]
    model(torch.zeros(1, channels, size, size))
    for hook in hooks:
        hook.remove()
    return 6.0 * macs


def sgemm_gflops(n: int = 2048, repeats: int = 20) -> float:
    """The fp32 matrix-multiply rate this CPU reaches with all its threads: a practical peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def step_rate(config: RunConfig, data_dir: Path, steps: int) -> float:
    trainer = setup(config, data_dir)
    trainer.train_step()  # the first step builds oneDNN kernels
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    return steps * trainer.batch_size / (time.perf_counter() - start)


def time_to_accuracy(config: RunConfig, data_dir: Path, target: float) -> float | None:
    class Watch(NullSink):
        reached: float | None = None

        def snapshot(self, snapshot) -> None:
            if self.reached is None and snapshot.metrics.get("probe_acc", 0) >= target:
                self.reached = snapshot.elapsed

    class UntilReached(FreeRunning):
        def gate(self) -> str:
            return "stop" if sink.reached is not None else "run"

    sink = Watch()
    Engine(setup(config, data_dir), sink, UntilReached()).run()
    return sink.reached


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=468, help="training steps per measured run (468 = 1 epoch)")
    parser.add_argument("--repeats", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "engine.json")
    args = parser.parse_args()
    data_dir = mnist_cache(settings.data_dir(args.data_dir))
    prepare("mnist", data_dir, torch.device("cpu"))  # load once, as a cached dataset would be

    base = RunConfig.from_dict({"dataset": "mnist", "model": "lenetpp-light", "batch_size": 128,
                                "steps": args.steps, "device": "cpu"})
    quiet = base.replace(snapshot_steps=10**9)
    results: dict[str, object] = {"steps": args.steps, "batch_size": 128, "threads": torch.get_num_threads()}
    engine_rate(base, data_dir)  # warm-up: page in the data and build the CPU kernels once
    engine, plain, engine_off, tutorial, snaps, final = [], [], [], [], [], []

    def measure_engine() -> None:
        rate, count, final_cost = engine_rate(base, data_dir)
        engine.append(rate)
        snaps.append(count)
        final.append(final_cost)

    measurements = [measure_engine, lambda: plain.append(plain_rate(base, data_dir)),
                    lambda: engine_off.append(engine_rate(quiet, data_dir)[0]),
                    lambda: tutorial.append(tutorial_rate(quiet, data_dir))]
    for repeat in range(args.repeats):
        for measure in measurements if repeat % 2 == 0 else reversed(measurements):
            measure()
    results |= {
        "engine_default_snapshots_img_s": median(engine), "snapshots_per_run": median(snaps),
        "final_test_evaluation_s": median(final),
        "plain_loop_img_s": median(plain), "engine_vs_plain": median(engine) / median(plain),
        "engine_snapshots_off_img_s": median(engine_off), "tutorial_loop_img_s": median(tutorial),
        "engine_vs_tutorial": median(engine_off) / median(tutorial),
    }
    results["first_snapshot_s"] = median(first_snapshot_seconds(data_dir) for _ in range(3))
    results["sgemm_gflops"] = sgemm_gflops()
    for model in ("lenetpp", "lenetpp-light"):
        flops = training_flops_per_image(build_model(model, 1, 28, 2), 1, 28)
        for precision in ("fp32", "bf16"):
            rate = step_rate(base.replace(model=model, precision=precision), data_dir, 60)
            results[f"{model}_{precision}_img_s"] = rate
            results[f"{model}_{precision}_share_of_nominal_fp32_peak"] = rate * flops / 1e9 / NOMINAL_PEAK_GFLOPS
            results[f"{model}_{precision}_share_of_measured_sgemm"] = rate * flops / 1e9 / results["sgemm_gflops"]
        results[f"{model}_gflop_per_training_image"] = flops / 1e9
    results["light_seconds_to_95pct"] = time_to_accuracy(
        base.replace(steps=None, epochs=5), data_dir, 0.95)
    for key, value in results.items():
        print(f"{key:42} {value:.4g}" if isinstance(value, float) else f"{key:42} {value}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
