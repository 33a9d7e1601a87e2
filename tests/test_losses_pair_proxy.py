"""Pair losses (contrastive, triplet, multi-similarity, SupCon, circle, OSM + CAA) and proxy losses.

Each PML adapter is checked twice: against PML called directly, and against an independent
implementation of the paper's formula written here with explicit loops in float64.
"""

from __future__ import annotations

import math
from itertools import permutations

import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses, miners
from pytorch_metric_learning.distances import LpDistance
from pytorch_metric_learning.reducers import MeanReducer

from dmlviz.losses import build_loss, get_spec
from dmlviz.losses.osm_caa import OSMCAALoss

PAIR = ["contrastive", "triplet", "multi-similarity", "supcon", "circle"]
PROXY = ["proxy-nca", "proxy-anchor"]
ALL = [*PAIR, "osm-caa", *PROXY]
#: Every loss with each setting that changes what it computes (miner, mining, hinge form).
VARIANTS = [(name, {}) for name in ALL] + [
    ("contrastive", {"squared": False}), ("triplet", {"miner": "semihard"}), ("triplet", {"miner": "hard"}),
    ("multi-similarity", {"mining": False}),
]


def batch(n_per_class: int = 4, classes: int = 4, dim: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(classes).repeat_interleave(n_per_class)
    return torch.randn(len(labels), dim, generator=gen), labels


def rows(t: torch.Tensor) -> list[list[float]]:
    return t.double().tolist()


def unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def sq_dist(u: list[float], v: list[float]) -> float:
    return sum((a - b) ** 2 for a, b in zip(u, v, strict=True))


def dot(u: list[float], v: list[float]) -> float:
    return sum(a * b for a, b in zip(u, v, strict=True))


def mean_nonzero(values: list[float]) -> float:
    kept = [v for v in values if v > 0]
    return sum(kept) / len(kept) if kept else 0.0


def logsumexp(values: list[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


# -- the spec and the contract, for every loss --------------------------------------------------------------


@pytest.mark.parametrize("name", ALL)
def test_spec_declares_family_pairs_and_what_it_learns(name):
    spec = get_spec(name)
    family, learns, pairs = {
        **{n: ("pair", "none", True) for n in PAIR},
        "osm-caa": ("pair", "weights", True),
        **{n: ("proxy", "proxies", False) for n in PROXY},
    }[name]
    assert (spec.family, spec.learns, spec.needs_pairs) == (family, learns, pairs)
    assert spec.normalized == (name != "contrastive")
    assert set(spec.recommended) == {2, 3}
    for hp in spec.hparams:
        assert hp.check(hp.default) is None, f"{name}: default of {hp.name} outside its range"
    loss = build_loss(name, 4, 3)
    assert loss.set_progress(0.0) == {} and loss.set_progress(0.99) == {}, "no scheduled hyperparameter"


@pytest.mark.parametrize(("name", "hp"), VARIANTS)
@pytest.mark.parametrize("dim", [2, 3, 8])
def test_forward_and_backward_are_finite(name, hp, dim):
    loss = build_loss(name, 4, dim, **hp)
    features, labels = batch(dim=dim, seed=dim)
    features.requires_grad_(True)
    out = loss(features, labels)
    out.loss.backward()
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert features.grad is not None and torch.isfinite(features.grad).all()
    for pname, p in loss.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname


@pytest.mark.parametrize(("name", "hp"), VARIANTS)
@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [2, 2, 2, 2]], ids=["no-positives", "no-negatives"])
def test_batches_without_positives_or_negatives_are_safe(name, hp, labels):
    loss = build_loss(name, 4, 3, **hp)
    features = torch.randn(4, 3, requires_grad=True)
    out = loss(features, torch.tensor(labels))
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(features.grad).all()


@pytest.mark.parametrize(("name", "hp"), VARIANTS)
def test_identical_features_give_finite_gradients(name, hp):
    """Collapsed features (distance exactly 0) must not produce NaN through a square root."""
    loss = build_loss(name, 4, 3, **hp)
    features = torch.ones(8, 3, requires_grad=True)
    loss(features, torch.arange(4).repeat(2)).loss.backward()
    assert torch.isfinite(features.grad).all()


@pytest.mark.parametrize("name", PAIR)
def test_pair_losses_have_no_classifier(name):
    loss = build_loss(name, 4, 3)
    features, labels = batch()
    assert loss(features, labels).logits is None
    assert loss.predict(features) is None and loss.class_vectors() == {}
    assert list(loss.parameters()) == []


#: The least value of the losses that cannot reach 0 on a 4 x 4 batch, reached when each class sits on
#: its own vertex of a regular tetrahedron (cosine 1 within a class, -1/3 between classes):
#: SupCon log 3 (each anchor's three positives share its soft-max; the negatives' share is ~1e-5 at
#: tau = 0.1); unmined MS keeps its positive term (1/alpha) log(1 + 3 e^(-alpha (1 - lambda))).
LOSS_FLOORS = {("supcon",): math.log(3), ("multi-similarity", False): 0.5 * math.log(1 + 3 * math.exp(-1))}


@pytest.mark.parametrize(("name", "hp"), VARIANTS)
def test_loss_falls_on_separable_blobs(name, hp):
    """4 Gaussian blobs in 8-D through a trainable linear map to 3-D; batches of 4 classes x 4."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    centers = 3 * torch.randn(4, 8, generator=gen)

    def sample(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = torch.arange(4).repeat_interleave(per_class)
        return centers[labels] + torch.randn(len(labels), 8, generator=gen), labels

    net = torch.nn.Linear(8, 3)
    loss = build_loss(name, 4, 3, **hp)
    evaluation = [sample(4) for _ in range(8)]  # batches like the training ones: the same loss floor

    def mean_loss() -> float:
        with torch.no_grad():
            return sum(loss(net(x), y).loss.item() for x, y in evaluation) / len(evaluation)

    before = mean_loss()
    optimizer = torch.optim.Adam([*net.parameters(), *loss.parameters()], lr=0.03)
    for _ in range(60):
        x, y = sample(4)
        optimizer.zero_grad()
        loss(net(x), y).loss.backward()
        optimizer.step()
    after = mean_loss()
    floor = LOSS_FLOORS.get((name, *hp.values()), 0.0)
    assert after - floor < 0.5 * (before - floor), f"{name} {hp}: {before:.4f} -> {after:.4f}"


# -- contrastive ----------------------------------------------------------------------------------------------


def contrastive_reference(f: torch.Tensor, y: torch.Tensor, margin: float, squared: bool) -> float:
    """Hadsell's terms (or PML's plain hinges) over ordered pairs on raw features, PML's non-zero means."""
    f, y = rows(f), y.tolist()
    pos, neg = [], []
    for i, j in permutations(range(len(y)), 2):
        d = math.sqrt(sq_dist(f[i], f[j]))
        if y[i] == y[j]:
            pos.append(0.5 * d * d if squared else d)
        else:
            hinge = max(margin - d, 0.0)
            neg.append(0.5 * hinge * hinge if squared else hinge)
    return mean_nonzero(pos) + mean_nonzero(neg)


