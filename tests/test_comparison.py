"""Comparisons: configs on equal terms, URLs, presets, what tells stored runs apart, and lockstep training."""

import numpy as np
import pytest
from sinks import ListSink

from dmlviz.comparison import (
    COMPARISON_PRESETS,
    Comparison,
    LossChoice,
    differences,
    get_comparison_preset,
)
from dmlviz.config import ConfigError, RunConfig
from dmlviz.engine import train, train_together
from dmlviz.runner import StoreSink
from dmlviz.store import RunStore


def digits(**settings):
    return RunConfig.from_dict({"dataset": "digits", "device": "cpu", "probe_size": 200, "batch_size": 64,
                                "snapshot_steps": 10, **settings})


def test_every_preset_gives_valid_configs_that_differ_only_in_the_loss():
    for preset in COMPARISON_PRESETS:
        configs = preset.comparison().configs()
        assert [c.loss for c in configs] == list(preset.losses)
        assert differences([c.to_dict() for c in configs]) == []


def test_a_pair_loss_makes_every_run_draw_class_balanced_batches():
    configs = get_comparison_preset("triplet-vs-osm").comparison().configs()
    assert {c.sampler for c in configs} == {"balanced"}
    plain = get_comparison_preset("softmax-vs-center").comparison().configs()
    assert {c.sampler for c in plain} == {"auto"}
    mixed = Comparison(RunConfig(), (LossChoice("softmax"), LossChoice("triplet"))).configs()
    assert {c.sampler for c in mixed} == {"balanced"}


def test_the_url_round_trips_and_says_what_belongs_to_each_loss():
    comparison = Comparison(RunConfig(dataset="digits", feature_dim=3, seed=4),
                            (LossChoice("arcface", {"margin": 0.3}), LossChoice("osm-caa", {}, 0.01)))
    query = comparison.to_query()
    assert query["loss1"] == "arcface" and query["hp1.margin"] == "0.3" and query["loss_lr2"] == "0.01"
    assert query["seed"] == "4" and "loss" not in query
    assert Comparison.from_query(query).configs() == comparison.configs()


def test_bad_comparisons_list_every_problem():
    with pytest.raises(ConfigError) as caught:
        Comparison(RunConfig(), (LossChoice("softmax"),)).configs()
    assert "2 to 4 losses" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        Comparison(RunConfig(), (LossChoice("softmax"), LossChoice("center", {"alpha": 2}))).configs()
    assert "loss 2 (center): alpha must be between 0 and 1, got 2" in caught.value.errors
    with pytest.raises(ConfigError) as caught:
        Comparison.from_query({"loss1": "softmax", "loss3": "nope", "seed": "x", "hp.scale": "2"})
    errors = " | ".join(caught.value.errors)
    assert "loss2 is missing" in errors and "seed" in errors and "hp.scale belongs to each loss" in errors


def test_differences_name_the_settings_other_than_the_loss():
    a = RunConfig(loss="softmax", seed=0).to_dict()
    b = RunConfig(loss="center", seed=1, loss_lr=0.1, epochs=5).to_dict()
    assert differences([a, b]) == ["epochs: 3 / 5", "seed: 0 / 1"]
    assert differences([a]) == []


def test_runs_trained_together_start_alike_see_the_same_batches_and_train_as_they_would_alone():
    softmax, center = digits(loss="softmax", steps=30), digits(loss="center", steps=30)
    sinks = [ListSink(), ListSink()]
    results = train_together([softmax, center], None, sinks)
    assert [r.outcome for r in results] == ["finished", "finished"]
    first, second = (sink.info for sink in sinks)
    assert first["backbone_hash"] == second["backbone_hash"]
    np.testing.assert_array_equal(first["first_batch"], second["first_batch"])
    # Snapshotted at the same steps, so a timeline moves both at once.
    assert [s.step for s in sinks[0].snapshots] == [s.step for s in sinks[1].snapshots]
    # Lockstep changes nothing in a run: softmax alone gives the same features.
    alone = ListSink()
    train(softmax, None, alone)
    for together, solo in zip(sinks[0].snapshots, alone.snapshots, strict=True):
        np.testing.assert_array_equal(together.features, solo.features)
    # A cosine head drops the feature PReLU, and still shares the backbone's weights.
    arc = ListSink()
    train(digits(loss="arcface", steps=1), None, arc)
    assert arc.info["backbone_hash"] == first["backbone_hash"]


def test_balanced_batches_hold_runs_of_four_samples_per_class():
    from dmlviz.engine import setup

    trainer = setup(digits(sampler="balanced", steps=1), None)
    labels = trainer.data.y_train[trainer.info()["first_batch"]]
    counts = np.bincount(labels.numpy())
    assert counts.sum() == 64 and all(c % 4 == 0 for c in counts)


def test_a_diverging_run_ends_alone_and_the_others_train_on(tmp_path):
    store = RunStore(tmp_path)
    good = digits(loss="softmax", steps=40)
    bad = digits(loss="softmax", steps=40, optimizer="sgd", lr=10.0, momentum=0.99)
    ids = [store.create_run(c.to_dict(), status="running") for c in (good, bad)]
    ended = {}
    results = train_together([good, bad], None, [StoreSink(store, i) for i in ids],
                             on_end=lambda i, result: ended.setdefault(i, result.step))
    assert [r.outcome for r in results] == ["finished", "diverged"]
    assert ended[1] < ended[0] == 40  # the diverged one was reported when it happened
    assert store.snapshot_index(ids[0])[-1].kind == "final"
