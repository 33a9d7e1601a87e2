"""Every registered loss with the light LeNet++, in 2-D and 3-D (or any dims), on one fixed budget.

For each loss and feature dim: its recommended settings for that dim (the Learn page's preset; a dim
without one, such as 128, takes the loss's defaults), the same budget and seed for all, then test
accuracy (full test set; nearest class mean for losses without a classifier), P@1 and MAP@R and the
mean intra- and inter-class angles of the probe set (2,000 stratified test images), and the wall time
of the run on this machine. Each row records its outcome: finished, diverged (with the engine's
message) or skipped (a loss that cannot take the dim, with the reason), so a failure shows in the table.

Results go to ``<out>/losses.json`` and the Markdown table ``<out>/losses.md`` for the 0.5-epoch
budget that the README cites, and to ``losses-<budget>.json`` / ``.md`` (``losses-3ep``) for others,
so tables of different budgets stand side by side. ``--out`` defaults to ``bench/results``.

    python -m bench.losses [--epochs 0.5] [--losses softmax,center] [--dims 2,3,128] [--device cpu]
    python -m bench.losses --dataset digits --losses center --dims 2 --steps 5 --probe-size 100 --out /tmp/l
                                                                           # a smoke test, in seconds
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.engine import NullSink, mnist_cache
from dmlviz import settings
from dmlviz.config import ConfigError, RunConfig
from dmlviz.data import DATASETS
from dmlviz.engine import Engine, setup
from dmlviz.geometry import mean_angles, retrieval_metrics
from dmlviz.losses import get_spec, loss_names
from dmlviz.losses.catalog import preset

RESULTS = Path(__file__).parent / "results"
# What every run shares besides the loss's own settings; --dataset, --device and --steps change it.
BASE: dict[str, Any] = {"dataset": "mnist", "model": "lenetpp-light", "device": "cpu", "steps": None}
README_EPOCHS = 0.5  # the budget of bench/results/losses.md, which the README cites


def data_folder(data_dir: Path | None, dataset: str) -> Path:
    """The data folder; MNIST's is filled from the shared offline copy (other datasets need nothing)."""
    folder = settings.data_dir(data_dir)
    return mnist_cache(folder) if dataset == "mnist" else folder


def results_stem(epochs: float, steps: int | None = None) -> str:
    """The results' file name for a budget: ``losses`` for the README's 0.5 epochs, else ``losses-3ep``."""
    if steps is not None:
        return f"losses-{steps}steps"
    return "losses" if epochs == README_EPOCHS else f"losses-{epochs:g}ep"


def measure(name: str, dim: int, epochs: float, seed: int, data_dir: Path,
            base: Mapping[str, Any] = BASE) -> dict[str, object]:
    spec = get_spec(name)
    row: dict[str, object] = {"loss": name, "dim": dim, "classes": "all"}
    try:
        # The registry's recommended settings for this dim, if any (else the loss's defaults).
        config = RunConfig.from_dict({**preset(spec, dim), **base, "epochs": epochs, "seed": seed})
    except ConfigError as error:  # a loss that cannot take this dim says why before any run exists
        return row | {"outcome": "skipped", "error": str(error)}
    start = time.perf_counter()
    trainer = setup(config, data_dir)
    sink = NullSink()
    result = Engine(trainer, sink).run()
    seconds = time.perf_counter() - start
    labels = trainer.data.probe_labels.cpu().numpy()
    trained = np.isin(labels, trainer.data.train_classes)  # presets may train on a subset of classes
    row |= {"classes": "all" if trained.all() else ",".join(map(str, trainer.data.train_classes)),
            "outcome": result.outcome, "steps": result.step, "test_acc": None, "seconds": seconds}
    if result.outcome != "finished":
        return row | {"error": result.error}
    final = sink.snapshots[-1]
    row["test_acc"] = final.metrics.get("test_acc")
    row |= retrieval_metrics(final.features[trained], labels[trained], normalized=spec.normalized)
    row |= mean_angles(final.features[trained], labels[trained])
    return row


def outcome_text(row: Mapping[str, object]) -> str:
    """``finished``, or the outcome with its reason (a row saved before outcomes carried one has none)."""
    outcome, error = str(row.get("outcome", "finished")), row.get("error")
    if not error:
        return outcome
    return str(error) if str(error).startswith(outcome) else f"{outcome}: {error}"  # "diverged at step 5: …"


