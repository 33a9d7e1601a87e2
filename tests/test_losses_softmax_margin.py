"""Family 1 (softmax with margins): each loss against its formula, pytorch-metric-learning, and a tiny training run."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml

from dmlviz.losses import build_loss, get_spec
from dmlviz.losses.cosine import cam_exponent, cam_target, multiple_angle_target

MARGIN_LOSSES = ["normface", "lsoftmax", "sphereface", "cosface", "arcface", "elasticface-arc", "elasticface-cos",
                 "adacos", "cam-softmax", "intraloss"]
ALL = ["softmax", *MARGIN_LOSSES]
NORMALISED = [n for n in MARGIN_LOSSES if n not in ("lsoftmax", "sphereface")]  # these keep ‖f‖ in the logits


def unit(theta: float) -> list[float]:
    return [math.cos(theta), math.sin(theta)]


def at_angles(thetas: list[float], radius: float = 2.0) -> torch.Tensor:
    """2-D features at the given angles from the x axis (where class 0's weight points in these tests)."""
    return radius * torch.tensor([unit(t) for t in thetas])


def square_weights(loss: torch.nn.Module, lengths: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)) -> torch.Tensor:
    """Put 4 class weights at 0°, 90°, 180°, 270° (with the given lengths) and return them."""
    weights = torch.tensor([[lengths[i] * v for v in unit(i * math.pi / 2)] for i in range(4)])
    loss.weight.data = weights.clone()
    return weights


# -- every loss -------------------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [2, 3, 8])
@pytest.mark.parametrize("name", ALL)
def test_forward_and_backward_are_finite(name, dim):
    torch.manual_seed(0)
    loss = build_loss(name, 4, dim)
    loss.set_progress(0.5)
    features = torch.randn(16, dim, requires_grad=True)
    labels = torch.arange(16) % 4
    out = loss(features, labels)
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert out.logits.shape == (16, 4) and torch.isfinite(out.logits).all()
    out.loss.backward()
    assert torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0
    params = list(loss.parameters())
    assert params and all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)


@pytest.mark.parametrize("name", MARGIN_LOSSES)
def test_gradients_stay_finite_where_features_lie_exactly_on_or_against_a_weight(name):
    loss = build_loss(name, 4, 2)
    weights = square_weights(loss, (1.0, 1.0, 2.0, 0.5))
    loss.set_progress(0.99)
    # cos θ is exactly 1 to the own class weight, or exactly -1 (the other rows), in float32
    features = torch.tensor([[3.0, 0.0], [0.0, 2.0], [1.0, 0.0], [0.0, 4.0]], requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3])
    out = loss(features, labels)
    out.loss.backward()
    assert torch.isfinite(out.loss)
    assert torch.isfinite(features.grad).all() and torch.isfinite(loss.weight.grad).all()
    assert loss.weight.data.equal(weights)


@pytest.mark.parametrize("name", ALL)
def test_builds_with_defaults_and_every_default_lies_in_its_range(name):
    spec = get_spec(name)
    assert spec.family == "softmax-margin"
    for hp in spec.hparams:
        assert hp.check(hp.default) is None, hp.name
    loss = build_loss(name, 10, 2)
    assert set(loss.class_vectors()) == {"weights"} and loss.class_vectors()["weights"].shape == (10, 2)
    assert spec.normalized == (name in NORMALISED) and spec.learns == "weights"
    assert spec.reconstructed == (name == "intraloss")


def lsoftmax_lambda(p: float) -> float:
    return max(0.0, 1000.0 * (1 + 0.5 * p) ** -35.0)


