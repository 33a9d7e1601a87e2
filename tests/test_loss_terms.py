"""Every loss's named terms add up to it, its active shares are shares, and the engine records both."""

import pytest
import torch
from sinks import ListSink

from dmlviz.config import RunConfig
from dmlviz.engine import train
from dmlviz.losses import build_loss, loss_names
from dmlviz.metrics import PANELS, metric_spec

#: The terms each loss of several parts reports (with its default hyperparameters).
TERMS = {
    "intraloss": {"arcface", "intra"},
    "center": {"softmax", "center"},
    "ie": {"softmax", "ie"},
    "contrastive-center": {"softmax", "contrastive-center"},
    "ring": {"softmax", "ring"},
    "contrastive": {"positive", "negative"},
    "multi-similarity": {"positive", "negative"},
    "osm-caa": {"positive", "negative", "softmax"},
    "proxy-anchor": {"positive", "negative"},
    "class-adversarial": {"softmax", "adversarial"},
}
#: The active shares of the losses that mine or hinge.
ACTIVE = {
    "contrastive": {"positive pairs", "negative pairs"},
    "triplet": {"triplets"},
    "multi-similarity": {"positive pairs", "negative pairs"},
    "osm-caa": {"negative pairs"},
}


def batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """32 features in 3-D, 8 of each of 4 classes."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(32, 3, generator=generator), torch.arange(4).repeat_interleave(8)


@pytest.mark.parametrize("name", loss_names())
def test_terms_add_up_to_the_loss_and_active_shares_are_shares(name):
    torch.manual_seed(0)
    features, labels = batch()
    out = build_loss(name, 4, 3)(features, labels)
    assert set(out.terms) == TERMS.get(name, set())
    assert set(out.active) == ACTIVE.get(name, set())
    if out.terms:
        torch.testing.assert_close(sum(out.terms.values()), out.loss, rtol=1e-5, atol=1e-6)
    for share in out.active.values():
        assert share.ndim == 0 and 0 <= share.item() <= 1


@pytest.mark.parametrize("base", ["center", "intraloss"])
def test_a_loss_built_on_another_reports_the_others_terms(base):
    features, labels = batch(1)
    out = build_loss("class-adversarial", 4, 3, base=base)(features, labels)
    assert set(out.terms) == TERMS[base] | {"adversarial"}
    torch.testing.assert_close(sum(out.terms.values()), out.loss, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rule", ["paper", "sgd"])
def test_center_loss_terms_by_hand(rule):
    features, labels = batch(2)
    loss = build_loss("center", 4, 3, center_rule=rule, **{"lambda": 0.3})
    centers = loss.centers.detach().clone()
    out = loss(features, labels)
    softmax = torch.nn.functional.cross_entropy(loss.classifier(features), labels)
    center = 0.3 / 2 * ((features - centers[labels]) ** 2).sum(1).mean()
    torch.testing.assert_close(out.terms["softmax"], softmax)
    torch.testing.assert_close(out.terms["center"], center)


def test_contrastive_active_shares_count_the_pairs_inside_the_margin():
    features, labels = batch(3)
    out = build_loss("contrastive", 4, 3, margin=1.0)(features, labels)
    distances = torch.cdist(features, features)
    different = labels[:, None] != labels[None, :]
    torch.testing.assert_close(out.active["negative pairs"], (distances[different] < 1.0).float().mean())


def test_the_engine_records_the_terms_per_snapshot():
    config = RunConfig.from_dict({"dataset": "digits", "device": "cpu", "loss": "center", "steps": 15,
                                  "batch_size": 32, "probe_size": 100, "snapshot_steps": 5})
    sink = ListSink()
    train(config, None, sink)
    trained = [s for s in sink.snapshots if s.step > 0]
    assert trained and all({"term.softmax", "term.center"} <= set(s.metrics) for s in trained)
    for snapshot in trained:  # means over the same steps as the loss, so they add up to it too
        assert snapshot.metrics["term.softmax"] + snapshot.metrics["term.center"] == pytest.approx(
            snapshot.metrics["loss"], rel=1e-5)
    spec = metric_spec("term.center")
    assert spec.panel == "Loss terms" and spec.legend == "center" and not spec.live
    active = metric_spec("active.negative pairs")
    assert active.panel == "Active pairs" and active.fraction and not active.live
    assert PANELS.index("Loss terms") == PANELS.index("Loss") + 1
