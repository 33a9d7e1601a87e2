"""Center-based losses (center, ie, contrastive-center, ring) and the wider circle (fixed-simplex,
angular-sparsemax, class-adversarial): hand-computed values, the center rules, and short trainings."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from dmlviz.config import RunConfig
from dmlviz.losses import build_loss, get_spec
from dmlviz.losses.catalog import preset
from dmlviz.losses.wider import (
    arc_margin,
    reverse_gradient,
    simplex_vertices,
    sparsemax,
    sparsemax_loss,
)

NAMES = ["center", "ie", "contrastive-center", "ring", "fixed-simplex", "angular-sparsemax", "class-adversarial"]


def zero_classifier(loss: torch.nn.Module) -> None:
    """Make the softmax head output zeros, so its cross-entropy is exactly log C with no gradient on f."""
    with torch.no_grad():
        loss.classifier.weight.zero_()
        loss.classifier.bias.zero_()


# -- every loss -----------------------------------------------------------------------------------


def _classes(name: str, dim: int) -> int:
    return 3 if name == "fixed-simplex" and dim == 2 else 4


@pytest.mark.parametrize("dim", [2, 3, 8])
@pytest.mark.parametrize("name", NAMES + ["center:sgd", "ie:sgd", "ie:scale_free", "contrastive-center:sgd"])
def test_forward_and_backward_are_finite(name, dim):
    name, _, variant = name.partition(":")
    hp = {"center_rule": "sgd"} if variant == "sgd" else {"scale_free": True} if variant else {}
    torch.manual_seed(0)
    num_classes = _classes(name, dim)
    loss = build_loss(name, num_classes, dim, **hp)
    loss.set_progress(0.5)
    features = torch.randn(16, dim, requires_grad=True)
    labels = torch.randint(0, num_classes, (16,))
    out = loss(features, labels)
    out.loss.backward()
    assert out.loss.ndim == 0 and torch.isfinite(out.loss)
    assert torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0
    params = [p for p in loss.parameters() if p.requires_grad]
    assert bool(params) == (name != "fixed-simplex"), "all but the fixed simplex learn something"
    for p in params:
        assert p.grad is not None and torch.isfinite(p.grad).all()
    if out.logits is not None:
        assert out.logits.shape == (16, num_classes)
    for key, vectors in loss.class_vectors().items():
        assert key in {"weights", "centers", "vertices"} and vectors.shape == (num_classes, dim)


@pytest.mark.parametrize("name", NAMES)
def test_spec_defaults_build_and_lie_in_range(name):
    spec = get_spec(name)
    for hp in spec.hparams:
        assert hp.check(hp.default) is None, hp.name
    assert build_loss(name, 4, 3).num_classes == 4
    for dim in (2, 3):
        assert RunConfig.from_dict(preset(spec, dim)).feature_dim == dim
    # Only the IE loss is reconstructed from an abstract in this set.
    assert spec.reconstructed == (name == "ie")



@pytest.mark.parametrize("name", NAMES)
def test_loss_falls_on_separable_blobs(name, one_thread):
    """Four Gaussian blobs in 8-D through a trainable linear map to 3-D features, 60 Adam steps."""
    gen = torch.Generator().manual_seed(0)
    means = 3 * torch.randn(4, 8, generator=gen)
    labels = torch.arange(4).repeat(8)
    inputs = means[labels] + torch.randn(32, 8, generator=gen)
    torch.manual_seed(0)
    net = torch.nn.Linear(8, 3)
    loss = build_loss(name, 4, 3)
    optimizer = torch.optim.Adam([*net.parameters(), *loss.parameters()], lr=0.05)
    values = []
    for step in range(60):
        loss.set_progress(step / 60)
        out = loss(net(inputs), labels)
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
        values.append(out.loss.item())
    assert sum(values[-5:]) / 5 < 0.5 * sum(values[:5]) / 5, values
    with torch.no_grad():
        scores = loss.predict(net(inputs))
    assert (scores.argmax(1) == labels).float().mean() >= 0.9


# -- center loss ----------------------------------------------------------------------------------

# Three samples, two classes, d = 2: class 0 has two samples, class 1 one.
F3 = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 1.0]])
Y3 = torch.tensor([0, 0, 1])
C3 = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
# (1/2N) sum ||f_i - c_yi||^2 = (1 + 4 + 2) / 6
CENTER_TERM = 7 / 6


def _center_loss(rule: str, lam: float) -> torch.nn.Module:
    loss = build_loss("center", 2, 2, **{"lambda": lam, "alpha": 0.5, "center_rule": rule})
    zero_classifier(loss)
    with torch.no_grad():
        loss.centers.copy_(C3)
    return loss


def test_center_loss_value_and_the_papers_center_update():
    loss = _center_loss("paper", 0.5)
    features = F3.clone().requires_grad_()
    out = loss(features, Y3)
    assert out.loss.item() == pytest.approx(math.log(2) + 0.5 * CENTER_TERM)
    out.loss.backward()
    # d/df_i = lambda (f_i - c_yi) / N with the centers from BEFORE the update; softmax adds 0 here.
    expected = 0.5 * (F3 - C3[Y3]) / 3
    torch.testing.assert_close(features.grad, expected)
    # c_0 -= 0.5 * ((c0 - f0) + (c0 - f1)) / (1 + 2);  c_1 -= 0.5 * (c1 - f2) / (1 + 1)
    torch.testing.assert_close(loss.centers, torch.tensor([[1 / 6, 1 / 3], [2.25, 0.25]]))
    assert not loss.centers.requires_grad


def test_center_loss_leaves_centers_alone_in_eval_mode():
    loss = _center_loss("paper", 0.5).eval()
    loss(F3, Y3)
    torch.testing.assert_close(loss.centers, C3)


@pytest.mark.parametrize("lam", [0.5, 5.0])
def test_center_loss_sgd_rule_moves_centers_at_the_loss_lr_whatever_lambda(lam):
    loss = _center_loss("sgd", lam)
    features = F3.clone().requires_grad_()
    out = loss(features, Y3)
    # The value is the paper's: the centers' own term adds nothing to it.
    assert out.loss.item() == pytest.approx(math.log(2) + lam * CENTER_TERM)
    out.loss.backward()
    torch.testing.assert_close(features.grad, lam * (F3 - C3[Y3]) / 3)
    # d/dc_j of (1/2N) sum ||f_i - c_j||^2 = sum_{i: y_i = j} (c_j - f_i) / N, without lambda.
    torch.testing.assert_close(loss.centers.grad, torch.tensor([[-1 / 3, -2 / 3], [-1 / 3, -1 / 3]]))
    torch.optim.SGD([loss.centers], lr=0.3).step()
    torch.testing.assert_close(loss.centers.detach(), C3 - 0.3 * torch.tensor([[-1 / 3, -2 / 3], [-1 / 3, -1 / 3]]))


# -- IE and contrastive-center --------------------------------------------------------------------

# Three classes in 2-D; f0 = (1, 0) of class 0, f1 = (0, 3) of class 2.
CENTERS = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
FEATURES = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
LABELS = torch.tensor([0, 2])
# Squared distances: f0 -> (1, 1, 5), f1 -> (9, 13, 1).


def _with_centers(name: str, **hp: object) -> torch.nn.Module:
    loss = build_loss(name, 3, 2, **hp)
    zero_classifier(loss)
    with torch.no_grad():
        loss.centers.copy_(CENTERS)
    return loss


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_ie_loss_by_hand():
    loss = _with_centers("ie", **{"lambda": 0.1, "margin": 1.0, "scale_free": False})  # raw squared distances
    # f0: m + 1 - (1 + 5)/2 = -1;  f1: m + 1 - (9 + 13)/2 = -9
    ie = (softplus(-1.0) + softplus(-9.0)) / 2
    assert loss(FEATURES, LABELS).loss.item() == pytest.approx(math.log(3) + 0.1 * ie)


def test_ie_loss_scale_free_divides_by_the_running_mean_distance():
    loss = _with_centers("ie", **{"lambda": 0.1, "margin": 1.0, "scale_free": True, "alpha": 0.0})
    # First batch: the mean of the six squared distances is 30 / 6 = 5.
    # f0: 1 + 1/5 - (1/5 + 5/5)/2 = 0.6;  f1: 1 + 1/5 - (9/5 + 13/5)/2 = -1
    ie = (softplus(0.6) + softplus(-1.0)) / 2
    assert loss(FEATURES, LABELS).loss.item() == pytest.approx(math.log(3) + 0.1 * ie)
    assert loss.mean_distance.item() == pytest.approx(5.0)
    # A second batch of twice the distances: the running mean moves a tenth of the way (alpha 0 keeps centers).
    loss(FEATURES * 2 ** 0.5, LABELS)
    batch = ((FEATURES * 2 ** 0.5).unsqueeze(1) - CENTERS).pow(2).sum(-1).mean().item()
    assert loss.mean_distance.item() == pytest.approx(0.9 * 5 + 0.1 * batch)


def test_ie_loss_paper_rule_moves_only_own_centers_towards_the_batch():
    loss = _with_centers("ie", alpha=0.5)
    loss(FEATURES, LABELS)
    # c0 -= 0.5 (c0 - f0) / 2;  c2 -= 0.5 (c2 - f1) / 2;  c1 has no sample and stays.
    torch.testing.assert_close(loss.centers, torch.tensor([[0.25, 0.0], [2.0, 0.0], [0.0, 2.25]]))


def test_contrastive_center_loss_by_hand():
    loss = _with_centers("contrastive-center", **{"lambda": 2.0, "delta": 1.0})
    # f0: 1 / (1 + 5 + 1);  f1: 1 / (9 + 13 + 1); averaged and halved.
    term = 0.5 * (1 / 7 + 1 / 23) / 2
    assert loss(FEATURES, LABELS).loss.item() == pytest.approx(math.log(3) + 2.0 * term)


def test_contrastive_center_sgd_rule_gives_centers_the_ratios_gradient():
    loss = _with_centers("contrastive-center", **{"lambda": 3.0, "center_rule": "sgd"})
    loss(FEATURES, LABELS).loss.backward()
    centers = CENTERS.clone().requires_grad_()
    dist = (FEATURES.unsqueeze(1) - centers).pow(2).sum(-1)
    own = dist[[0, 1], [0, 2]]
    (0.5 * (own / (dist.sum(1) - own + 1.0)).mean()).backward()
    torch.testing.assert_close(loss.centers.grad, centers.grad)


# -- ring loss ------------------------------------------------------------------------------------


def test_ring_loss_radius_starts_at_the_first_batch_mean_norm_and_is_learned():
    loss = build_loss("ring", 4, 2, **{"lambda": 0.2})
    zero_classifier(loss.base)
    assert loss.set_progress(0.0) == {}, "no radius before the first batch"
    features = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    first = loss(features, torch.tensor([0, 1]))
    assert loss.radius.item() == pytest.approx(3.0)
    # (lambda/2) mean((5 - 3)^2, (1 - 3)^2) = 0.1 * 4
    assert first.loss.item() == pytest.approx(math.log(4) + 0.2 * 2.0)
    assert loss.set_progress(0.99) == {"radius": pytest.approx(3.0)}
    with torch.no_grad():
        loss.radius.fill_(2.0)
    features.requires_grad_()
    out = loss(features, torch.tensor([0, 1]))
    assert out.loss.item() == pytest.approx(math.log(4) + 0.1 * (9 + 1) / 2)
    out.loss.backward()
    # dL/dR = -lambda mean(|f| - R);  dL/df_i = lambda (|f_i| - R) f_i/|f_i| / N
    assert loss.radius.grad.item() == pytest.approx(-0.2 * (3 - 1) / 2)
    torch.testing.assert_close(features.grad, torch.tensor([[0.3 * 0.6, 0.3 * 0.8], [0.0, -0.1]]))


def test_ring_loss_delegates_to_its_base():
    loss = build_loss("ring", 4, 3)
    assert loss.class_vectors()["weights"] is loss.base.classifier.weight
    features = torch.randn(5, 3)
    torch.testing.assert_close(loss.predict(features), loss.base.predict(features))
    assert "softmax" in get_spec("ring").hparam("base").choices


# -- fixed simplex --------------------------------------------------------------------------------


@pytest.mark.parametrize(("num_classes", "dim"), [(2, 1), (3, 2), (4, 3), (10, 9), (5, 12)])
def test_simplex_vertices_are_unit_and_equiangular(num_classes, dim):
    v = simplex_vertices(num_classes, dim).double()
    assert v.shape == (num_classes, dim)
    torch.testing.assert_close(v.norm(dim=1), torch.ones(num_classes, dtype=torch.double))
    cos = v @ v.T
    off = cos[~torch.eye(num_classes, dtype=torch.bool)]
    torch.testing.assert_close(off, torch.full_like(off, -1 / (num_classes - 1)), atol=1e-6, rtol=0)
    torch.testing.assert_close(v.sum(0), torch.zeros(dim, dtype=torch.double), atol=1e-6, rtol=0)


def test_fixed_simplex_too_few_dims_says_what_to_do():
    with pytest.raises(ValueError) as err:
        build_loss("fixed-simplex", 10, 2)
    assert str(err.value) == ("the fixed simplex needs feature_dim ≥ C − 1 = 9 for 10 classes, got 2: train on at "
                              "most 3 classes (classes=0,1,2) or use feature_dim ≥ 9")


def test_fixed_simplex_vertices_are_a_buffer_and_the_loss_is_arcface_scaled_by_the_norm():
    loss = build_loss("fixed-simplex", 3, 2, margin=0.4)
    assert "vertices" in dict(loss.named_buffers()) and not list(loss.parameters())
    assert loss.set_progress(0.5) == {}
    features = torch.tensor([[2.0, 0.5], [-1.0, -1.0], [0.1, -3.0]])
    labels = torch.tensor([0, 1, 2])
    vertices = simplex_vertices(3, 2)
    norms = features.norm(dim=1, keepdim=True)
    theta = torch.acos((features / norms @ vertices.T).clamp(-1, 1))
    target = theta.gather(1, labels[:, None]).squeeze(1)
    assert (target + 0.4 < math.pi).all(), "no fallback in this case"
    logits = norms * torch.cos(theta)
    logits[torch.arange(3), labels] = norms.squeeze(1) * torch.cos(target + 0.4)
    out = loss(features, labels)
    assert out.loss.item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-5)
    torch.testing.assert_close(out.logits, features @ vertices.T)
    torch.testing.assert_close(loss.predict(features), norms * torch.cos(theta))


def test_angular_sparsemax_margin_warms_up_linearly():
    name = "angular-sparsemax"
    loss = build_loss(name, 4, 3, margin=0.4, warmup=0.3)
    assert loss.margin == 0.0
    assert loss.set_progress(0.0) == {"margin": 0.0}
    assert loss.set_progress(0.15) == {"margin": pytest.approx(0.2)}
    assert loss.set_progress(0.99) == {"margin": pytest.approx(0.4)}
    assert build_loss(name, 4, 3, margin=0.4, warmup=0.0).set_progress(0.0) == {"margin": pytest.approx(0.4)}


def test_arc_margin_adds_the_angle_and_falls_back_past_pi():
    m = 0.5
    cos = torch.tensor([[0.9, 0.2], [-0.95, 0.1], [0.3, -0.99]])
    labels = torch.tensor([0, 0, 1])
    out = arc_margin(cos, labels, m)
    # Row 0: theta = acos 0.9, theta + m < pi. Row 1: theta = acos(-0.95) = 2.82 > pi - m: linear fallback.
    assert out[0, 0].item() == pytest.approx(math.cos(math.acos(0.9) + m), rel=1e-5)
    assert out[1, 0].item() == pytest.approx(-0.95 - m * math.sin(m), rel=1e-5)
    assert out[2, 1].item() == pytest.approx(-0.99 - m * math.sin(m), rel=1e-5)
    # Non-target cosines are untouched.
    assert out[0, 1].item() == pytest.approx(0.2) and out[2, 0].item() == pytest.approx(0.3)


# -- angular sparsemax ----------------------------------------------------------------------------


def brute_force_projection(z: torch.Tensor) -> torch.Tensor:
    """argmin_{p in simplex} ||p - z||^2 by trying every support set (independent of the sort-based code)."""
    out = []
    for row in z.double():
        best, best_cost = None, math.inf
        for size in range(1, len(row) + 1):
            for support in itertools.combinations(range(len(row)), size):
                idx = list(support)
                tau = (row[idx].sum() - 1) / size
                p = torch.zeros_like(row)
                p[idx] = row[idx] - tau
                if (p >= 0).all() and (cost := (p - row).pow(2).sum().item()) < best_cost:
                    best, best_cost = p, cost
        out.append(best)
    return torch.stack(out)


def test_sparsemax_is_the_projection_onto_the_simplex():
    gen = torch.Generator().manual_seed(1)
    z = torch.cat([3 * torch.randn(20, 5, generator=gen), torch.tensor([[2.0, 0.0, 0.0, 0.0, 0.0]])])
    p = sparsemax(z)
    torch.testing.assert_close(p.double(), brute_force_projection(z), atol=1e-5, rtol=0)
    assert (p == 0).any(), "sparse: some classes get exactly zero"


def test_sparsemax_loss_by_hand_and_as_fenchel_young():
    # z = (1, 0.5, -1): support {0, 1}, tau = 0.25; L(y=1) = -0.5 + ((1 - 1/16) + (1/4 - 1/16))/2 + 1/2
    assert sparsemax_loss(torch.tensor([[1.0, 0.5, -1.0]]), torch.tensor([1])).item() == pytest.approx(0.5625)
    assert sparsemax_loss(torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0])).item() == pytest.approx(0.0)
    gen = torch.Generator().manual_seed(2)
    z = 2 * torch.randn(12, 4, generator=gen)
    labels = torch.randint(0, 4, (12,), generator=gen)
    p = brute_force_projection(z)
    zd = z.double()
    # Fenchel-Young with Omega = 1/2 ||p||^2: <z, p> - 1/2 ||p||^2 - z_y + 1/2
    fy = (zd * p).sum(1) - 0.5 * p.pow(2).sum(1) - zd.gather(1, labels[:, None]).squeeze(1) + 0.5
    assert sparsemax_loss(z, labels).item() == pytest.approx(fy.mean().item(), rel=1e-5)
    assert (fy >= -1e-9).all()


def test_sparsemax_loss_gradient_is_sparsemax_minus_onehot():
    gen = torch.Generator().manual_seed(3)
    z = (2 * torch.randn(10, 5, generator=gen)).requires_grad_()
    labels = torch.randint(0, 5, (10,), generator=gen)
    sparsemax_loss(z, labels).backward()
    expected = (brute_force_projection(z.detach()) - F.one_hot(labels, 5).double()) / 10
    torch.testing.assert_close(z.grad.double(), expected, atol=1e-6, rtol=0)


def test_angular_sparsemax_is_the_sparsemax_loss_over_margin_scores():
    torch.manual_seed(0)
    loss = build_loss("angular-sparsemax", 4, 3, scale=8.0, margin=0.3, warmup=0.0)
    features = torch.randn(6, 3)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    cos = F.normalize(features, dim=1) @ F.normalize(loss.weight.detach(), dim=1).T
    theta = torch.acos(cos.clamp(-1, 1))
    scores = 8 * torch.cos(theta)
    target = theta[torch.arange(6), labels]
    scores[torch.arange(6), labels] = torch.where(target + 0.3 < math.pi, 8 * torch.cos(target + 0.3),
                                                  8 * (torch.cos(target) - 0.3 * math.sin(0.3)))
    p = brute_force_projection(scores)
    sd = scores.double()
    fy = (sd * p).sum(1) - 0.5 * p.pow(2).sum(1) - sd[torch.arange(6), labels] + 0.5
    out = loss(features, labels)
    assert out.loss.item() == pytest.approx(fy.mean().item(), rel=1e-4)
    torch.testing.assert_close(loss.predict(features), 8 * cos)


# -- class-adversarial ----------------------------------------------------------------------------


def test_gradient_reversal_is_identity_forward_and_flips_and_scales_backward():
    x = torch.randn(5, 3, requires_grad=True)
    y = reverse_gradient(x, 0.37)
    assert torch.equal(y, x)
    weights = torch.randn(5, 3)
    (weights * y).sum().backward()
    assert torch.equal(x.grad, -0.37 * weights)


def test_class_adversarial_gradients_and_dann_ramp():
    torch.manual_seed(0)
    loss = build_loss("class-adversarial", 4, 3, lambda_max=2.0)
    assert loss.set_progress(0.0) == {"lambda_adv": 0.0}
    ramp = loss.set_progress(0.99)["lambda_adv"]
    assert ramp == pytest.approx(2.0 * (2 / (1 + math.exp(-9.9)) - 1))
    assert loss.set_progress(0.3)["lambda_adv"] == pytest.approx(2.0 * (2 / (1 + math.exp(-3)) - 1))
    lam = loss.lambda_adv
    features = torch.randn(8, 3, requires_grad=True)
    labels = torch.randint(0, 4, (8,))
    out = loss(features, labels)
    out.loss.backward()
    # By hand: the base's gradient plus the adversary's, reversed and scaled; the adversary's own
    # parameters get the plain gradient of its cross-entropy.
    f = features.detach().requires_grad_()
    base = loss.base(f, labels).loss
    (base_grad,) = torch.autograd.grad(base, f)
    f2 = features.detach().requires_grad_()
    adversary_ce = F.cross_entropy(loss.adversary(f2), labels)
    adv_grads = torch.autograd.grad(adversary_ce, [f2, *loss.adversary.parameters()])
    torch.testing.assert_close(features.grad, base_grad - lam * adv_grads[0])
    for p, g in zip(loss.adversary.parameters(), adv_grads[1:], strict=True):
        torch.testing.assert_close(p.grad, g)
    assert out.loss.item() == pytest.approx(base.item() + adversary_ce.item(), rel=1e-6)
    torch.testing.assert_close(out.logits, loss.base.predict(features.detach()))


def test_class_adversarial_sits_on_center_loss_too():
    loss = build_loss("class-adversarial", 4, 2, base="center")
    assert set(loss.class_vectors()) == {"centers", "weights"}
    assert "center" in get_spec("class-adversarial").hparam("base").choices