SCHEDULES = {
    "softmax": ({}, {}),
    "normface": ({}, {}),
    "lsoftmax": ({"lambda": 1000.0}, {"lambda": lsoftmax_lambda(0.99)}),
    "sphereface": ({"lambda": 1000.0}, {"lambda": 5.0}),  # 1000 / (1 + 1000·0.99) < 5
    "cosface": ({"margin": 0.35}, {"margin": 0.35}),  # no warm-up by default (the paper's loss)
    "arcface": ({"margin": 0.5}, {"margin": 0.5}),
    "elasticface-arc": ({"margin": 0.0}, {"margin": 0.5}),  # ramped in over 30 % of the run by default
    "elasticface-cos": ({"margin": 0.35}, {"margin": 0.35}),
    "adacos": ({"scale": math.sqrt(2) * math.log(3)}, {"scale": math.sqrt(2) * math.log(3)}),
    "cam-softmax": ({"c": math.pi / 2}, {"c": math.pi / 4}),  # the schedule ends at half the run
    "intraloss": ({"margin": 0.5}, {"margin": 0.5}),
}


@pytest.mark.parametrize("name", ALL)
def test_set_progress_reports_the_documented_schedule(name):
    loss = build_loss(name, 4, 3)
    start, end = SCHEDULES[name]
    assert loss.set_progress(0.0) == pytest.approx(start, rel=1e-6)
    assert loss.set_progress(0.99) == pytest.approx(end, rel=1e-6)
    assert loss.set_progress(0.0) == pytest.approx(start, rel=1e-6), "schedules depend only on progress"


@pytest.mark.parametrize("name", ["cosface", "arcface", "elasticface-arc", "elasticface-cos", "intraloss"])
def test_margin_warmup_ramps_linearly_from_zero(name):
    margin = get_spec(name).hparam("margin").default
    loss = build_loss(name, 4, 3, warmup=0.4)
    assert loss.set_progress(0.0) == {"margin": 0.0}
    assert loss.set_progress(0.1)["margin"] == pytest.approx(margin * 0.1 / 0.4)
    assert loss.set_progress(0.3)["margin"] == pytest.approx(margin * 0.3 / 0.4)
    assert loss.set_progress(0.4)["margin"] == pytest.approx(margin)
    assert loss.set_progress(0.9)["margin"] == pytest.approx(margin)


@pytest.mark.parametrize("name", NORMALISED)
def test_predict_and_forward_logits_are_the_plain_scaled_cosines(name):
    torch.manual_seed(1)
    loss = build_loss(name, 4, 3)
    features, labels = torch.randn(8, 3), torch.arange(8) % 4
    cos = F.normalize(features, dim=1) @ F.normalize(loss.weight, dim=1).T
    scale = float(loss.scale)
    torch.testing.assert_close(loss.predict(features), scale * cos)
    loss.eval()
    torch.testing.assert_close(loss(features, labels).logits, scale * cos)


def blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """4 well-separated Gaussian blobs in 8-D, 32 points each."""
    g = torch.Generator().manual_seed(seed)
    means = 4 * torch.randn(4, 8, generator=g)
    labels = torch.arange(128) % 4
    return means[labels] + torch.randn(128, 8, generator=g), labels



@pytest.mark.parametrize("name", ALL)
def test_loss_falls_on_a_separable_toy_problem_with_its_3d_preset(name, one_thread):
    torch.manual_seed(0)
    x, labels = blobs()
    net = torch.nn.Linear(8, 3)
    preset = get_spec(name).recommended[3].get("loss_params", {})
    loss = build_loss(name, 4, 3, **preset)
    optimizer = torch.optim.Adam([*net.parameters(), *loss.parameters()], lr=0.05)
    steps = 60

    def evaluate() -> tuple[float, float]:
        """Loss and accuracy at the end of every schedule, so that before and after compare alike."""
        loss.set_progress((steps - 1) / steps)
        loss.eval()
        with torch.no_grad():
            features = net(x)
            out = loss(features, labels)
            accuracy = (loss.predict(features).argmax(1) == labels).float().mean().item()
        loss.train()
        return out.loss.item(), accuracy

    before, _ = evaluate()
    for step in range(steps):
        loss.set_progress(step / steps)
        optimizer.zero_grad()
        loss(net(x), labels).loss.backward()
        optimizer.step()
    after, accuracy = evaluate()
    assert after < 0.6 * before, (before, after)
    assert accuracy > 0.95


# -- against pytorch-metric-learning ----------------------------------------------------------------

def random_batch(n: int = 16, dim: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=g), torch.arange(n) % 4


