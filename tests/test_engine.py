"""The engine: real training on real MNIST, reproducibility, snapshots, divergence."""

import numpy as np
import pytest
from sinks import ListSink

from dmlviz.config import RunConfig
from dmlviz.engine import Engine, FreeRunning, setup, train


def digits(**settings):
    return RunConfig.from_dict({"dataset": "digits", "device": "cpu", "probe_size": 200, **settings})


def test_same_seed_same_snapshots_and_another_seed_differs():
    config = digits(loss="center", steps=30, batch_size=64, snapshot_steps=10, feature_dim=3)

    def run(cfg):
        sink = ListSink()
        train(cfg, None, sink)
        return sink.snapshots

    first, second, other = run(config), run(config), run(config.replace(seed=1))
    assert [(s.step, s.kind) for s in first] == [(0, "tick"), (10, "tick"), (20, "tick"), (21, "epoch"), (30, "final")]
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a.features, b.features)
        np.testing.assert_array_equal(a.class_vectors["centers"], b.class_vectors["centers"])
        assert {k: v for k, v in a.metrics.items() if k != "images_per_s"} == \
               {k: v for k, v in b.metrics.items() if k != "images_per_s"}
    assert not np.array_equal(first[-1].features, other[-1].features)


def test_class_means_cover_unseen_classes():
    config = digits(classes="0,1,2", steps=5, batch_size=32)
    sink = ListSink()
    train(config, None, sink)
    snap = sink.snapshots[-1]
    labels = sink.info["probe_labels"]
    assert set(labels) == set(range(10))  # unseen classes stay in the probe set
    assert snap.class_means.shape == (10, 2)
    np.testing.assert_allclose(snap.class_means[7], snap.features[labels == 7].mean(0), rtol=1e-5)
    assert snap.class_vectors["weights"].shape == (3, 2)  # the classifier knows only the training classes


def test_divergence_stops_the_run_with_a_hint():
    config = digits(optimizer="sgd", lr=10.0, momentum=0.99, steps=200, batch_size=32)
    sink = ListSink()
    result = train(config, None, sink)
    assert result.outcome == "diverged"
    assert result.error.startswith(f"diverged at step {result.step}") and "lower the learning rate" in result.error
    assert all(np.isfinite(s.features).all() for s in sink.snapshots)  # nothing non-finite is recorded


def test_stop_and_single_step_through_control():
    class Script(FreeRunning):
        def __init__(self, actions):
            self.actions = list(actions)

        def gate(self):
            return self.actions.pop(0)

    sink = ListSink()
    actions = ["pause", "step", "run", "run", "run", "pause", "pause", "stop"]
    engine = Engine(setup(digits(steps=100, snapshot_every=3600), None), sink, Script(actions))
    result = engine.run()
    assert result.outcome == "stopped" and result.step == 4
    # A pause records the step it stopped at (once); a pause at a recorded step adds nothing.
    assert [(s.step, s.kind) for s in sink.snapshots] == [(0, "tick"), (1, "tick"), (4, "tick"), (4, "final")]


def test_snapshot_period_keeps_snapshots_within_their_budget():
    from dmlviz.engine import snapshot_period

    assert snapshot_period(0.01, 0.04, 0.5) == 0.5  # cheap snapshots: the cadence asked for
    assert snapshot_period(0.15, 0.04, 0.5) == pytest.approx(3.75)  # 0.15 s every 3.75 s is 4 %
    assert snapshot_period(0.15, 0.5, 0.5) == 0.5  # a watching page allows half the time


def test_a_watched_run_snapshots_at_its_cadence_and_an_unwatched_one_within_its_budget():
    class Watched(FreeRunning):
        def __init__(self, watched):
            self._watched = watched

        def watched(self):
            return self._watched

    # A budget so small that, unwatched, only the first live snapshot (before any cost is known) fits in.
    config = digits(steps=150, batch_size=16, snapshot_every=0.05, snapshot_budget=0.005, probe_size=500)

    def ticks(watched):
        sink = ListSink()
        Engine(setup(config, None), sink, Watched(watched)).run()
        return sum(1 for s in sink.snapshots if s.kind == "tick" and s.step > 0)

    assert ticks(False) <= 1
    assert ticks(True) >= 4