@pytest.mark.parametrize("squared", [True, False])
def test_contrastive_matches_its_formula_on_raw_features(squared):
    features, labels = batch(seed=3)
    features = 0.5 * features  # some negatives inside the margin, some outside
    got = build_loss("contrastive", 4, 3, margin=1.5, squared=squared)(features, labels).loss.item()
    assert got == pytest.approx(contrastive_reference(features, labels, 1.5, squared), rel=1e-5)


def test_contrastive_plain_hinges_equal_pml():
    features, labels = batch(seed=4)
    pml = losses.ContrastiveLoss(pos_margin=0, neg_margin=2.0, distance=LpDistance(normalize_embeddings=False))
    got = build_loss("contrastive", 4, 3, margin=2.0, squared=False)(features, labels).loss
    torch.testing.assert_close(got, pml(features, labels))


def test_contrastive_is_not_scale_invariant():
    """Raw Euclidean, unlike every other loss here: scaling the features changes the loss."""
    features, labels = batch(seed=5)
    loss = build_loss("contrastive", 4, 3)
    assert loss(features, labels).loss.item() != pytest.approx(loss(3 * features, labels).loss.item())


# -- triplet --------------------------------------------------------------------------------------------------


def triplet_reference(f: torch.Tensor, y: torch.Tensor, margin: float, miner: str) -> float:
    """FaceNet's hinge on squared distances of unit vectors, over all / semi-hard / batch-hard triplets."""
    u, y = [unit(v) for v in rows(f)], y.tolist()
    n = len(y)
    values = []
    for a in range(n):
        positives = [p for p in range(n) if p != a and y[p] == y[a]]
        negatives = [k for k in range(n) if y[k] != y[a]]
        if not positives or not negatives:
            continue
        if miner == "hard":
            triplets = [(max(positives, key=lambda p: sq_dist(u[a], u[p])),
                         min(negatives, key=lambda k: sq_dist(u[a], u[k])))]
        else:
            triplets = [(p, k) for p in positives for k in negatives]
        for p, k in triplets:
            ap, an = sq_dist(u[a], u[p]), sq_dist(u[a], u[k])
            if miner == "semihard" and not 0 < an - ap <= margin:
                continue
            values.append(max(ap - an + margin, 0.0))
    return mean_nonzero(values)


