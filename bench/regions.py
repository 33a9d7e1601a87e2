"""What a 2-D run's decision map and forces add to a snapshot (``python -m bench.regions``).

For a loss of each kind (a linear classifier, a margin head with its band, a pair loss's nearest class
mean), MNIST, 2,000 probe images, the default light LeNet++ on this CPU: the median time of a live snapshot
with its decision map and forces and without them (both switched off), measured alternately in one process
after a few training steps. Goal (issue "Show why"): they add under 10 % of a snapshot's cost. Results are
printed and written to ``bench/results/regions.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from statistics import median

import torch

from bench.engine import mnist_cache
from dmlviz import engine, settings
from dmlviz.config import RunConfig
from dmlviz.engine import setup
from dmlviz.losses import get_spec
from dmlviz.losses.catalog import preset

LOSSES = ("softmax", "arcface", "triplet")


def snapshot_ms(trainer: engine.Trainer, with_extras: bool) -> float:
    """One live snapshot's wall time, with the decision map and forces or without them."""
    original = engine.decision_map
    if not with_extras:
        engine.decision_map = lambda *args, **kwargs: {}
        trainer.forces = lambda *args, **kwargs: {}
    try:
        start = time.perf_counter()
        trainer.snapshot("tick", 0.0, 1.0)
        return (time.perf_counter() - start) * 1000
    finally:
        engine.decision_map = original
        vars(trainer).pop("forces", None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "regions.json")
    args = parser.parse_args()
    data_dir = mnist_cache(settings.data_dir(args.data_dir))
    results: dict[str, object] = {"threads": torch.get_num_threads(), "probe_size": 2000, "repeats": args.repeats}
    for name in LOSSES:
        config = RunConfig.from_dict({**preset(get_spec(name), 2), "dataset": "mnist", "device": "cpu"})
        trainer = setup(config, data_dir)
        for _ in range(30):
            trainer.train_step()
        trainer.snapshot("tick", 0.0, 1.0)  # warm-up
        with_extras, without = [], []
        for repeat in range(args.repeats):
            for flag in (True, False) if repeat % 2 == 0 else (False, True):
                (with_extras if flag else without).append(snapshot_ms(trainer, flag))
        results[name] = {"snapshot_ms": median(with_extras), "without_map_and_forces_ms": median(without),
                         "added_share": (median(with_extras) - median(without)) / median(without)}
        print(f"{name:10} snapshot {median(with_extras):7.1f} ms, without the map and forces {median(without):7.1f} "
              f"ms: they add {results[name]['added_share']:+.1%}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