def table(rows: list[dict[str, object]], epochs: float, dataset: str = "MNIST", model: str = "light LeNet++",
          budget: str | None = None) -> str:
    def cell(value: object, fmt: str) -> str:
        return format(value, fmt) if isinstance(value, float) else "—"

    budget = budget or f"{epochs:g} epoch(s)"
    lines = [f"{dataset}, {model}, {budget}, seed 0, each loss with its recommended settings for the dim "
             "(its defaults where it has none, e.g. d = 128; the fixed simplex trains on d + 1 classes in 2-D "
             "and 3-D); P@1, MAP@R and angles (degrees) on the probe set's trained classes; time on this machine.",
             "", "| loss | d | classes | outcome | test acc | P@1 | MAP@R | intra ∠ | inter ∠ | time (s) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['loss']} | {r['dim']} | {r.get('classes', 'all')} | {outcome_text(r)} "
                     f"| {cell(r.get('test_acc'), '.2%')} | {cell(r.get('p_at_1'), '.3f')} "
                     f"| {cell(r.get('map_at_r'), '.3f')} | {cell(r.get('intra_angle'), '.1f')} "
                     f"| {cell(r.get('inter_angle'), '.1f')} | {cell(r.get('seconds'), '.0f')} |")
    return "\n".join(lines) + "\n"


def run_losses(names: Sequence[str], dims: Sequence[int], epochs: float, seed: int, data_dir: Path,
               base: Mapping[str, Any], out: Path) -> list[dict[str, object]]:
    """Measure every loss at every dim, merge the rows into the budget's results in ``out`` and write
    its JSON and Markdown table; the merged rows, in registry order."""
    stem = results_stem(epochs, base.get("steps"))
    saved = out / f"{stem}.json"
    # Measured rows replace their earlier versions; the others are kept, in registry order.
    rows = {(r["loss"], r["dim"]): r for r in json.loads(saved.read_text())} if saved.exists() else {}
    for name in names:
        for dim in dims:
            rows[name, dim] = measure(name, dim, epochs, seed, data_dir, base)
            print(json.dumps(rows[name, dim]), flush=True)
    order = {name: i for i, name in enumerate(loss_names())}
    merged = sorted(rows.values(), key=lambda r: (order.get(r["loss"], len(order)), r["dim"]))
    budget = f"{base['steps']} steps" if base.get("steps") else None
    text = table(merged, epochs, dataset_text(str(base.get("dataset", "mnist"))), _model_text(base), budget)
    out.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(merged, indent=2))
    (out / f"{stem}.md").write_text(text)
    print(text)
    return merged


def dataset_text(name: str) -> str:
    return DATASETS[name].display_name if name in DATASETS else name


def _model_text(base: Mapping[str, Any]) -> str:
    return {"lenetpp-light": "light LeNet++", "lenetpp": "LeNet++"}.get(str(base.get("model")), str(base.get("model")))


def add_arguments(parser: argparse.ArgumentParser, epochs: float, dims: str, device: str) -> None:
    """The options of a losses measurement (shared with ``python -m bench.converge losses``)."""
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--dataset", default="mnist", help="mnist, or digits (offline) for a smoke test")
    parser.add_argument("--device", default=device)
    parser.add_argument("--epochs", type=float, default=epochs)
    parser.add_argument("--steps", type=int, default=None, help="a run's length in steps instead (smoke tests)")
    parser.add_argument("--probe-size", type=int, default=None, help="probe images (default: RunConfig's 2,000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--losses", default=",".join(loss_names()))
    parser.add_argument("--dims", default=dims)
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the results files")


def from_arguments(args: argparse.Namespace) -> list[dict[str, object]]:
    if unknown := set(args.losses.split(",")) - set(loss_names()):
        raise SystemExit(f"error: unknown loss(es) {', '.join(sorted(unknown))}")
    base = {**BASE, "dataset": args.dataset, "device": args.device, "steps": args.steps}
    if args.probe_size:
        base["probe_size"] = args.probe_size
    return run_losses(args.losses.split(","), [int(d) for d in args.dims.split(",")], args.epochs, args.seed,
                      data_folder(args.data_dir, args.dataset), base, args.out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser, epochs=1.0, dims="2,3", device="cpu")
    from_arguments(parser.parse_args())


if __name__ == "__main__":
    main()
