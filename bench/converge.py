"""Converged numbers beside the published ones (``python -m bench.converge paper|losses``).

``paper``: the center-loss paper's network exactly (full LeNet++, ``model=lenetpp``, no BatchNorm,
``norm=none``) with softmax + center loss and 2-D features on MNIST, from the ``center-loss`` preset's
settings (λ = 0.1, α = 0.5, Adam), trained until the test accuracy stops improving: after every epoch
the whole test set is embedded and scored (as the final snapshot scores it), and the run stops after
``--patience`` epochs without a new best, or at ``--max-epochs``. The run is set up for ``--max-epochs``
epochs, so the learning-rate schedule (cosine by default) spans that whole budget, as a run of that
length would have it; early stopping then ends the run before the schedule's end (``--set
schedule=constant`` for a run that no budget shapes). Reported: the test accuracy of every epoch, the best,
the epoch of the best, training and evaluation seconds, beside the reference 98.5 % (what public
reimplementations of the paper's 2-D figure reach: LeNet++, softmax + center loss, 2-D, MNIST).
``--set name=value`` changes any RunConfig setting (``--set norm=batch``: the dmlviz default network);
each setting is kept under its own label in ``converge.json`` / ``converge.md``.

``losses``: every registered loss at d = 2, 3 and 128 on the light LeNet++ for one fixed budget
(``--epochs``, default 3), each with its recommended settings for the dim (its defaults at d = 128),
through ``bench.losses`` (rows record finished / diverged / skipped with the reason); written to
``losses-3ep.json`` / ``losses-3ep.md``, beside the README's 0.5-epoch ``losses.md``.

Results go to ``--out`` (default ``bench/results``). Smoke test (seconds, offline, into a temp folder):

    python -m bench.converge paper --dataset digits --max-epochs 2 --patience 1 \\
        --set train_size=256 --set batch_size=64 --set probe_size=100 --out /tmp/converge
    python -m bench.converge losses --dataset digits --losses center --dims 2 --steps 5 \\
        --probe-size 100 --out /tmp/converge

The full measurements (long on a CPU: about 30 epochs of LeNet++ and 81 three-epoch runs):

    python -m bench.converge paper [--set norm=batch]
    python -m bench.converge losses
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import torch

from bench import losses as bench_losses
from bench.engine import sync
from bench.picture import parse_set
from dmlviz.config import RunConfig
from dmlviz.engine import Trainer, setup
from dmlviz.presets import get_preset

REFERENCE_ACC = 0.985
REFERENCE = ("98.5 %: the MNIST test accuracy that public reimplementations of the center-loss paper's 2-D "
             "figure reach (LeNet++, softmax + center loss, 2-D features)")
CHECK_EVERY = 25  # steps between checks that the loss is finite (each one syncs a GPU, as in the engine)


def paper_config(dataset: str, device: str, max_epochs: int, overrides: dict[str, str]) -> RunConfig:
    """The center-loss preset on the paper's network, set up for the whole epoch budget."""
    settings = {**get_preset("center-loss").settings, "model": "lenetpp", "norm": "none", "dataset": dataset,
                "device": device, "epochs": max_epochs, "steps": None}
    return RunConfig.from_dict({**settings, **overrides})


def train_epoch(trainer: Trainer) -> bool:
    """One epoch of steps (fewer if the run ends); whether the loss stayed finite."""
    end = min(trainer.total_steps, trainer.step + trainer.steps_per_epoch)
    while trainer.step < end:
        loss = trainer.train_step()
        if (trainer.step % CHECK_EVERY == 0 or trainer.step == end) and not torch.isfinite(loss).item():
            return False
    return True


def evaluate(trainer: Trainer, elapsed: float, interval: float) -> dict[str, float]:
    """The final snapshot's numbers at this point: test accuracy on the whole test set, the epoch's mean
    loss and training accuracy, and the probe's geometry. Taking it only embeds (in eval mode) and resets
    the running sums of the loss and accuracy, so training goes on exactly as it would without it."""
    snapshot = trainer.snapshot("final", elapsed, interval)
    keep = ("test_acc", "loss", "train_acc", "probe_acc", "p_at_1", "images_per_s")
    finite = math.isfinite(float(snapshot.features.min())) and math.isfinite(float(snapshot.features.max()))
    return {key: snapshot.metrics[key] for key in keep if key in snapshot.metrics} | {"finite": finite}


