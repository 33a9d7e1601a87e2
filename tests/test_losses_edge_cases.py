"""Edge cases of every registered loss: float64 features and parameters, an all-zero feature, and the
reduction over anchors of SupCon and circle loss when some anchors' loss underflows to 0 in float32."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses

from dmlviz.losses import build_loss, get_spec, loss_names
from dmlviz.losses.base import NORM_FLOOR, unit

CLASSES, DIM = 4, 3  # d = 3 ≥ C − 1: the fixed simplex builds too


def variants() -> list[tuple[str, dict[str, object]]]:
    """Every registered loss with its defaults, plus each other choice and each flipped switch."""
    out: list[tuple[str, dict[str, object]]] = []
    for name in loss_names():
        out.append((name, {}))
        for hp in get_spec(name).hparams:
            if hp.choices:
                out += [(name, {hp.name: choice}) for choice in hp.choices if choice != hp.default]
            elif isinstance(hp.default, bool):
                out.append((name, {hp.name: not hp.default}))
    return out


VARIANTS = variants()
IDS = [name + "".join(f"-{k}={v}" for k, v in hp.items()) for name, hp in VARIANTS]


def batch(dtype: torch.dtype, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """4 samples of each of 4 classes (what the pair losses need), random 3-D features."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(CLASSES).repeat_interleave(4)
    return torch.randn(len(labels), DIM, generator=gen, dtype=dtype), labels


def built(name: str, hp: dict[str, object]) -> torch.nn.Module:
    torch.manual_seed(0)
    loss = build_loss(name, CLASSES, DIM, **hp)
    loss.set_progress(0.5)  # margins that warm up are in force
    return loss.train()


def gradients(loss: torch.nn.Module, features: torch.Tensor) -> dict[str, torch.Tensor]:
    grads = {"features": features.grad}
    grads.update({name: p.grad for name, p in loss.named_parameters() if p.grad is not None})
    assert grads["features"] is not None
    return grads


# -- float64 --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "hp"), VARIANTS, ids=IDS)
def test_every_loss_runs_in_float64(name, hp):
    loss = built(name, hp).double()
    features, labels = batch(torch.float64)
    features.requires_grad_(True)
    out = loss(features, labels)
    assert out.loss.dtype == torch.float64 and torch.isfinite(out.loss)
    if out.logits is not None:
        assert out.logits.dtype == torch.float64
    out.loss.backward()
    for what, grad in gradients(loss, features).items():
        assert grad.dtype == torch.float64 and torch.isfinite(grad).all(), what
    scores = loss.predict(features.detach())
    assert scores is None or (scores.dtype == torch.float64 and torch.isfinite(scores).all())


# -- an all-zero feature --------------------------------------------------------------------------------------


def test_unit_is_f_normalize_above_the_floor_and_bounded_below():
    features, _ = batch(torch.float32)
    assert torch.equal(unit(features), F.normalize(features, dim=1))
    zero = torch.zeros(1, DIM, requires_grad=True)
    upstream = torch.tensor([[1.0, -2.0, 3.0]])
    (unit(zero) * upstream).sum().backward()
    assert torch.equal(unit(zero.detach()), zero.detach())
    torch.testing.assert_close(zero.grad, upstream / NORM_FLOOR)


#: A zero feature's gradient is the gradient its direction gets, times 1 / NORM_FLOOR = 1e6 (without the
#: floor 1e12: measured 1e10 to 1e13 for every loss that normalises features). The direction's gradient
#: on this 16-sample batch is below 20 for every loss at its defaults (largest: circle loss, γ = 80,
#: about 9.4 here and at most 20 over 30 seeds; CosFace s = 64 about 5), hence a bound of 100 / NORM_FLOOR.
ZERO_FEATURE_BOUND = 100 / NORM_FLOOR


@pytest.mark.parametrize(("name", "hp"), VARIANTS, ids=IDS)
def test_a_zero_feature_gets_bounded_gradients(name, hp):
    loss = built(name, hp)
    features, labels = batch(torch.float32, seed=1)
    features[5] = 0.0
    features.requires_grad_(True)
    out = loss(features, labels)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for what, grad in gradients(loss, features).items():
        assert torch.isfinite(grad).all(), what
        assert grad.abs().max() < ZERO_FEATURE_BOUND, f"{what}: {grad.abs().max():.3g}"


# -- SupCon and circle loss: a plain mean over anchors ----------------------------------------------------------


def underflow_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Classes 0 and 1: two identical unit vectors each, orthogonal to everything else, so their
    anchors' losses underflow to exactly 0 in float32. Class 2: two orthogonal vectors (loss > 0)."""
    eye = torch.eye(4)
    return eye[[0, 0, 1, 1, 2, 3]], torch.tensor([0, 0, 1, 1, 2, 2])


def logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def anchor_losses(features: torch.Tensor, labels: torch.Tensor, loss: str, **hp: float) -> list[float]:
    """Each anchor's loss from the paper's formula, in float64 with explicit loops."""
    u = [[x / math.sqrt(sum(v * v for v in row)) for x in row] for row in features.double().tolist()]
    y = labels.tolist()
    n = len(y)

    def sim(i: int, j: int) -> float:
        return sum(a * b for a, b in zip(u[i], u[j], strict=True))

    values = []
    for i in range(n):
        pos = [j for j in range(n) if j != i and y[j] == y[i]]
        neg = [j for j in range(n) if y[j] != y[i]]
        if loss == "supcon":
            tau = hp["temperature"]
            log_denominator = logsumexp([sim(i, a) / tau for a in range(n) if a != i])
            values.append(-sum(sim(i, p) / tau - log_denominator for p in pos) / len(pos))
        else:
            m, gamma = hp["m"], hp["gamma"]
            lp = logsumexp([-gamma * max(1 + m - sim(i, p), 0) * (sim(i, p) - (1 - m)) for p in pos])
            ln = logsumexp([gamma * max(sim(i, k) + m, 0) * (sim(i, k) - m) for k in neg])
            values.append(math.log1p(math.exp(lp + ln)))
    return values


@pytest.mark.parametrize(("name", "hp", "pml"), [
    ("supcon", {"temperature": 0.01}, losses.SupConLoss(0.01)),
    ("circle", {"m": 0.4, "gamma": 512.0}, losses.CircleLoss(m=0.4, gamma=512.0)),
])
def test_supcon_and_circle_average_over_every_anchor(name, hp, pml):
    features, labels = underflow_batch()
    values = anchor_losses(features, labels, name, **hp)
    # Classes 0 and 1: about 1e-43 (SupCon) and 1e-71 (circle), 0 in float32; class 2 well above 0.
    assert all(v < 1e-40 for v in values[:4]) and all(v > 1 for v in values[4:])
    got = build_loss(name, 3, 4, **hp)(features, labels).loss
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(sum(values) / len(values), rel=1e-5)
    # PML's default reducer drops the four underflowed anchors and triples the loss here.
    assert pml(features, labels).item() == pytest.approx(sum(values[4:]) / 2, rel=1e-5)