@pytest.mark.parametrize("miner", ["all", "semihard", "hard"])
def test_triplet_matches_facenet_formula_with_each_miner(miner):
    features, labels = batch(seed=6)
    got = build_loss("triplet", 4, 3, margin=0.5, miner=miner)(features, labels).loss.item()
    want = triplet_reference(features, labels, 0.5, miner)
    assert want > 0, "the case must have triplets that count"
    assert got == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("miner", ["all", "semihard", "hard"])
def test_triplet_equals_pml_with_its_miner(miner):
    features, labels = batch(seed=7)
    distance = LpDistance(normalize_embeddings=True, power=2)
    pml_miner = {"all": None, "semihard": miners.TripletMarginMiner(0.5, "semihard", distance=distance),
                 "hard": miners.BatchHardMiner(distance=distance)}[miner]
    mined = pml_miner(features, labels) if pml_miner else None
    want = losses.TripletMarginLoss(0.5, distance=distance)(features, labels, mined)
    got = build_loss("triplet", 4, 3, margin=0.5, miner=miner)(features, labels).loss
    torch.testing.assert_close(got, want)


# -- multi-similarity -----------------------------------------------------------------------------------------


def ms_reference(f: torch.Tensor, y: torch.Tensor, alpha: float, beta: float, lam: float, eps: float,
                 mining: bool) -> float:
    """The official code: mine each anchor's pairs against the other set, then the two soft-plus terms."""
    u, y = [unit(v) for v in rows(f)], y.tolist()
    n = len(y)
    total = 0.0
    for i in range(n):
        pos = [dot(u[i], u[j]) for j in range(n) if j != i and y[j] == y[i]]
        neg = [dot(u[i], u[k]) for k in range(n) if y[k] != y[i]]
        if mining:
            if not pos or not neg:
                continue
            pos, neg = [s for s in pos if s - eps < max(neg)], [s for s in neg if s + eps > min(pos)]
        total += math.log(1 + sum(math.exp(-alpha * (s - lam)) for s in pos)) / alpha
        total += math.log(1 + sum(math.exp(beta * (s - lam)) for s in neg)) / beta
    return total / n


@pytest.mark.parametrize("mining", [True, False])
def test_multi_similarity_matches_official_formula(mining):
    features, labels = batch(seed=8)
    hp = {"alpha": 2.0, "beta": 10.0, "lambda": 0.3, "epsilon": 0.2}
    got = build_loss("multi-similarity", 4, 3, mining=mining, **hp)(features, labels).loss.item()
    want = ms_reference(features, labels, 2.0, 10.0, 0.3, 0.2, mining)
    assert got == pytest.approx(want, rel=1e-5)


def test_multi_similarity_mining_drops_pairs():
    """The case used above must actually mine something away, or the mining test proves nothing."""
    features, labels = batch(seed=8)
    assert ms_reference(features, labels, 2.0, 10.0, 0.3, 0.2, True) != pytest.approx(
        ms_reference(features, labels, 2.0, 10.0, 0.3, 0.2, False))


def test_multi_similarity_equals_pml_with_its_miner():
    features, labels = batch(seed=9)
    mined = miners.MultiSimilarityMiner(0.1)(features, labels)
    want = losses.MultiSimilarityLoss(2.0, 50.0, 0.5)(features, labels, mined)
    torch.testing.assert_close(build_loss("multi-similarity", 4, 3)(features, labels).loss, want)


# -- SupCon and circle ----------------------------------------------------------------------------------------


