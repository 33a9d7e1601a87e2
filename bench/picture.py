"""How fast the picture forms: training images until the probe accuracy first reaches 90, 95 and 97 %.

For each preset (the classic pictures of ``dmlviz.presets``) the run trains with the preset's settings
and the probe set (2,000 stratified test images) is scored every few steps, outside the timed part:
the loss's classifier where it has one, P@1 (nearest neighbour) where it has none, on the probe's
trained classes. Images are what the picture costs on any machine; seconds are training time on this
one (evaluations excluded). A second measurement checks the one-epoch CLI run with default settings
(``python -m dmlviz train --dataset mnist --loss center --feature-dim 2 --epochs 1``): its test
accuracy and how many snapshots it keeps.

Results go to ``bench/results/picture.json`` under a label (``--label before``/``after``, kept side
by side) and ``bench/results/picture.md``.

    python -m bench.picture [--presets center-loss,triplet-2d] [--set lr=0.01 ...] [--label after]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench.engine import NullSink, mnist_cache
from dmlviz import settings
from dmlviz.config import RunConfig
from dmlviz.engine import Engine, Trainer, setup
from dmlviz.geometry import retrieval_metrics
from dmlviz.presets import PRESETS, get_preset

RESULTS = Path(__file__).parent / "results"
GOALS = (0.90, 0.95, 0.97)
PRESET_KEYS = ("softmax-petals", "center-loss", "normface-sphere", "arcface-sphere", "triplet-2d", "cam-softmax",
               "unseen-classes")
CLI_DEFAULTS = {"dataset": "mnist", "loss": "center", "feature_dim": 2, "epochs": 1}


def parse_set(items: list[str]) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in items]
    if bad := [item for item, pair in zip(items, pairs, strict=True) if len(pair) != 2]:
        raise SystemExit(f"error: --set takes name=value, got {', '.join(bad)}")
    return dict(pairs)


def _score(trainer: Trainer) -> float:
    """The probe's accuracy on its trained classes: classifier, or P@1 for losses without one."""
    data = trainer.data
    features = trainer.embed(data.probe_batch())
    labels = data.to_train_label[data.probe_labels]
    trained = labels >= 0
    if trainer.has_classifier:
        return trainer.accuracy(features[trained], labels[trained])
    return retrieval_metrics(features[trained], labels[trained], trainer.normalized)["p_at_1"]


def _next_evaluation(step: int) -> int:
    """Every 5 steps (640 images at the default batch) in the first 200 steps, every 20 after."""
    return step + (5 if step < 200 else 20)


def images_to_goals(config: RunConfig, data_dir: Path, max_images: int) -> dict[str, object]:
    """Train until the highest goal or ``max_images``; images and training seconds to each goal."""
    trainer = setup(config, data_dir)
    steps = min(trainer.total_steps, -(-max_images // trainer.batch_size))
    row: dict[str, object] = {"loss": config.loss, "dim": config.feature_dim, "model": trainer.model_name,
                              "batch_size": trainer.batch_size}
    reached: dict[float, tuple[int, float]] = {}
    seconds, best, at = 0.0, 0.0, _next_evaluation(0)
    while trainer.step < steps and len(reached) < len(GOALS):
        start = time.perf_counter()
        trainer.train_step()
        seconds += time.perf_counter() - start
        if trainer.step == at or trainer.step == steps:
            at = _next_evaluation(trainer.step)
            score = _score(trainer)
            best = max(best, score)
            for goal in GOALS:
                if score >= goal and goal not in reached:
                    reached[goal] = (trainer.step * trainer.batch_size, seconds)
    for goal in GOALS:
        images, secs = reached.get(goal, (None, None))
        row[f"images_{goal:.0%}"] = images
        row[f"seconds_{goal:.0%}"] = secs
    row |= {"best": best, "images_trained": trainer.step * trainer.batch_size}
    return row


def cli_default_run(data_dir: Path, overrides: dict[str, str]) -> dict[str, object]:
    """The one-epoch CLI run with default settings, as the CLI trains it: test accuracy, snapshots kept."""
    config = RunConfig.from_dict({**CLI_DEFAULTS, **overrides})
    trainer = setup(config, data_dir)
    sink = NullSink()
    start = time.perf_counter()
    result = Engine(trainer, sink).run()
    return {"outcome": result.outcome, "test_acc": sink.snapshots[-1].metrics.get("test_acc"),
            "snapshots": len(sink.snapshots), "seconds": time.perf_counter() - start}


def table(results: dict[str, dict[str, object]]) -> str:
    def cell(value: object, fmt: str) -> str:
        return "—" if value is None else format(value, fmt)

    lines = ["Training images (and seconds of training on this machine) until the probe accuracy first reaches "
             "90 / 95 / 97 % (P@1 for losses without a classifier); MNIST, each preset's settings, seed 0.", ""]
    for label, result in results.items():
        lines += [f"### {label}", "", f"Settings: {result['settings'] or 'the presets as they are'}", "",
                  "| preset | loss | d | model | 90 % | 95 % | 97 % | best |", "|---|---|---|---|---|---|---|---|"]
        for key, r in result["presets"].items():
            goals = " | ".join(f"{cell(r[f'images_{g:.0%}'], ',')} ({cell(r[f'seconds_{g:.0%}'], '.0f')} s)"
                               if r[f"images_{g:.0%}"] is not None else f"> {r['images_trained']:,}"
                               for g in GOALS)
            lines.append(f"| {key} | {r['loss']} | {r['dim']} | {r['model']} | {goals} | {r['best']:.1%} |")
        if cli := result.get("cli"):
            flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in CLI_DEFAULTS.items())
            lines += ["", f"One-epoch CLI run with default settings (`{flags}`): test accuracy "
                      f"{cli['test_acc']:.2%}, {cli['snapshots']} snapshots, {cli['seconds']:.0f} s."]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--presets", default=",".join(PRESET_KEYS))
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a RunConfig setting for every preset (e.g. lr=0.01)")
    parser.add_argument("--max-images", type=int, default=180_000)
    parser.add_argument("--no-cli", action="store_true", help="skip the one-epoch CLI run")
    parser.add_argument("--label", default=None, help="save the results under this label")
    args = parser.parse_args()
    if unknown := set(args.presets.split(",")) - {p.key for p in PRESETS}:
        raise SystemExit(f"error: unknown preset(s) {', '.join(sorted(unknown))}")
    overrides = parse_set(args.set)
    data_dir = mnist_cache(settings.data_dir(args.data_dir))
    result: dict[str, object] = {"settings": " ".join(args.set), "presets": {}}
    for key in args.presets.split(","):
        config = RunConfig.from_dict({**get_preset(key).settings, "steps": None, **overrides})
        row = images_to_goals(config, data_dir, args.max_images)
        result["presets"][key] = row
        print(json.dumps({"preset": key, **row}), flush=True)
    if not args.no_cli:
        result["cli"] = cli_default_run(data_dir, overrides)
        print(json.dumps({"cli": result["cli"]}), flush=True)
    if args.label:
        saved = RESULTS / "picture.json"
        results = json.loads(saved.read_text()) if saved.exists() else {}
        results[args.label] = result
        saved.write_text(json.dumps(results, indent=2))
        (RESULTS / "picture.md").write_text(table(results))
    print(table({args.label or "this run": result}))


if __name__ == "__main__":
    main()
