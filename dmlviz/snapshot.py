"""What a run records: its snapshots, the moments of training that the pages draw.

Kept free of torch so that readers of the store (pages, CLI) need nothing heavier than NumPy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Why a snapshot was taken: on the wall-clock cadence (or a single step, a pause), at an epoch end, at
#: the end of a run, or on the formation cadence (dense at the start, then even; see
#: ``engine.formation_due``). Store thinning removes only ticks.
SNAPSHOT_KINDS = ("tick", "epoch", "final", "formation")


@dataclass
class Snapshot:
    """The state of a run at one training step.

    ``features`` are the probe set's features (P × d, float32) in probe order; ``class_vectors``
    holds what the loss itself learns, each C × d in training-class order (e.g. ``{"weights":
    W}`` or ``{"centers": c}``); ``class_means`` are the probe features' per-class means for
    every class of the dataset (K × d, NaN rows for classes absent from the probe).
    ``metrics`` holds scalar numbers such as ``loss``, ``train_acc``, ``test_acc``, ``lr``,
    ``images_per_s`` and the current value of any scheduled hyperparameter (``schedule.margin``);
    :mod:`dmlviz.metrics` describes each. ``decision`` is a 2-D run's decision map (:mod:`dmlviz.regions`:
    ``box``, ``winner`` and, for a margin loss, ``band``); empty for wider features. ``forces``: where
    the loss pushes some probe points (``rows``, their probe rows, and ``vectors``, −∂L/∂f of each; see
    ``engine.Trainer.forces``); empty for features wider than 3-D.
    """

    step: int
    epoch: float
    elapsed: float
    kind: str
    metrics: dict[str, float]
    features: np.ndarray
    class_means: np.ndarray
    class_vectors: dict[str, np.ndarray] = field(default_factory=dict)
    decision: dict[str, np.ndarray] = field(default_factory=dict)
    forces: dict[str, np.ndarray] = field(default_factory=dict)
