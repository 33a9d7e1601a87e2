"""Every registered loss on MNIST with the light LeNet++, in 2-D and 3-D, on one fixed budget.

For each loss and feature dim: its recommended settings for that dim (the Learn page's preset),
the same budget and seed for all, then test accuracy (full test set; nearest class mean for
losses without a classifier), P@1 and MAP@R and the mean intra- and inter-class angles of the
probe set (2,000 stratified test images), and the wall time of the run on this machine.
Writes ``bench/results/losses.json`` and the Markdown table in ``bench/results/losses.md``.

    python -m bench.losses [--epochs 1] [--losses softmax,center] [--dims 2,3]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.engine import NullSink, mnist_cache
from dmlviz import settings
from dmlviz.config import RunConfig
from dmlviz.engine import Engine, setup
from dmlviz.geometry import mean_angles, retrieval_metrics
from dmlviz.losses import get_spec, loss_names
from dmlviz.losses.catalog import preset

RESULTS = Path(__file__).parent / "results"


def measure(name: str, dim: int, epochs: float, seed: int, data_dir: Path) -> dict[str, object]:
    spec = get_spec(name)
    config = RunConfig.from_dict({**preset(spec, dim), "dataset": "mnist", "model": "lenetpp-light",
                                  "epochs": epochs, "steps": None, "seed": seed, "device": "cpu"})
    start = time.perf_counter()
    trainer = setup(config, data_dir)
    sink = NullSink()
    result = Engine(trainer, sink).run()
    seconds = time.perf_counter() - start
    final = sink.snapshots[-1]
    labels = trainer.data.probe_labels.cpu().numpy()
    trained = np.isin(labels, trainer.data.train_classes)  # presets may train on a subset of classes
    classes = "all" if trained.all() else ",".join(map(str, trainer.data.train_classes))
    row: dict[str, object] = {"loss": name, "dim": dim, "classes": classes, "outcome": result.outcome,
                              "test_acc": final.metrics.get("test_acc"), "seconds": seconds}
    if result.outcome == "finished":
        row |= retrieval_metrics(final.features[trained], labels[trained], normalized=spec.normalized)
        row |= mean_angles(final.features[trained], labels[trained])
    return row


def table(rows: list[dict[str, object]], epochs: float) -> str:
    def cell(value: object, fmt: str) -> str:
        return format(value, fmt) if isinstance(value, float) else "—"

    lines = [f"MNIST, light LeNet++, {epochs:g} epoch(s), seed 0, each loss with its recommended settings "
             "for the dim (the fixed simplex trains on d + 1 classes); P@1, MAP@R and angles (degrees) on the "
             "probe set's trained classes; time on this machine.", "",
             "| loss | d | classes | test acc | P@1 | MAP@R | intra ∠ | inter ∠ | time (s) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['loss']} | {r['dim']} | {r.get('classes', 'all')} | {cell(r.get('test_acc'), '.2%')} "
                     f"| {cell(r.get('p_at_1'), '.3f')} "
                     f"| {cell(r.get('map_at_r'), '.3f')} | {cell(r.get('intra_angle'), '.1f')} "
                     f"| {cell(r.get('inter_angle'), '.1f')} | {cell(r.get('seconds'), '.0f')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--losses", default=",".join(loss_names()))
    parser.add_argument("--dims", default="2,3")
    args = parser.parse_args()
    data_dir = mnist_cache(settings.data_dir(args.data_dir))
    # Measured rows replace their earlier versions; the others are kept, in registry order.
    saved = RESULTS / "losses.json"
    rows = {(r["loss"], r["dim"]): r for r in json.loads(saved.read_text())} if saved.exists() else {}
    for name in args.losses.split(","):
        for dim in (int(d) for d in args.dims.split(",")):
            rows[name, dim] = measure(name, dim, args.epochs, args.seed, data_dir)
            print(json.dumps(rows[name, dim]), flush=True)
    order = {name: i for i, name in enumerate(loss_names())}
    rows = sorted(rows.values(), key=lambda r: (order.get(r["loss"], len(order)), r["dim"]))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "losses.json").write_text(json.dumps(rows, indent=2))
    (RESULTS / "losses.md").write_text(table(rows, args.epochs))
    print(table(rows, args.epochs))


if __name__ == "__main__":
    main()