def supcon_reference(f: torch.Tensor, y: torch.Tensor, tau: float) -> float:
    u, y = [unit(v) for v in rows(f)], y.tolist()
    n = len(y)
    values = []
    for i in range(n):
        positives = [p for p in range(n) if p != i and y[p] == y[i]]
        log_denominator = logsumexp([dot(u[i], u[a]) / tau for a in range(n) if a != i])
        values.append(-sum(dot(u[i], u[p]) / tau - log_denominator for p in positives) / len(positives))
    return sum(values) / n


def test_supcon_matches_its_formula_and_pml():
    features, labels = batch(seed=10)
    got = build_loss("supcon", 4, 3, temperature=0.2)(features, labels).loss
    assert got.item() == pytest.approx(supcon_reference(features, labels, 0.2), rel=1e-5)
    torch.testing.assert_close(got, losses.SupConLoss(0.2, reducer=MeanReducer())(features, labels))


def circle_reference(f: torch.Tensor, y: torch.Tensor, m: float, gamma: float) -> float:
    u, y = [unit(v) for v in rows(f)], y.tolist()
    n = len(y)
    values = []
    for i in range(n):
        sp = [dot(u[i], u[j]) for j in range(n) if j != i and y[j] == y[i]]
        sn = [dot(u[i], u[k]) for k in range(n) if y[k] != y[i]]
        lp = logsumexp([-gamma * max(1 + m - s, 0) * (s - (1 - m)) for s in sp])
        ln = logsumexp([gamma * max(s + m, 0) * (s - m) for s in sn])
        values.append(math.log1p(math.exp(lp + ln)))
    return sum(values) / n


def test_circle_matches_its_formula_and_pml():
    features, labels = batch(seed=11)
    got = build_loss("circle", 4, 3, m=0.3, gamma=16.0)(features, labels).loss
    assert got.item() == pytest.approx(circle_reference(features, labels, 0.3, 16.0), rel=1e-5)
    torch.testing.assert_close(got, losses.CircleLoss(m=0.3, gamma=16.0, reducer=MeanReducer())(features, labels))


def test_circle_weights_are_constants():
    """a_p and a_n are not differentiated (the paper treats them as constants): gradients differ otherwise."""
    features, labels = batch(n_per_class=2, classes=2, dim=2, seed=12)
    features.requires_grad_(True)
    build_loss("circle", 2, 2, m=0.3, gamma=4.0)(features, labels).loss.backward()
    u = F.normalize(features, dim=1)
    s = u @ u.T
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(4, dtype=torch.bool)

    def loss_with(ap: torch.Tensor, an: torch.Tensor) -> torch.Tensor:
        lp = torch.where(same & ~eye, -4.0 * ap * (s - 0.7), -torch.inf).logsumexp(1)
        ln = torch.where(~same, 4.0 * an * (s - 0.3), -torch.inf).logsumexp(1)
        return F.softplus(lp + ln).mean()

    const = torch.autograd.grad(loss_with((1.3 - s).clamp(min=0).detach(), (s + 0.3).clamp(min=0).detach()),
                                features, retain_graph=True)[0]
    live = torch.autograd.grad(loss_with((1.3 - s).clamp(min=0), (s + 0.3).clamp(min=0)), features)[0]
    torch.testing.assert_close(features.grad, const)
    assert not torch.allclose(const, live)


# -- proxies --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PROXY)
def test_proxies_are_parameters_of_the_module_and_its_class_vectors(name):
    loss = build_loss(name, 5, 3)
    proxies = loss.class_vectors()["proxies"]
    assert proxies.shape == (5, 3)
    params = list(loss.parameters())
    assert len(params) == 1 and params[0] is proxies and proxies is loss.loss.proxies
    before = proxies.detach().clone()
    optimizer = torch.optim.SGD(loss.parameters(), lr=0.1)
    features, labels = batch(classes=5)
    loss(features, labels).loss.backward()
    optimizer.step()
    assert not torch.equal(before, loss.class_vectors()["proxies"].detach()), "the optimizer moves the proxies"


