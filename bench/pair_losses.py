"""Pair losses on masks against pytorch-metric-learning's index lists (``python -m bench.pair_losses``).

Every pair loss and miner computes PML's numbers on masks of all pairs (``forward``), where PML builds
index lists (``listed``) whose ``nonzero`` and boolean selections make the CPU wait for a GPU (batch-all
and semi-hard triplets take the lists beyond batches of 64 on a CPU and 256 elsewhere: ``forward`` is
the path training takes). For each loss setting and batch size: the median milliseconds of a forward and
backward pass of each path, and the operators that would wait for a GPU in one pass of each
(``dmlviz.syncs.SyncCounter``), on random features of dimension ``--dim`` and class-balanced labels
(eight samples a class, as a pair batch draws them). On a CUDA device every timed pass ends with
``torch.cuda.synchronize``. Goal: ``forward`` waits for nothing where it takes the masks and is no slower
than the lists on this CPU. Results are printed and written to ``bench/results/pair_losses.json``.

    python -m bench.pair_losses [--device cuda] [--batch-sizes 32,64,128,256] [--dim 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from statistics import median
from typing import Any

import torch

from bench.engine import sync
from dmlviz.losses import build_loss, get_spec, loss_names
from dmlviz.losses.pair import PMLPairLoss
from dmlviz.syncs import STEP_VARIANTS, SyncCounter

SAMPLES_PER_CLASS = 8


def settings() -> list[tuple[str, dict[str, Any]]]:
    """Every loss built on PML's pair losses, with its defaults and each setting that changes what a step computes."""
    pair = [name for name in loss_names() if issubclass(get_spec(name).factory, PMLPairLoss)]
    return [(name, {}) for name in pair] + [(name, params) for name, params in STEP_VARIANTS if name in pair]


def pass_ms(path: Any, features: torch.Tensor, labels: torch.Tensor, repeats: int) -> float:
    """The median wall time of one forward and backward pass of ``path`` (after two untimed ones)."""
    times = []
    for repeat in range(repeats + 2):
        sync(features.device)
        start = time.perf_counter()
        path(features, labels).loss.backward()
        sync(features.device)
        if repeat >= 2:
            times.append((time.perf_counter() - start) * 1000)
        features.grad = None
    return median(times)


def waits(path: Any, features: torch.Tensor, labels: torch.Tensor) -> int:
    """How many operators of one forward and backward pass would wait for a GPU."""
    with SyncCounter() as counter:
        path(features, labels).loss.backward()
    features.grad = None
    return sum(counter.waits().values())


def measure(device: str, batch_sizes: list[int], dim: int, repeats: int) -> list[dict[str, Any]]:
    rows = []
    for name, params in settings():
        for batch_size in batch_sizes:
            generator = torch.Generator().manual_seed(batch_size)
            classes = max(batch_size // SAMPLES_PER_CLASS, 2)
            labels = torch.arange(batch_size).remainder(classes).to(device)
            features = torch.randn(batch_size, dim, generator=generator).to(device).requires_grad_(True)
            loss = build_loss(name, classes, dim, **params).to(device)
            row = {"loss": name, "params": params, "batch_size": batch_size, "dim": dim,
                   "forward_ms": pass_ms(loss, features, labels, repeats),
                   "listed_ms": pass_ms(loss.listed, features, labels, repeats),
                   "forward_waits": waits(loss, features, labels), "listed_waits": waits(loss.listed, features, labels)}
            row["listed_over_forward"] = row["listed_ms"] / row["forward_ms"]
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", default="32,64,128,256")
    parser.add_argument("--dim", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "pair_losses.json")
    args = parser.parse_args()
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]
    rows = measure(args.device, batch_sizes, args.dim, args.repeats)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"device": args.device, "threads": torch.get_num_threads(),
                                    "repeats": args.repeats, "rows": rows}, indent=1) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