def assert_same_loss_and_gradient(ours, theirs, features, labels):
    theirs.W.data = ours.weight.detach().T.clone()
    ours.zero_grad()
    f1, f2 = features.clone().requires_grad_(True), features.clone().requires_grad_(True)
    a, b = ours(f1, labels).loss, theirs(f2, labels)
    a.backward()
    b.backward()
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(f1.grad, f2.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(ours.weight.grad, theirs.W.grad.T, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("scale", [20.0, 5.0])
def test_normface_equals_pml_normalized_softmax_with_temperature_one_over_scale(scale):
    torch.manual_seed(0)
    ours = build_loss("normface", 4, 3, scale=scale)
    theirs = pml.NormalizedSoftmaxLoss(4, 3, temperature=1 / scale)
    assert pml.NormalizedSoftmaxLoss(4, 3).temperature == 0.05 and get_spec("normface").defaults()["scale"] == 20
    assert_same_loss_and_gradient(ours, theirs, *random_batch())


def test_cosface_equals_pml_cosface():
    torch.manual_seed(0)
    ours = build_loss("cosface", 4, 3, scale=30.0, margin=0.4)
    assert_same_loss_and_gradient(ours, pml.CosFaceLoss(4, 3, margin=0.4, scale=30.0), *random_batch())


def test_arcface_equals_pml_arcface_with_its_margin_in_degrees_on_both_sides_of_the_fallback():
    torch.manual_seed(0)
    ours = build_loss("arcface", 4, 2, scale=16.0, margin=0.5)
    square_weights(ours)
    # angles to class 0's weight on both sides of π - m = 2.64 (PML switches on the angle, as we do on cos)
    features = at_angles([0.2, 1.0, 2.0, 2.5, 2.8, 3.0, -2.9, -1.5])
    labels = torch.zeros(8, dtype=torch.long)
    assert_same_loss_and_gradient(ours, pml.ArcFaceLoss(4, 2, margin=math.degrees(0.5), scale=16.0),
                                  features, labels)
    assert_same_loss_and_gradient(ours, pml.ArcFaceLoss(4, 2, margin=math.degrees(0.5), scale=16.0),
                                  *random_batch(dim=2))


@pytest.mark.parametrize("margin", [1, 2, 3, 4])
@pytest.mark.parametrize(("name", "cls"), [("lsoftmax", pml.LargeMarginSoftmaxLoss),
                                           ("sphereface", pml.SphereFaceLoss)])
def test_multiple_angle_heads_without_lambda_equal_pml(name, cls, margin):
    torch.manual_seed(0)
    ours = build_loss(name, 4, 3, margin=margin, lambda_base=0.0, lambda_min=0.0)
    assert ours.set_progress(0.0) == {"lambda": 0.0}
    assert_same_loss_and_gradient(ours, cls(4, 3, margin=margin, scale=1), *random_batch(seed=margin))


# -- CosFace and ArcFace ----------------------------------------------------------------------------

def test_cosface_lowers_only_the_target_logit_and_by_exactly_s_times_m():
    torch.manual_seed(0)
    loss = build_loss("cosface", 4, 3, scale=30.0, margin=0.2)
    features, labels = random_batch()
    cos = loss.cosine(features)
    shift = loss.margin_logits(cos, labels) - 30.0 * cos
    target = F.one_hot(labels, 4).bool()
    torch.testing.assert_close(shift[target], torch.full((16,), -30.0 * 0.2), rtol=0, atol=1e-5)
    assert (shift[~target] == 0).all()
    expected = F.cross_entropy(30.0 * cos - 30.0 * 0.2 * target, labels)
    torch.testing.assert_close(loss(features, labels).loss, expected)


@pytest.mark.parametrize("easy_margin", [False, True])
def test_arcface_with_zero_margin_is_normface_at_the_same_scale(easy_margin):
    torch.manual_seed(0)
    arc = build_loss("arcface", 4, 3, scale=12.0, margin=0.0, easy_margin=easy_margin)
    norm = build_loss("normface", 4, 3, scale=12.0)
    norm.weight.data = arc.weight.data.clone()
    features, labels = random_batch()
    a, b = arc(features, labels), norm(features, labels)
    torch.testing.assert_close(a.loss, b.loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(a.logits, b.logits)


def arc_target(loss, thetas: list[float]) -> torch.Tensor:
    """The unscaled target entry of ArcFace's margin logits for features at ``thetas`` from class 0."""
    cos = loss.cosine(at_angles(thetas))
    return loss.margin_logits(cos, torch.zeros(len(thetas), dtype=torch.long))[:, 0] / float(loss.scale)


def test_arcface_uses_cos_theta_plus_m_below_pi_and_the_fallback_exactly_above():
    m = 0.5
    loss = build_loss("arcface", 4, 2, scale=10.0, margin=m)
    square_weights(loss)
    below = [0.05, 0.3, 1.2, 2.0, 2.6]  # θ + m < π (π − m = 2.6416)
    above = [2.7, 2.9, 3.1, math.pi]
    torch.testing.assert_close(arc_target(loss, below), torch.tensor([math.cos(t + m) for t in below]),
                               rtol=0, atol=1e-5)
    mm = math.sin(math.pi - m) * m  # insightface's mm = m·sin m = 0.2397
    torch.testing.assert_close(arc_target(loss, above), torch.tensor([math.cos(t) - mm for t in above]),
                               rtol=0, atol=1e-5)
    assert mm == pytest.approx(0.2397, abs=1e-4)
    # cos(θ + m) itself would rise again past π: the fallback keeps the target falling with θ
    assert math.cos(3.1 + m) > math.cos(2.7 + m)
    values = arc_target(loss, [*below, *above])
    assert (values[1:] < values[:-1]).all()


def test_arcface_easy_margin_applies_the_margin_only_where_cos_theta_is_positive():
    m = 0.5
    loss = build_loss("arcface", 4, 2, scale=10.0, margin=m, easy_margin=True)
    square_weights(loss)
    thetas = [0.2, 1.0, 1.5, 1.7, 2.5, 3.0]
    expected = [math.cos(t + m) if math.cos(t) > 0 else math.cos(t) for t in thetas]
    torch.testing.assert_close(arc_target(loss, thetas), torch.tensor(expected), rtol=0, atol=1e-5)


def test_arcface_warmup_scales_the_margin_in_the_logits():
    loss = build_loss("arcface", 4, 2, scale=10.0, margin=0.4, warmup=0.5)
    square_weights(loss)
    loss.set_progress(0.25)
    torch.testing.assert_close(arc_target(loss, [1.0]), torch.tensor([math.cos(1.0 + 0.2)]), rtol=0, atol=1e-6)


# -- L-Softmax and SphereFace -----------------------------------------------------------------------

@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_multiple_angle_psi_matches_its_piecewise_definition_and_decreases(m):
    thetas = np.linspace(0.0, math.pi - 1e-3, 400)
    k = np.floor(m * thetas / math.pi)
    expected = (-1) ** k * np.cos(m * thetas) - 2 * k
    psi = multiple_angle_target(torch.tensor(np.cos(thetas), dtype=torch.float64), m).numpy()
    np.testing.assert_allclose(psi, expected, atol=1e-9)
    assert (np.diff(psi) < 0).all()
    assert psi[0] == pytest.approx(1.0)
    assert psi[-1] == pytest.approx(1 - 2 * m, abs=1e-4)  # ψ(π) = 1 − 2m


@pytest.mark.parametrize("name", ["lsoftmax", "sphereface"])
def test_lambda_mixes_the_plain_and_the_margin_target_logit(name):
    loss = build_loss(name, 4, 2, margin=3, lambda_base=8.0, lambda_gamma=3.0, lambda_power=1.0, lambda_min=0.5)
    assert loss.set_progress(0.5) == pytest.approx({"lambda": 8.0 / 2.5})
    assert loss.set_progress(0.99) == pytest.approx({"lambda": max(0.5, 8.0 / (1 + 3 * 0.99))})
    loss.set_progress(0.5)
    lengths = (2.0, 1.0, 0.5, 3.0)
    square_weights(loss, lengths)
    thetas, radius = [0.4, 1.3, 2.2], 2.5
    features, labels = at_angles(thetas, radius), torch.zeros(3, dtype=torch.long)
    w0 = 1.0 if name == "sphereface" else lengths[0]
    lam = 8.0 / 2.5
    targets = []
    for t in thetas:
        k = math.floor(3 * t / math.pi)
        psi = (-1) ** k * math.cos(3 * t) - 2 * k
        targets.append((lam * radius * w0 * math.cos(t) + radius * w0 * psi) / (1 + lam))
    plain = loss.predict(features)
    weights = F.normalize(loss.weight, dim=1) if name == "sphereface" else loss.weight
    torch.testing.assert_close(plain, features @ weights.T)
    margin_logits = plain.detach().clone()
    margin_logits[:, 0] = torch.tensor(targets)
    out = loss(features, labels)
    torch.testing.assert_close(out.loss, F.cross_entropy(margin_logits, labels))
    torch.testing.assert_close(out.logits, plain)


def test_sphereface_ignores_weight_lengths_and_lsoftmax_does_not():
    features, labels = random_batch(dim=2)
    losses = {}
    for name in ("sphereface", "lsoftmax"):
        loss = build_loss(name, 4, 2)
        loss.set_progress(0.99)
        square_weights(loss)
        short = loss(features, labels).loss
        square_weights(loss, (3.0, 3.0, 3.0, 3.0))
        losses[name] = (short, loss(features, labels).loss)
    torch.testing.assert_close(*losses["sphereface"])
    assert not torch.allclose(*losses["lsoftmax"])


# -- ElasticFace ------------------------------------------------------------------------------------

def elastic_margins(loss, n: int) -> torch.Tensor:
    """The margins one forward pass used, read back from the target logits (features at 0.3 rad)."""
    square_weights(loss)
    cos = loss.cosine(at_angles([0.3] * n))
    target = loss.margin_logits(cos, torch.zeros(n, dtype=torch.long))[:, 0] / float(loss.scale)
    if loss.angular:
        return torch.acos(target) - 0.3
    return math.cos(0.3) - target


@pytest.mark.parametrize(("name", "mean"), [("elasticface-arc", 0.5), ("elasticface-cos", 0.35)])
def test_elasticface_draws_a_fresh_normal_margin_per_sample_in_training_and_uses_the_mean_in_eval(name, mean):
    torch.manual_seed(0)
    loss = build_loss(name, 4, 2, std=0.05, warmup=0.0)  # the full margin (ElasticFace-Arc ramps it in by default)
    first, second = elastic_margins(loss, 4000), elastic_margins(loss, 4000)
    assert first.mean().item() == pytest.approx(mean, abs=0.005)
    assert first.std().item() == pytest.approx(0.05, rel=0.1)
    assert not torch.allclose(first, second)
    loss.eval()
    torch.testing.assert_close(elastic_margins(loss, 5), torch.full((5,), mean), rtol=0, atol=1e-5)


def test_elasticface_is_reproducible_from_the_global_seed_and_leaves_the_global_rng_alone():
    def draws(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        loss = build_loss("elasticface-cos", 4, 2)
        state = torch.get_rng_state()
        margins = elastic_margins(loss, 50)
        assert torch.equal(torch.get_rng_state(), state)
        return margins

    torch.testing.assert_close(draws(3), draws(3), rtol=0, atol=0)
    assert not torch.allclose(draws(3), draws(4))


def test_elasticface_warmup_scales_the_drawn_margins():
    torch.manual_seed(0)
    loss = build_loss("elasticface-cos", 4, 2, std=0.05, warmup=0.5)
    assert loss.set_progress(0.25) == {"margin": pytest.approx(0.175)}
    margins = elastic_margins(loss, 4000)
    assert margins.mean().item() == pytest.approx(0.175, abs=0.003)
    assert margins.std().item() == pytest.approx(0.025, rel=0.1)


@pytest.mark.parametrize(("name", "base"), [("elasticface-arc", "arcface"), ("elasticface-cos", "cosface")])
def test_elasticface_with_zero_std_is_its_fixed_margin_loss(name, base):
    torch.manual_seed(0)
    elastic = build_loss(name, 4, 3, std=0.0, warmup=0.0)
    fixed = build_loss(base, 4, 3)
    fixed.weight.data = elastic.weight.data.clone()
    features, labels = random_batch()
    features = features + 4 * F.normalize(elastic.weight.detach(), dim=1)[labels]  # near their weights
    assert (torch.acos(elastic.cosine(features).gather(1, labels[:, None])) < math.pi - 0.5).all()
    torch.testing.assert_close(elastic(features, labels).loss, fixed(features, labels).loss)


# -- AdaCos -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("classes", [3, 4, 10, 100])
def test_adacos_fixed_scale_is_sqrt2_log_c_minus_1(classes):
    loss = build_loss("adacos", classes, 2, dynamic=False)
    assert float(loss.scale) == pytest.approx(math.sqrt(2) * math.log(classes - 1), rel=1e-7)
    features, labels = torch.randn(16, 2), torch.arange(16) % classes
    loss(features, labels)
    assert float(loss.scale) == pytest.approx(math.sqrt(2) * math.log(classes - 1), rel=1e-7)


def test_adacos_refuses_two_classes():
    with pytest.raises(ValueError, match="at least 3 classes"):
        build_loss("adacos", 2, 2)


def test_adacos_dynamic_scale_follows_the_papers_update_before_the_logits():
    torch.manual_seed(0)
    loss = build_loss("adacos", 4, 3, dynamic=True)
    features, labels = random_batch(n=15)
    cos = loss.cosine(features).detach().double().numpy()
    s0 = math.sqrt(2) * math.log(3)
    target = np.eye(4, dtype=bool)[labels.numpy()]
    b_avg = np.exp(s0 * cos)[~target].sum() / 15
    theta_med = np.median(np.arccos(cos[target]))  # 15 samples: the median is unambiguous
    s1 = math.log(b_avg) / math.cos(min(math.pi / 4, theta_med))
    out = loss(features, labels)
    assert float(loss.scale) == pytest.approx(s1, rel=1e-5)
    assert loss.set_progress(0.5) == pytest.approx({"scale": s1}, rel=1e-5)
    torch.testing.assert_close(out.loss, F.cross_entropy(s1 * torch.tensor(cos, dtype=torch.float32), labels))
    loss.eval()
    loss(features, labels)
    assert float(loss.scale) == pytest.approx(s1, rel=1e-5), "no update outside training"


def test_adacos_dynamic_update_stays_exact_where_exp_of_the_logits_overflows_float32():
    loss = build_loss("adacos", 4, 2, dynamic=True)
    square_weights(loss)
    loss.scale.fill_(200.0)  # e^(200·cos) overflows float32 for cos > 0.45
    features, labels = at_angles([0.3, 0.5, 1.2, 2.0]), torch.tensor([1, 1, 1, 0])
    cos = loss.cosine(features).detach().double().numpy()
    target = np.eye(4, dtype=bool)[labels.numpy()]
    log_b_avg = np.log(np.exp(200.0 * cos)[~target].sum() / 4)  # float64 holds e^200
    theta_med = torch.tensor(np.arccos(cos[target])).median().item()  # torch's lower median, as in the loss
    loss(features, labels)
    assert float(loss.scale) == pytest.approx(log_b_avg / math.cos(min(math.pi / 4, theta_med)), rel=1e-5)


# -- Cam-Softmax ------------------------------------------------------------------------------------

@pytest.mark.parametrize("c", [math.pi / 2, math.pi / 3, math.pi / 4, 0.5])
def test_cam_psi_fixes_plus_minus_one_and_sends_cos_c_to_zero(c):
    x = torch.tensor([1.0, -1.0, math.cos(c)], dtype=torch.float64)
    torch.testing.assert_close(cam_target(x, c), torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64))
    grid = torch.linspace(-1, 1, 201, dtype=torch.float64)
    psi = cam_target(grid, c)
    assert (psi[1:] >= psi[:-1]).all() and (psi <= grid + 1e-12).all()  # flat only where it underflows to -1
    assert (psi[1:] > psi[:-1])[grid[1:] > math.cos(c) - 0.5].all()


def test_cam_exponent_matches_the_reference_values():
    assert cam_exponent(math.pi / 2) == 1.0
    assert cam_exponent(math.pi / 3) == pytest.approx(2.41, abs=0.01)
    assert cam_exponent(math.pi / 4) == pytest.approx(4.38, abs=0.01)


def test_cam_softmax_at_c_pi_over_2_is_normface_at_scale_20():
    torch.manual_seed(0)
    cam = build_loss("cam-softmax", 4, 3)
    assert cam.set_progress(0.0) == {"c": math.pi / 2} and float(cam.scale) == 20.0
    norm = build_loss("normface", 4, 3, scale=20.0)
    norm.weight.data = cam.weight.data.clone()
    features, labels = random_batch()
    torch.testing.assert_close(cam(features, labels).loss, norm(features, labels).loss, rtol=1e-6, atol=1e-6)


def test_cam_softmax_c_follows_a_linear_schedule_over_its_length():
    loss = build_loss("cam-softmax", 4, 3, c_start=1.5, c_end=0.9, c_length=0.4)
    assert loss.set_progress(0.0)["c"] == pytest.approx(1.5)
    assert loss.set_progress(0.1)["c"] == pytest.approx(1.35)
    assert loss.set_progress(0.4)["c"] == pytest.approx(0.9)
    assert loss.set_progress(0.8)["c"] == pytest.approx(0.9)
    loss.set_progress(0.2)
    square_weights(loss)
    cos = loss.cosine(at_angles([1.2]))
    target = loss.margin_logits(cos, torch.zeros(1, dtype=torch.long))[0, 0] / 20.0
    assert target.item() == pytest.approx(0.0, abs=1e-6), "the target logit is 0 at θ = c = 1.2"


# -- IntraLoss --------------------------------------------------------------------------------------

@pytest.mark.parametrize("base", ["arcface", "cosface"])
def test_intraloss_on_a_hand_built_batch(base):
    loss = build_loss("intraloss", 4, 2, base=base, scale=10.0, margin=0.3, gamma=2.0, **{"lambda": 0.5})
    square_weights(loss)
    # class 0 at 0.1, 0.2, 0.6 rad from its weight (mean 0.3); class 1 at 0.4 rad, alone in the batch
    thetas = [0.1, 0.2, -0.6, math.pi / 2 + 0.4]
    labels = torch.tensor([0, 0, 0, 1])
    features = at_angles(thetas).requires_grad_(True)
    out = loss(features, labels)

    angles = torch.tensor([0.1, 0.2, 0.6, 0.4])
    weights = torch.tensor([(0.1 / 0.3) ** 2, (0.2 / 0.3) ** 2, (0.6 / 0.3) ** 2, 1.0])
    target = torch.cos(angles + 0.3) if base == "arcface" else torch.cos(angles) - 0.3
    cos = torch.tensor([[math.cos(t - j * math.pi / 2) for j in range(4)] for t in thetas])
    margin = cos.clone()
    margin[torch.arange(4), labels] = target
    expected = F.cross_entropy(10.0 * margin, labels) + 0.5 * (weights * angles).mean()
    torch.testing.assert_close(out.loss, expected, rtol=1e-5, atol=1e-6)

    # the weights carry no gradient: the term's derivative in a sample's own angle θ_i is λ·w_i/N
    term = out.loss - F.cross_entropy(loss.margin_logits(loss.cosine(features), labels), labels)
    (grad,) = torch.autograd.grad(term, features)
    dtheta_dt = [1.0, 1.0, -1.0, 1.0]  # θ_i against the polar angle t_i of the feature
    for i, t in enumerate(thetas):
        d_dt = 2.0 * (grad[i] @ torch.tensor(unit(t + math.pi / 2))).item()  # df/dt = radius · tangent
        assert d_dt * dtheta_dt[i] == pytest.approx(0.5 * weights[i].item() / 4, rel=1e-3)