@pytest.mark.parametrize("name", PROXY)
def test_proxy_scores_are_cosines_to_the_proxies(name):
    loss = build_loss(name, 4, 3)
    features, labels = batch()
    proxies = loss.class_vectors()["proxies"].detach()
    want = torch.tensor([[dot(unit(f), unit(p)) for p in rows(proxies)] for f in rows(features)])
    torch.testing.assert_close(loss.predict(features).double(), want.double(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss(features, labels).logits, loss.predict(features))
    nearest = torch.cdist(F.normalize(features, dim=1), F.normalize(proxies, dim=1)).argmin(1)
    assert torch.equal(loss.predict(features).argmax(1), nearest)


def proxy_nca_reference(f: torch.Tensor, y: torch.Tensor, proxies: torch.Tensor, scale: float) -> float:
    u, p, y = [unit(v) for v in rows(f)], [unit(v) for v in rows(proxies)], y.tolist()
    values = [logsumexp([-scale * sq_dist(ui, pc) for pc in p]) + scale * sq_dist(ui, p[yi])
              for ui, yi in zip(u, y, strict=True)]
    return sum(values) / len(values)


def test_proxy_nca_matches_its_formula_and_pml_with_the_same_proxies():
    features, labels = batch(seed=13)
    loss = build_loss("proxy-nca", 4, 3, scale=3.0)
    proxies = loss.class_vectors()["proxies"].detach()
    got = loss(features, labels).loss
    assert got.item() == pytest.approx(proxy_nca_reference(features, labels, proxies, 3.0), rel=1e-5)
    pml = losses.ProxyNCALoss(4, 3, softmax_scale=3.0)
    pml.proxies.data.copy_(proxies)
    torch.testing.assert_close(got, pml(features, labels))
    # Computed without PML's boolean selections (which wait for a GPU): the same gradients too.
    f = features.clone().requires_grad_(True)
    torch.testing.assert_close(torch.autograd.grad(loss(f, labels).loss, f)[0],
                               torch.autograd.grad(pml(f, labels), f)[0])


def proxy_anchor_reference(f: torch.Tensor, y: torch.Tensor, proxies: torch.Tensor, delta: float,
                           alpha: float) -> float:
    u, p, y = [unit(v) for v in rows(f)], [unit(v) for v in rows(proxies)], y.tolist()
    present = sorted(set(y))
    pos = neg = 0.0
    for c in range(len(p)):
        cos = [(dot(ui, p[c]), yi == c) for ui, yi in zip(u, y, strict=True)]
        if c in present:
            pos += math.log(1 + sum(math.exp(-alpha * (s - delta)) for s, own in cos if own))
        neg += math.log(1 + sum(math.exp(alpha * (s + delta)) for s, own in cos if not own))
    return pos / len(present) + neg / len(p)


def test_proxy_anchor_matches_its_formula_and_pml_with_the_same_proxies():
    features, labels = batch(classes=3, seed=14)  # proxy 3 has no sample: only pushed, not in P+
    loss = build_loss("proxy-anchor", 4, 3, margin=0.2, alpha=8.0)
    proxies = loss.class_vectors()["proxies"].detach()
    got = loss(features, labels).loss
    assert got.item() == pytest.approx(proxy_anchor_reference(features, labels, proxies, 0.2, 8.0), rel=1e-5)
    pml = losses.ProxyAnchorLoss(4, 3, margin=0.2, alpha=8.0)
    pml.proxies.data.copy_(proxies)
    torch.testing.assert_close(got, pml(features, labels))
    # Computed without PML's boolean selections (which wait for a GPU): the same gradients too.
    f = features.clone().requires_grad_(True)
    torch.testing.assert_close(torch.autograd.grad(loss(f, labels).loss, f)[0],
                               torch.autograd.grad(pml(f, labels), f)[0])


# -- OSM + CAA ------------------------------------------------------------------------------------------------

# Two classes of two 2-D samples (raw; their directions are what counts) and a fixed classifier.
OSM_FEATURES = [[2.0, 0.0], [0.8, 0.6], [0.0, 3.0], [-0.28, 0.96]]
OSM_LABELS = [0, 0, 1, 1]
OSM_W = [[1.5, 0.5], [-0.5, 1.0]]
OSM_B = [0.2, -0.1]
ALPHA, SIGMA_OSM, SIGMA_CAA, LAMBDA = 1.2, 0.8, 0.68, 0.5


def osm_module() -> OSMCAALoss:
    loss = build_loss("osm-caa", 2, 2)
    with torch.no_grad():
        loss.classifier.weight.copy_(torch.tensor(OSM_W))
        loss.classifier.bias.copy_(torch.tensor(OSM_B))
    return loss


def osm_by_hand() -> tuple[dict[tuple[int, int], float], list[float], float, float]:
    """Pair weights (unordered pairs), attentions, metric term and cross-entropy, with plain loops."""
    u = [unit(v) for v in OSM_FEATURES]
    logits = [[dot(w, ui) + b for w, b in zip(OSM_W, OSM_B, strict=True)] for ui in u]
    prob = [math.exp(z[y]) / sum(math.exp(v) for v in z) for z, y in zip(logits, OSM_LABELS, strict=True)]
    attention = [math.exp(-((p - 1.0) ** 2) / (2 * SIGMA_CAA**2)) for p in prob]
    weights, pull, pull_w, push, push_w = {}, 0.0, 0.0, 0.0, 0.0
    for i in range(4):
        for j in range(i + 1, 4):
            d2 = sq_dist(u[i], u[j])
            d = math.sqrt(d2)
            a = min(attention[i], attention[j])
            if OSM_LABELS[i] == OSM_LABELS[j]:
                w = math.exp(-d2 / SIGMA_OSM**2) * a
                pull, pull_w = pull + w * 0.5 * d2, pull_w + w
            else:
                w = max(ALPHA - d, 0.0) * a
                push, push_w = push + w * 0.5 * max(ALPHA - d, 0.0) ** 2, push_w + w
            weights[i, j] = w
    ce = sum(-math.log(p) for p in prob) / 4
    return weights, attention, (1 - LAMBDA) * pull / pull_w + LAMBDA * push / push_w, ce


def test_osm_caa_hand_case_is_the_intended_one():
    """The case exercises what it should: unequal positive weights, two active negatives, one beyond alpha."""
    weights, attention, _, _ = osm_by_hand()
    u = [unit(v) for v in OSM_FEATURES]
    assert sq_dist(u[0], u[1]) == pytest.approx(0.4) and sq_dist(u[2], u[3]) == pytest.approx(0.08)
    assert weights[0, 1] / min(attention[0], attention[1]) == pytest.approx(math.exp(-0.625))
    assert weights[0, 2] == 0 and weights[1, 2] > 0 and weights[1, 3] > 0
    assert len({round(a, 6) for a in attention}) == 4, "every sample gets its own attention"


def test_osm_caa_weights_attention_and_loss_match_the_hand_computation():
    loss = osm_module()
    features, labels = torch.tensor(OSM_FEATURES), torch.tensor(OSM_LABELS)
    weights, attention, metric, ce = osm_by_hand()
    out = loss(features, labels)
    assert out.loss.item() == pytest.approx(metric + ce, rel=1e-5)
    assert F.cross_entropy(out.logits, labels).item() == pytest.approx(ce, rel=1e-5)
    got_attention = loss.attention(out.logits, labels)
    assert got_attention.tolist() == pytest.approx(attention, rel=1e-5)
    f = F.normalize(features, dim=1)
    sq = torch.cdist(f, f) ** 2
    got_w = loss.pair_weights(sq, sq.sqrt(), labels[:, None] == labels[None, :], got_attention)
    for (i, j), w in weights.items():
        assert got_w[i, j].item() == pytest.approx(w, rel=1e-5, abs=1e-7), (i, j)


def test_osm_caa_gradients_treat_the_weights_as_constants():
    """Features get the gradient of the weighted loss with w fixed; the classifier only that of CE."""
    loss = osm_module()
    features, labels = torch.tensor(OSM_FEATURES, requires_grad=True), torch.tensor(OSM_LABELS)
    loss(features, labels).loss.backward()
    weights, _, _, _ = osm_by_hand()

    f = F.normalize(features, dim=1)
    pos_w = sum(w for (i, j), w in weights.items() if OSM_LABELS[i] == OSM_LABELS[j])
    neg_w = sum(w for (i, j), w in weights.items() if OSM_LABELS[i] != OSM_LABELS[j])
    metric = 0.0
    for (i, j), w in weights.items():
        d2 = (f[i] - f[j]).pow(2).sum()
        if OSM_LABELS[i] == OSM_LABELS[j]:
            metric = metric + (1 - LAMBDA) * w * 0.5 * d2 / pos_w
        else:
            metric = metric + LAMBDA * w * 0.5 * (ALPHA - d2.sqrt()).clamp(min=0) ** 2 / neg_w
    reference = osm_module()
    want = metric + F.cross_entropy(reference.classifier(f), labels)
    want_grad = torch.autograd.grad(want, features, retain_graph=True)[0]
    torch.testing.assert_close(features.grad, want_grad)

    ce_only = F.cross_entropy(reference.classifier(F.normalize(features.detach(), dim=1)), labels)
    ce_grad = torch.autograd.grad(ce_only, reference.classifier.weight)[0]
    torch.testing.assert_close(loss.classifier.weight.grad, ce_grad)


def test_osm_caa_classifier_reads_directions_only():
    loss = build_loss("osm-caa", 3, 2)
    features, labels = batch(classes=3, dim=2)
    torch.testing.assert_close(loss.predict(features), loss.predict(5 * features))
    torch.testing.assert_close(loss(features, labels).loss, loss(5 * features, labels).loss)
    assert loss.class_vectors()["weights"] is loss.classifier.weight
    assert loss(features, labels).logits.shape == (12, 3)


def test_osm_caa_large_sigma_caa_is_plain_osm():
    """With a very wide attention Gaussian every pair gets the same attention: the weights are the OSM scores."""
    loss = build_loss("osm-caa", 4, 3, sigma_caa=10.0)
    features, labels = batch()
    a = loss.attention(loss.predict(features), labels)
    assert torch.allclose(a, torch.ones_like(a), atol=5e-3)


@pytest.mark.parametrize("miner", ["all", "semihard"])
def test_a_batch_too_large_for_the_triplet_cube_takes_pml_s_lists(monkeypatch, miner):
    from dmlviz.losses import pair

    features, labels = batch(seed=22)
    loss = build_loss("triplet", 4, 3, margin=0.5, miner=miner)
    calls, listed = [], loss.listed
    monkeypatch.setattr(loss, "listed", lambda *args: calls.append(args) or listed(*args))
    dense = loss(features, labels).loss
    assert not calls
    monkeypatch.setattr(pair, "DENSE_TRIPLETS_CPU", len(labels) ** 3 - 1)
    torch.testing.assert_close(loss(features, labels).loss, dense)
    assert calls


@pytest.mark.parametrize(("name", "hp"), [
    ("contrastive", {"margin": 1.5}), ("contrastive", {"margin": 1.5, "squared": False}),
    ("triplet", {"margin": 0.5}), ("triplet", {"miner": "semihard", "margin": 0.5}),
    ("triplet", {"miner": "hard", "margin": 0.5}), ("multi-similarity", {"epsilon": 0.3}),
    ("multi-similarity", {"mining": False}), ("supcon", {"temperature": 0.2}), ("circle", {"m": 0.3, "gamma": 16.0})])
@pytest.mark.parametrize("case", ["random", "collapsed", "one-class", "no-positives"])
def test_pair_losses_on_masks_give_pml_s_values_terms_shares_and_gradients(name, hp, case):
    """Every pair loss and miner is computed on masks of all pairs (PML's index lists wait for a GPU): PML's
    loss, terms, active shares and gradients from its own lists, in degenerate batches too."""
    features, labels = batch(seed=24)
    if case == "collapsed":  # ties everywhere: batch-hard must send a tie's gradient where PML's index does
        features[::2] = features[0]
    elif case == "one-class":
        labels = torch.zeros_like(labels)
    elif case == "no-positives":
        labels = torch.arange(len(labels))
    loss = build_loss(name, 4, 3, **hp)
    f = features.clone().requires_grad_(True)
    dense, listed = loss(f, labels), loss.listed(f, labels)
    if case == "random":
        assert dense.loss.item() > 0, "the case must have pairs that count"
    torch.testing.assert_close(dense.loss, listed.loss)
    assert dense.terms.keys() == listed.terms.keys() and dense.active.keys() == listed.active.keys()
    for key in dense.terms:
        torch.testing.assert_close(dense.terms[key], listed.terms[key])
    for key in dense.active:
        torch.testing.assert_close(dense.active[key].float(), listed.active[key].float())
    torch.testing.assert_close(torch.autograd.grad(dense.loss, f, retain_graph=True)[0],
                               torch.autograd.grad(listed.loss, f, retain_graph=True)[0])
