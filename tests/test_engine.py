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
    actions = ["pause", "step", "pause", "run", "run", "run", "run", "run", "pause", "pause", "stop"]
    engine = Engine(setup(digits(steps=100, snapshot_every=3600), None), sink, Script(actions))
    result = engine.run()
    assert result.outcome == "stopped" and result.step == 6
    # Formation snapshots come at every one of the first steps (then at 7, 9, 12, ...), single step or not;
    # a pause records the step it stopped at (once); a pause at a recorded step adds nothing.
    assert [(s.step, s.kind) for s in sink.snapshots] == [
        (0, "tick"), (1, "formation"), (2, "formation"), (3, "formation"), (4, "formation"), (5, "formation"),
        (6, "tick"), (6, "final")]


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


def steps_of(total: int) -> list[int]:
    """The steps formation_due picks in a run of ``total`` steps, with the first and the final one."""
    from dmlviz.engine import formation_due

    steps = [0]
    for step in range(1, total):
        if formation_due(step, steps[-1], total):
            steps.append(step)
    return [*steps, total]


def test_formation_snapshots_are_dense_at_first_then_evenly_spaced():
    from dmlviz.engine import formation_due

    assert steps_of(469)[:17] == [0, 1, 2, 3, 4, 5, 7, 9, 12, 15, 19, 24, 30, 38, 48, 60, 72]
    assert formation_due(1, 0, 10**6) and not formation_due(6, 5, 469) and formation_due(7, 5, 469)
    assert not formation_due(99, 80, 10**6) and formation_due(100, 80, 10**6)  # a quarter of the steps done ...
    assert not formation_due(71, 60, 469) and formation_due(72, 60, 469)  # ... up to a 40th of the run (11.7)
    for total in (1, 7, 40, 200, 469, 5000, 100_000):
        steps = steps_of(total)
        assert max(np.diff(steps)) <= max(1, np.ceil(total / 40)), total
        assert len(steps) <= min(total + 1, 85), total  # a few dozen, whatever the run's length
    assert len(steps_of(469)) == 51


def test_runs_in_lockstep_replay_their_formation_without_gaps_watched_or_not():
    from dmlviz.engine import train_together

    # A clock so slow that the first snapshot is its only one: what an unwatched run gets is formation's.
    config = digits(steps=200, batch_size=16, probe_size=100, snapshot_every=3600)
    sinks = [ListSink(), ListSink()]
    results = train_together([config, config.replace(loss="center")], None, sinks)
    assert [r.outcome for r in results] == ["finished", "finished"]
    steps = [(s.step, s.kind) for s in sinks[0].snapshots]
    assert steps == [(s.step, s.kind) for s in sinks[1].snapshots]  # the same steps in both runs
    assert len(steps) >= 30
    assert max(np.diff([step for step, _ in steps])) <= 200 / 10
    # All but the first and the final ones (and any epoch ends) are formation snapshots, kept by the store.
    assert {kind for _, kind in steps[1:-1]} <= {"formation", "epoch"} and steps[-1] == (200, "final")


def test_a_watched_run_on_a_cpu_leaves_a_core_to_the_page():
    import torch

    from dmlviz.engine import WatchedThreads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        threads = WatchedThreads(torch.device("cpu"))
        threads.follow(True)
        assert torch.get_num_threads() == 1
        with threads.every_core():  # a snapshot: the page waits for it
            assert torch.get_num_threads() == 2
        threads.follow(True)
        assert torch.get_num_threads() == 1
        threads.follow(False)
        assert torch.get_num_threads() == 2
        torch.set_num_threads(1)
        single = WatchedThreads(torch.device("cpu"))  # one core: nothing to leave
        single.follow(True)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_runs_of_a_comparison_share_one_copy_of_their_data(tmp_path, monkeypatch, one_thread):
    from dmlviz import engine
    from dmlviz.engine import FreeRunning, train_together

    made = []
    real_setup = engine.setup
    monkeypatch.setattr(engine, "setup", lambda *args, **kwargs: made.append(real_setup(*args, **kwargs)) or made[-1])
    base = {"dataset": "digits", "device": "cpu", "steps": 3, "probe_size": 50}
    configs = [RunConfig.from_dict({**base, "loss": loss}) for loss in ("softmax", "center")]
    configs.append(RunConfig.from_dict({**base, "loss": "softmax", "seed": 1}))  # another sample: its own data
    results = train_together(configs, tmp_path, [ListSink() for _ in configs], FreeRunning())
    assert [r.outcome for r in results] == ["finished"] * 3
    assert made[0].data is made[1].data and made[2].data is not made[0].data