def until_converged(config: RunConfig, data_dir: Path, patience: int) -> dict[str, Any]:
    """Train epoch by epoch, scoring the test set after each, until ``patience`` epochs bring no new best."""
    start = time.perf_counter()
    trainer = setup(config, data_dir)
    epochs: list[dict[str, Any]] = []
    best, best_epoch, train_s, eval_s = -1.0, 0, 0.0, 0.0
    stopped = f"max epochs ({config.epochs:g})"
    while trainer.step < trainer.total_steps:
        began = time.perf_counter()
        finite = train_epoch(trainer)
        sync(trainer.device)
        interval = time.perf_counter() - began
        train_s += interval
        began = time.perf_counter()
        metrics = evaluate(trainer, train_s, interval)
        eval_s += time.perf_counter() - began
        finite = finite and metrics.pop("finite")
        epochs.append({"epoch": round(trainer.epoch, 3), **metrics, "train_s": interval,
                       "eval_s": time.perf_counter() - began})
        print(json.dumps(epochs[-1]), flush=True)
        if not finite:
            stopped = f"diverged in epoch {len(epochs)}: the loss or the features became NaN or infinite"
            break
        if metrics.get("test_acc", -1.0) > best:
            best, best_epoch = metrics["test_acc"], len(epochs)
        elif len(epochs) - best_epoch >= patience:
            stopped = f"no new best in {patience} epochs"
            break
    return {"model": trainer.model_name, "norm": config.norm, "device": str(trainer.device),
            "precision": "bf16" if trainer.bf16 else "fp32", "config": config.to_dict(), "patience": patience,
            "epochs": epochs, "best_test_acc": best if best >= 0 else None, "best_epoch": best_epoch or None,
            "epochs_trained": len(epochs), "stopped": stopped, "train_s": train_s, "eval_s": eval_s,
            "seconds": time.perf_counter() - start, "reference_acc": REFERENCE_ACC}


def paper_table(results: dict[str, dict[str, Any]]) -> str:
    def pct(value: object) -> str:
        return f"{value:.2%}" if isinstance(value, float) else "—"

    lines = ["Softmax + center loss (the `center-loss` preset: λ = 0.1, α = 0.5, Adam), 2-D features, trained until "
             "the test accuracy stopped improving; test accuracy on the whole test set after every epoch. "
             f"Reference: {REFERENCE}. Time on the machine named in each row.", "",
             "| run | model | norm | device | precision | best test acc | reference | epoch of best | epochs "
             "| train (s) | total (s) | stopped |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for label, r in results.items():
        lines.append(f"| {label} | {r['model']} | {r['norm']} | {r['device']} | {r['precision']} "
                     f"| {pct(r['best_test_acc'])} | {pct(r['reference_acc'])} | {r['best_epoch'] or '—'} "
                     f"| {r['epochs_trained']} | {r['train_s']:.0f} | {r['seconds']:.0f} | {r['stopped']} |")
    lines += ["", "Test accuracy per epoch:", ""]
    for label, r in results.items():
        lines.append(f"- {label}: " + ", ".join(pct(e.get("test_acc")) for e in r["epochs"]))
    return "\n".join(lines) + "\n"


def run_paper(args: argparse.Namespace) -> dict[str, Any]:
    overrides = parse_set(args.set)
    config = paper_config(args.dataset, args.device, args.max_epochs, overrides)
    result = until_converged(config, bench_losses.data_folder(args.data_dir, args.dataset), args.patience)
    result["settings"] = " ".join(args.set)
    # "lenetpp norm=none", "lenetpp norm=batch schedule=cosine": each setting keeps its own row.
    others = [item for item in args.set if not item.startswith("norm=")]
    label = args.label or " ".join(["lenetpp", f"norm={config.norm}", *others])
    if args.dataset != "mnist":
        label += f" ({args.dataset})"
    # Results of other settings (labels) are kept beside this one.
    saved = args.out / "converge.json"
    results = json.loads(saved.read_text()) if saved.exists() else {}
    results[label] = result
    args.out.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(results, indent=2))
    (args.out / "converge.md").write_text(paper_table(results))
    print(paper_table({label: result}))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parts = parser.add_subparsers(dest="part", required=True)
    paper = parts.add_parser("paper", help="LeNet++ with softmax + center loss in 2-D until converged")
    paper.add_argument("--data-dir", type=Path, default=None)
    paper.add_argument("--dataset", default="mnist", help="mnist, or digits (offline) for a smoke test")
    paper.add_argument("--device", default="auto")
    paper.add_argument("--max-epochs", type=int, default=30)
    paper.add_argument("--patience", type=int, default=3, help="epochs without a new best before stopping")
    paper.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                       help="a RunConfig setting (e.g. norm=batch, schedule=cosine); repeatable")
    paper.add_argument("--label", default=None, help="the results' label (default: from the settings)")
    paper.add_argument("--out", type=Path, default=bench_losses.RESULTS, help="folder of the results files")
    losses = parts.add_parser("losses", help="every loss at d = 2, 3, 128 on a fixed budget (bench.losses)")
    bench_losses.add_arguments(losses, epochs=3.0, dims="2,3,128", device="auto")
    args = parser.parse_args()
    if args.part == "paper":
        run_paper(args)
    else:
        bench_losses.from_arguments(args)


if __name__ == "__main__":
    main()
