"""Pair-based losses (family 3): no classifier, only the distances between the samples of a batch.

Each is a thin adapter around a pytorch-metric-learning (PML) loss, plus a PML miner where the paper
mines. A training step must not wait for a GPU, and PML's pair and triplet index lists (``nonzero``,
boolean selections) do: so each loss computes PML's terms, mining rules and reductions on masks of all
pairs (:func:`pair_masks`), tested equal to PML's own path in values, shares and gradients. They learn
nothing per class; the engine scores accuracy by the nearest class mean. Losses on
directions use PML's distances with our floored normalisation (:func:`unit`), see :class:`UnitNormalize`.
"""

from __future__ import annotations

from typing import Any

import torch
from pytorch_metric_learning import losses, miners
from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
from pytorch_metric_learning.reducers import MeanReducer, MultipleReducers
from pytorch_metric_learning.utils import common_functions as c_f
from pytorch_metric_learning.utils import loss_and_miner_utils as lmu

from dmlviz.losses.base import FeatureLoss, LossOutput, LossSpec, Paper, Param, pick, unit
from dmlviz.losses.registry import register

TRIPLET_MINERS = ("all", "semihard", "hard")
# Batch-all and semi-hard triplets as a dense B × B × B cube up to batches of 256 (16.8 M cells, 67 MB a float
# tensor); on a CPU, where PML's lists wait for nothing and the cube's memory traffic costs more than they do
# beyond 64 (``bench.pair_losses``), up to 64. Larger batches take PML's lists of triplets.
DENSE_TRIPLETS = 256**3
DENSE_TRIPLETS_CPU = 64**3


class UnitNormalize:
    """Mixin for a PML distance: normalise embeddings with :func:`unit` instead of F.normalize.

    PML's F.normalize (eps 1e-12) gives an all-zero feature a gradient of about 1e12; normalising
    before PML would not help, as PML normalises the (still zero) row again. Identical to PML's
    result for every feature longer than NORM_FLOOR. Only for p = 2 along dim 1, as PML calls it.
    """

    def normalize(self, embeddings: torch.Tensor, dim: int = 1, **kwargs: object) -> torch.Tensor:
        return unit(embeddings)


class UnitLpDistance(UnitNormalize, LpDistance):
    """PML's LpDistance (normalize_embeddings=True, p = 2) with the floored normalisation."""


class UnitCosineSimilarity(UnitNormalize, CosineSimilarity):
    """PML's CosineSimilarity with the floored normalisation."""


#: What the terms of PML's sub-losses are called among a loss's terms.
SUB_LOSS_TERMS = {"pos_loss": "positive", "neg_loss": "negative"}


def pml_forward(loss: losses.BaseMetricLossFunction, features: torch.Tensor, labels: torch.Tensor,
                indices: tuple[torch.Tensor, ...] | None = None) -> tuple[LossOutput, dict[str, Any]]:
    """PML's ``loss(features, labels, indices)``, with each sub-loss's reduced value as a term.

    The steps of PML's BaseMetricLossFunction.forward, except that a loss of several sub-losses
    (a positive and a negative one) has them reduced one by one before PML's sum, so that they can
    be reported. Also returns PML's loss dict: its per-pair or per-triplet losses give the active shares.
    """
    loss.reset_stats()
    loss_dict = loss.compute_loss(features, labels, indices, features, labels)
    loss.add_embedding_regularization_to_loss_dict(loss_dict, features)
    reducer = loss.reducer
    if not isinstance(reducer, MultipleReducers):
        return LossOutput(reducer(loss_dict, features, labels)), loss_dict
    parts = {name: (reducer.reducers[name] if name in reducer.reducers else reducer.default_reducer)(
        {name: info}, features, labels) for name, info in loss_dict.items()}
    value = reducer.sub_loss_reduction(torch.stack(list(parts.values())), features, labels)
    return LossOutput(value, terms={SUB_LOSS_TERMS.get(name, name): part for name, part in parts.items()}), loss_dict


def nonzero_share(loss_info: dict[str, Any], total: torch.Tensor) -> torch.Tensor:
    """The share of ``total`` pairs or triplets whose loss in PML's ``loss_info`` is above zero."""
    per_item = loss_info["losses"]
    count = (per_item > 0).sum() if torch.is_tensor(per_item) else torch.zeros((), device=total.device)
    return count / total.clamp(min=1)


def pair_counts(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The numbers of the batch's ordered positive pairs, negative pairs and triplets (anchor, positive, negative)."""
    same = (labels[:, None] == labels[None, :]).sum(1)  # each sample's class size, itself included (no bincount)
    positives, negatives = same - 1, len(labels) - same
    return positives.sum(), negatives.sum(), (positives * negatives).sum()


def mean_above_zero(values: torch.Tensor, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean of ``values`` where ``kept`` and above zero, and how many those are: PML's AvgNonZeroReducer
    (0 with none) as tensor arithmetic, where PML selects them with a boolean mask that waits for a GPU."""
    counted = kept & (values > 0)
    count = counted.sum()
    return torch.where(counted, values, 0).sum() / count.clamp(min=1), count


def pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """B × B: the ordered positive pairs (same class, two samples) and the negative pairs."""
    same = labels[:, None] == labels[None, :]
    return same & ~torch.eye(len(labels), dtype=torch.bool, device=labels.device), ~same


class PMLPairLoss(FeatureLoss):
    """A PML loss on the pairs (or triplets) of the batch, optionally restricted by a PML miner.

    :meth:`listed` computes it as PML does, from its miner's and its loss's index lists; each loss's
    ``forward`` computes the same numbers on masks of all pairs, tested equal to :meth:`listed` and timed
    against it (``python -m bench.pair_losses``).
    """

    def __init__(self, num_classes: int, dim: int, loss: losses.BaseMetricLossFunction,
                 miner: miners.BaseMiner | None = None) -> None:
        super().__init__(num_classes, dim)
        self.loss = loss
        self.miner = miner

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        return self.listed(features, labels)

    def listed(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        """The loss, its terms and active shares as PML computes them from its index lists (which wait for a GPU)."""
        mined = self.miner(features, labels) if self.miner is not None else None
        out, loss_dict = pml_forward(self.loss, features, labels, mined)
        out.active = self.active(loss_dict, labels, mined)
        return out

    def active(self, loss_dict: dict[str, Any], labels: torch.Tensor,
               mined: tuple[torch.Tensor, ...] | None) -> dict[str, torch.Tensor]:
        """The shares of the batch's pairs or triplets that contribute to the loss (none by default)."""
        return {}


class HadsellContrastiveLoss(losses.ContrastiveLoss):
    """PML's ContrastiveLoss with Hadsell et al.'s squared, halved hinges ½d² and ½[m − d]²₊.

    PML's own per-pair terms are the plain hinges [d − m_pos]₊ and [m_neg − d]₊; everything else
    (pairs, distance, reduction) stays PML's.
    """

    def pos_calc(self, pos_pair_dist: torch.Tensor, margin: float) -> torch.Tensor:
        return 0.5 * super().pos_calc(pos_pair_dist, margin) ** 2

    def neg_calc(self, neg_pair_dist: torch.Tensor, margin: float) -> torch.Tensor:
        return 0.5 * super().neg_calc(neg_pair_dist, margin) ** 2


@register(
    LossSpec(
        name="contrastive",
        display_name="Contrastive loss",
        family="pair",
        description=(
            "Every pair of the batch is either pulled together (same class) or pushed apart until it is "
            "at least a margin away (different classes); pairs already farther than the margin are left "
            "alone. On raw features in the plane each class contracts towards a tight blob and the blobs "
            "settle about one margin apart, with no preferred direction and no growth in norm: the map "
            "looks like scattered islands rather than the radial petals of softmax."
        ),
        formula=(r"L = \operatorname*{mean}_{y_i = y_j,\ d_{ij} > 0} \tfrac12 d_{ij}^2 + "
                 r"\operatorname*{mean}_{y_i \ne y_j,\ d_{ij} < m} \tfrac12 [m - d_{ij}]_+^2,\quad "
                 r"d_{ij} = \lVert f_i - f_j \rVert_2"),
        paper=Paper("Hadsell, Chopra, LeCun", "Dimensionality Reduction by Learning an Invariant Mapping",
                    "CVPR", 2006),
        hparams=(
            Param("margin", 1.0, 0.01, 10.0, help="Distance m beyond which pairs of different classes stop "
                  "being pushed; in raw feature units, it sets the size of the whole map."),
            Param("squared", True, help="True: the paper's squared hinges ½d² and ½[m − d]²₊. False: "
                  "pytorch-metric-learning's plain hinges d and [m − d]₊, which pull with a constant force."),
        ),
        normalized=False,
        learns="none",
        implementation=(
            "pytorch-metric-learning ContrastiveLoss(pos_margin=0, neg_margin=margin) on raw Euclidean "
            "distances (LpDistance(normalize_embeddings=False)); with squared=True its per-pair hinges are "
            "squared and halved as in the paper (PML has only the plain hinges). All pairs of the batch; "
            "positive and negative terms are each averaged over the pairs with non-zero loss (PML's "
            "AvgNonZeroReducer), where the paper sums over pairs."
        ),
        dims="any; the paper's own figures are 2-D maps of raw features",
        pitfalls=(
            "Raw Euclidean: the margin is in feature units and fixes the scale of the map. Pairs farther "
            "than the margin are no longer pushed, so the gaps between classes stop growing at about one "
            "margin, while positives keep being pulled together. With squared=False the pull does not weaken "
            "near the center of a class, so classes shrink to near points. Needs at least two samples per "
            "class in the batch, or there is nothing to pull."
        ),
        recommended={
            2: {"feature_dim": 2, "lr": 0.001, "loss_params": {"margin": 2.0}},
            3: {"feature_dim": 3, "lr": 0.001, "loss_params": {"margin": 2.0}},
        },
        needs_pairs=True,
    )
)
class ContrastiveLoss(PMLPairLoss):
    def __init__(self, num_classes: int, dim: int, margin: float = 1.0, squared: bool = True) -> None:
        pml_loss = HadsellContrastiveLoss if squared else losses.ContrastiveLoss
        super().__init__(num_classes, dim, pml_loss(pos_margin=0.0, neg_margin=margin,
                                                    distance=LpDistance(normalize_embeddings=False)))

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        # PML's per-pair hinges and reducer, on every pair of the B × B matrix at once: the same numbers,
        # without PML's pair indices (nonzero) and boolean selection, which wait for a GPU.
        loss = self.loss
        distances = loss.distance(features)
        positive_pairs, negative_pairs = pair_masks(labels)
        pos, pos_count = mean_above_zero(loss.pos_calc(distances, loss.pos_margin), positive_pairs)
        neg, neg_count = mean_above_zero(loss.neg_calc(distances, loss.neg_margin), negative_pairs)
        positives, negatives = positive_pairs.sum(), negative_pairs.sum()
        return LossOutput(pos + neg, terms={"positive": pos, "negative": neg},
                          active={"positive pairs": pos_count / positives.clamp(min=1),
                                  "negative pairs": neg_count / negatives.clamp(min=1)})

    def active(self, loss_dict: dict[str, Any], labels: torch.Tensor,
               mined: tuple[torch.Tensor, ...] | None) -> dict[str, torch.Tensor]:
        positives, negatives, _ = pair_counts(labels)
        return {"positive pairs": nonzero_share(loss_dict["pos_loss"], positives),
                "negative pairs": nonzero_share(loss_dict["neg_loss"], negatives)}


@register(
    LossSpec(
        name="triplet",
        display_name="Triplet loss",
        family="pair",
        description=(
            "For an anchor, a sample of its class and a sample of another class, the negative must be "
            "farther from the anchor than the positive by a margin. Features are L2-normalised, so in "
            "2-D they live on the unit circle and in 3-D on the sphere: classes gather into arcs or caps "
            "separated by gaps. Only relative distances matter, so classes may stay fairly spread as long "
            "as the gaps are wide enough; harder mining (semi-hard, batch-hard) sharpens the gaps."
        ),
        formula=(r"L = \operatorname*{mean}_{(a,p,n)\ \text{mined},\ \ell_{apn} > 0} \ell_{apn},\quad "
                 r"\ell_{apn} = \big[\lVert \hat f_a - \hat f_p \rVert^2 - \lVert \hat f_a - \hat f_n \rVert^2 "
                 r"+ m\big]_+,"
                 r"\ \hat f = f / \lVert f \rVert"),
        paper=Paper("Schroff, Kalenichenko, Philbin", "FaceNet: A Unified Embedding for Face Recognition and "
                    "Clustering", "CVPR", 2015, "1503.03832"),
        hparams=(
            Param("margin", 0.2, 0.0, 4.0, help="Margin m between squared distances of unit vectors (which "
                  "lie between 0 and 4); FaceNet uses 0.2."),
            Param("miner", "all", choices=TRIPLET_MINERS, help="Which triplets of the batch count. 'all': "
                  "every triplet (batch-all). 'semihard': FaceNet's semi-hard triplets, whose negative is "
                  "farther than the positive but inside the margin. 'hard': batch-hard (Hermans et al. "
                  "2017), for each anchor only its farthest positive and nearest negative."),
        ),
        normalized=True,
        learns="none",
        implementation=(
            "pytorch-metric-learning TripletMarginLoss on squared distances of L2-normalised features "
            "(LpDistance(power=2)), averaged over the triplets with non-zero loss (PML's AvgNonZeroReducer); "
            "miners: 'all' none (every triplet), 'semihard' TripletMarginMiner(type_of_triplets='semihard') "
            "with the same margin and distance, 'hard' BatchHardMiner. PML's type_of_triplets='hard' "
            "(negative nearer than the positive) is not batch-hard and is not used. Loss and miners are "
            "computed on masks of the batch's triplet cube (batch-hard: its pair matrix), tested equal to "
            "PML's index lists; semi-hard and batch-all batches over 256 (on a CPU over 64) take PML's lists."
        ),
        dims="any; 2-D shows arcs on the circle, 3-D caps on the sphere",
        pitfalls=(
            "Semi-hard mining finds no triplet once every negative is beyond the margin, and none at all at "
            "the start if every negative is nearer than its positive: the loss is then zero and nothing "
            "moves. Batch-hard chases each anchor's worst positive and negative; with outliers, noisy labels, "
            "or (in our short 2-D digit runs) simply at the start, it can collapse all features to one point, "
            "where every distance is 0, the loss equals the margin and the gradient of the squared distances "
            "vanishes, so training stays stuck there. On the 2-D circle batch-all separates neighbouring "
            "classes slowly (averaged over the many triplets they violate together), so the 2-D preset mines "
            "semi-hard triplets. Squared distances of unit vectors are at most 4; a margin near 4 cannot be met."
        ),
        recommended={
            # Batches of 128: the default 32 (eight runs of 4 samples) forms the 2-D picture no faster and
            # leaves semi-hard mining fewer negatives to choose from.
            2: {"feature_dim": 2, "lr": 0.001, "batch_size": 128, "loss_params": {"margin": 0.2, "miner": "semihard"}},
            3: {"feature_dim": 3, "lr": 0.001, "batch_size": 128, "loss_params": {"margin": 0.2, "miner": "all"}},
        },
        needs_pairs=True,
    )
)
class TripletLoss(PMLPairLoss):
    def __init__(self, num_classes: int, dim: int, margin: float = 0.2, miner: str = "all") -> None:
        distance = UnitLpDistance(power=2)
        mine = {"semihard": miners.TripletMarginMiner(margin, "semihard", distance=distance),
                "hard": miners.BatchHardMiner(distance=distance)}.get(miner)
        super().__init__(num_classes, dim, losses.TripletMarginLoss(margin, distance=distance), mine)
        self.mining = miner

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        if self.mining == "hard":
            return self.batch_hard(features, labels)
        if len(labels) ** 3 > (DENSE_TRIPLETS_CPU if features.device.type == "cpu" else DENSE_TRIPLETS):
            return self.listed(features, labels)
        # Every triplet of the B × B × B cube at once, PML's miner test, margin and reducer: the same numbers
        # without its triplet indices (nonzero) and boolean selection, which wait for a GPU.
        distances = self.loss.distance(features)
        positive_pairs, negative_pairs = pair_masks(labels)
        with torch.no_grad():  # which triplets count: the cube is compared, never differentiated
            # d(a, p) − d(a, n), NaN (never true) unless p is a positive and n a negative of a
            gap = self.loss.distance.margin(distances.masked_fill(~positive_pairs, torch.nan)[:, :, None],
                                            distances.masked_fill(~negative_pairs, torch.nan)[:, None, :])
            # PML's AvgNonZeroReducer counts [gap + m]₊ > 0, which in floats is exactly gap > −m; semi-hard
            # adds TripletMarginMiner's 0 < −gap ≤ m, which leaves gap < 0.
            counted = gap > -self.loss.margin
            if self.mining == "semihard":
                counted &= gap < 0
            counted = counted.to(distances.dtype)
            per_positive, per_negative = counted.sum(2), counted.sum(1)
            count = per_positive.sum()
        # Σ over the counted (a, p, n) of d(a, p) − d(a, n) + m, as two B × B sums weighted by how many
        # counted triplets hold each pair: a gradient through B² distances, not B³ differences.
        total = self.loss.distance.margin((distances * per_positive).sum(), (distances * per_negative).sum())
        value = (total + self.loss.margin * count) / count.clamp(min=1)
        return LossOutput(value, active={"triplets": count / pair_counts(labels)[2].clamp(min=1)})

    def batch_hard(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        """PML's BatchHardMiner and TripletMarginLoss on the B × B matrix: each anchor with a positive and a
        negative, its farthest positive and nearest negative. A tie's gradient goes to one sample, as PML's
        indices send it; picked through a mask, as the backward of ``max(dim)`` scatters, which waits."""
        distances = self.loss.distance(features)
        positive_pairs, negative_pairs = pair_masks(labels)
        fixed = distances.detach()
        columns = torch.arange(len(labels), device=labels.device)
        farthest = fixed.masked_fill(~positive_pairs, -torch.inf).argmax(dim=1)
        nearest = fixed.masked_fill(~negative_pairs, torch.inf).argmin(dim=1)
        farthest_positive = pick(distances, columns == farthest[:, None])
        nearest_negative = pick(distances, columns == nearest[:, None])
        anchors = positive_pairs.any(1) & negative_pairs.any(1)
        violation = self.loss.distance.margin(farthest_positive, nearest_negative) + self.loss.margin
        value, count = mean_above_zero(torch.relu(violation), anchors)
        return LossOutput(value, active={"triplets": count / pair_counts(labels)[2].clamp(min=1)})

    def active(self, loss_dict: dict[str, Any], labels: torch.Tensor,
               mined: tuple[torch.Tensor, ...] | None) -> dict[str, torch.Tensor]:
        # Out of all the batch's triplets, so that a miner's selection counts as well as the margin.
        return {"triplets": nonzero_share(loss_dict["loss"], pair_counts(labels)[2])}


@register(
    LossSpec(
        name="multi-similarity",
        display_name="Multi-Similarity loss",
        family="pair",
        description=(
            "Works on cosine similarities of normalised features. Every anchor softly weights all its "
            "positives and negatives at once, the hardest ones most (a soft-max over each set), after "
            "mining the pairs that are informative relative to the others. Classes become tight arcs on "
            "the circle (caps on the sphere) whose similarity to other classes is pushed below the "
            "threshold lambda, so the gaps between classes open wide."
        ),
        formula=(r"L = \frac1N\sum_i \Big[\tfrac1\alpha \log\big(1+\sum_{j\in P_i} e^{-\alpha(S_{ij}-\lambda)}\big)"
                 r" + \tfrac1\beta \log\big(1+\sum_{k\in N_i} e^{\beta(S_{ik}-\lambda)}\big)\Big],"
                 r"\ P_i, N_i\ \text{the mined positives and negatives of } i"),
        paper=Paper("Wang, Han, Huang, Dong, Scott", "Multi-Similarity Loss with General Pair Weighting for "
                    "Deep Metric Learning", "CVPR", 2019, "1904.06627"),
        hparams=(
            Param("alpha", 2.0, 0.01, 100.0, help="Scale of the positive term: how sharply the least "
                  "similar positives dominate."),
            Param("beta", 50.0, 0.01, 200.0, help="Scale of the negative term: how sharply the most "
                  "similar negatives dominate (the official code uses 40, PML and Proxy-Anchor's code 50)."),
            Param("lambda", 0.5, -1.0, 1.0, help="Similarity threshold: positives are pulled above it, "
                  "negatives pushed below it (PML calls it base)."),
            Param("mining", True, help="Keep only the informative pairs first, as the paper does: negatives "
                  "more similar than the least similar positive minus epsilon, positives less similar than "
                  "the most similar negative plus epsilon."),
            Param("epsilon", 0.1, 0.0, 1.0, help="Slack of the mining step (only used with mining)."),
        ),
        normalized=True,
        learns="none",
        implementation=(
            "pytorch-metric-learning MultiSimilarityLoss(alpha, beta, base=lambda) on cosine similarity, "
            "averaged over anchors, with MultiSimilarityMiner(epsilon)'s rule when mining is on; miner and "
            "loss computed on masks of all pairs, tested equal to PML's index lists"
        ),
        dims="any; 2-D shows arcs on the circle, 3-D caps on the sphere",
        pitfalls=(
            "With 10 classes on the 2-D circle neighbouring classes cannot all be below a similarity of 0.5 "
            "(36 degrees apart is a cosine of 0.81), so the negative term never vanishes; it still spreads "
            "the classes evenly, but with beta = 50 the single closest negative dominates and in 2-D "
            "neighbouring classes end up merged; the 2-D preset softens it to beta = 4. With mining, an "
            "anchor whose positives are all more similar than its negatives by epsilon drops out of the loss."
        ),
        recommended={
            2: {"feature_dim": 2, "lr": 0.001, "loss_params": {"beta": 4.0}},
            3: {"feature_dim": 3, "lr": 0.001},
        },
        needs_pairs=True,
    )
)
class MultiSimilarityLoss(PMLPairLoss):
    def __init__(self, num_classes: int, dim: int, alpha: float = 2.0, beta: float = 50.0, mining: bool = True,
                 epsilon: float = 0.1, **hp: float) -> None:
        miner = miners.MultiSimilarityMiner(epsilon, distance=UnitCosineSimilarity()) if mining else None
        loss = SplitMultiSimilarityLoss(alpha, beta, hp["lambda"], distance=UnitCosineSimilarity())
        super().__init__(num_classes, dim, loss, miner)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        # PML's miner, pair loss and reducers on masks of all pairs: the same numbers, without the pair
        # indices (nonzero) and index writes that wait for a GPU.
        similarities = self.loss.distance(features)
        all_positive, all_negative = pair_masks(labels)
        positive_pairs, negative_pairs = all_positive, all_negative
        if self.miner is not None:
            positive_pairs, negative_pairs = informative_pairs(similarities.detach(), all_positive, all_negative,
                                                               self.miner.epsilon)
        parts = self.loss._compute_loss(similarities, positive_pairs, negative_pairs)
        # PML's GenericPairLoss: at most one positive and one negative pair is a zero loss.
        counted = ((positive_pairs.sum() > 1) | (negative_pairs.sum() > 1)).to(similarities.dtype)
        pos, neg = (parts[name]["losses"].mean() * counted for name in ("pos_loss", "neg_loss"))
        out = LossOutput(pos + neg, terms={"positive": pos, "negative": neg})
        if self.miner is not None:  # without mining every pair is in the soft-max of its anchor
            out.active = {"positive pairs": positive_pairs.sum() / all_positive.sum().clamp(min=1),
                          "negative pairs": negative_pairs.sum() / all_negative.sum().clamp(min=1)}
        return out

    def active(self, loss_dict: dict[str, Any], labels: torch.Tensor,
               mined: tuple[torch.Tensor, ...] | None) -> dict[str, torch.Tensor]:
        if mined is None:
            return {}
        positives, negatives, _ = pair_counts(labels)
        return {"positive pairs": positives.new_tensor(len(mined[0])) / positives.clamp(min=1),
                "negative pairs": negatives.new_tensor(len(mined[2])) / negatives.clamp(min=1)}


def informative_pairs(similarities: torch.Tensor, positive_pairs: torch.Tensor, negative_pairs: torch.Tensor,
                      epsilon: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PML's MultiSimilarityMiner as masks: the positives less similar than the anchor's most similar
    negative plus epsilon, the negatives more similar than its least similar positive minus epsilon."""
    most_similar_negative = similarities.masked_fill(~negative_pairs, -torch.inf).amax(1, keepdim=True)
    least_similar_positive = similarities.masked_fill(~positive_pairs, torch.inf).amin(1, keepdim=True)
    return (positive_pairs & (similarities - epsilon < most_similar_negative),
            negative_pairs & (similarities + epsilon > least_similar_positive))


class SplitMultiSimilarityLoss(losses.MultiSimilarityLoss):
    """PML's MultiSimilarityLoss with its positive and negative terms as two sub-losses.

    PML returns their sum per anchor; apart, each is averaged over the anchors (the mean of the
    sum, split), so that the engine can show them side by side. The terms are PML's own lines.
    """

    def _compute_loss(self, mat: torch.Tensor, pos_mask: torch.Tensor,
                      neg_mask: torch.Tensor) -> dict[str, dict[str, Any]]:
        pos_exp = self.distance.margin(mat, self.base)
        neg_exp = self.distance.margin(self.base, mat)
        pos_loss = (1.0 / self.alpha) * lmu.logsumexp(self.alpha * pos_exp, keep_mask=pos_mask.bool(), add_one=True)
        neg_loss = (1.0 / self.beta) * lmu.logsumexp(self.beta * neg_exp, keep_mask=neg_mask.bool(), add_one=True)
        anchors = c_f.torch_arange_from_size(mat)
        return {"pos_loss": {"losses": pos_loss, "indices": anchors, "reduction_type": "element"},
                "neg_loss": {"losses": neg_loss, "indices": anchors, "reduction_type": "element"}}

    def _sub_loss_names(self) -> list[str]:
        return ["pos_loss", "neg_loss"]


@register(
    LossSpec(
        name="supcon",
        display_name="Supervised contrastive (SupCon)",
        family="pair",
        description=(
            "Each normalised feature is asked to pick out the other samples of its class among all the "
            "samples of the batch, through a soft-max over cosine similarities divided by a temperature. "
            "All same-class samples attract, all others repel, with the nearest negatives repelling "
            "most: classes shrink into tight arcs (caps in 3-D) spread evenly over the circle or sphere."
        ),
        formula=(r"L = \frac1N\sum_i \frac{-1}{|P(i)|}\sum_{p\in P(i)} \log "
                 r"\frac{e^{\hat f_i^\top \hat f_p/\tau}}{\sum_{a\ne i} e^{\hat f_i^\top \hat f_a/\tau}}"),
        paper=Paper("Khosla, Teterwak, Wang, Sarna, Tian, Isola, Maschinot, Liu, Krishnan",
                    "Supervised Contrastive Learning", "NeurIPS", 2020, "2004.11362"),
        hparams=(
            Param("temperature", 0.1, 0.01, 1.0, help="tau: smaller values weight the hardest negatives "
                  "more and pack classes tighter (the paper's best is 0.1; its code defaults to 0.07)."),
        ),
        normalized=True,
        learns="none",
        implementation=(
            "pytorch-metric-learning SupConLoss(temperature) on cosine similarity, single view: the other "
            "samples of the batch with the same label are the positives; averaged over all anchors (PML's "
            "MeanReducer: the paper sums over anchors, its official code HobbitLong/SupContrast takes the "
            "mean), where PML's default AvgNonZeroReducer leaves out anchors whose loss underflows to 0 in "
            "float32 and inflates the loss. An anchor without a positive counts 0, as in the official code "
            "(the class-balanced batches of pair losses have none)"
        ),
        dims="any; 2-D shows arcs on the circle, 3-D caps on the sphere",
        pitfalls=(
            "The paper trains on two augmented views per image, large batches and a projection head "
            "that is thrown away afterwards; here one view of each image and the plotted features "
            "themselves are used, so the loss works on the labelled pairs of the batch only. Very small "
            "temperatures make the soft-max nearly hard and training noisy; large ones leave classes "
            "spread out."
        ),
        recommended={
            2: {"feature_dim": 2, "lr": 0.001, "loss_params": {"temperature": 0.1}},
            3: {"feature_dim": 3, "lr": 0.001, "loss_params": {"temperature": 0.1}},
        },
        needs_pairs=True,
    )
)
class SupConLoss(PMLPairLoss):
    def __init__(self, num_classes: int, dim: int, temperature: float = 0.1) -> None:
        # A plain mean over anchors, as the paper's sum and the official code's mean: PML's default
        # (AvgNonZeroReducer) leaves out anchors whose loss underflows to 0 and inflates the loss.
        loss = losses.SupConLoss(temperature, reducer=MeanReducer(), distance=UnitCosineSimilarity())
        super().__init__(num_classes, dim, loss)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        # PML's SupConLoss._compute_loss step for step on masks of all pairs, with its "no positive or no
        # negative pair: zero" test as a factor: the same numbers, without its index lists and host tests.
        loss = self.loss
        similarities = loss.distance(features)
        positive_pairs, negative_pairs = pair_masks(labels)
        scores = (similarities if loss.distance.is_inverted else -similarities) / loss.temperature
        scores = scores - scores.max(dim=1, keepdim=True).values.detach()  # numerical stability, as PML
        kept = positive_pairs | negative_pairs
        denominator = torch.logsumexp(scores.masked_fill(~kept, torch.finfo(scores.dtype).min), dim=1,
                                      keepdim=True).masked_fill(~kept.any(1, keepdim=True), 0)
        positive = positive_pairs.to(scores.dtype)
        mean_log_prob_pos = (positive * (scores - denominator)).sum(1) / (
            positive.sum(1) + torch.finfo(scores.dtype).tiny)
        counts = (positive_pairs.any() & negative_pairs.any()).to(scores.dtype)
        return LossOutput(-mean_log_prob_pos.mean() * counts)


@register(
    LossSpec(
        name="circle",
        display_name="Circle loss",
        family="pair",
        description=(
            "Cosine similarities of normalised features: within-class similarities are pushed up towards "
            "1 − m and between-class ones down towards m, each weighted by how far it is from its optimum, "
            "so pairs that are already good stop pulling. The decision boundary is a circle in the plane "
            "of (negative, positive) similarity. Classes become tight arcs (caps in 3-D) with wide gaps."
        ),
        formula=(r"L = \frac1N\sum_i \ell_i,\quad \ell_i = \log\Big[1 + "
                 r"\sum_{j\in N_i} e^{\gamma a_n^j (s_n^j - m)} \sum_{k\in P_i} e^{-\gamma a_p^k (s_p^k - 1 + m)}\Big],"
                 r"\ a_p = [1 + m - s_p]_+,\ a_n = [s_n + m]_+\ \text{(constants)}"),
        paper=Paper("Sun, Cheng, Zhang, Zhang, Zheng, Wang, Wei", "Circle Loss: A Unified Perspective of Pair "
                    "Similarity Optimization", "CVPR", 2020, "2002.10857"),
        hparams=(
            Param("m", 0.4, 0.0, 1.0, help="Relaxation margin: positives aim above 1 − m, negatives below m "
                  "(the paper: 0.25 for faces, 0.4 for fine-grained retrieval)."),
            Param("gamma", 80.0, 1.0, 512.0, help="Scale of the similarities (the paper: 256 for faces, 80 "
                  "for fine-grained retrieval)."),
        ),
        normalized=True,
        learns="none",
        implementation=(
            "pytorch-metric-learning CircleLoss(m, gamma) on cosine similarity, pair-wise form, averaged "
            "over all anchors (PML's MeanReducer, as fast-reid's pairwise_circleloss): PML's default "
            "AvgNonZeroReducer leaves out anchors whose loss underflows to 0 in float32 (γ·m² large), which "
            "inflates the loss. An anchor without a positive or a negative in the batch counts 0 (the "
            "class-balanced batches of pair losses have none). Computed on masks of all pairs, tested equal "
            "to PML's boolean selections"
        ),
        dims="any; 2-D shows arcs on the circle, 3-D caps on the sphere",
        pitfalls=(
            "The decision boundary is s_n² + (s_p − 1)² = 2m²: a tight class (s_p = 1) accepts negatives up to "
            "a similarity of √2·m. On the 2-D circle with 10 classes, neighbours 36 degrees apart have cosine "
            "0.81, above √2·0.4 = 0.57: the loss never reaches zero and several classes stay merged. The 2-D "
            "preset relaxes m to 0.6 (up to 0.85, which 10 classes can meet); from m = 0.71 on, √2·m passes 1 "
            "and merged classes satisfy the loss (m = 0.8: 64.6 % test accuracy after three epochs of MNIST, "
            "78.2 % at 0.6). A large gamma makes "
            "the loss and its gradients large (the loss grows like gamma times the worst violation) and "
            "training jumpy; the presets use gamma = 32."
        ),
        recommended={
            2: {"feature_dim": 2, "lr": 0.001, "loss_params": {"m": 0.6, "gamma": 32.0}},
            3: {"feature_dim": 3, "lr": 0.001, "loss_params": {"m": 0.4, "gamma": 32.0}},
        },
        needs_pairs=True,
    )
)
class CircleLoss(PMLPairLoss):
    def __init__(self, num_classes: int, dim: int, m: float = 0.4, gamma: float = 80.0) -> None:
        # A plain mean over anchors (the paper's per-anchor loss averaged over the batch, as fast-reid's
        # pairwise_circleloss does); PML's default AvgNonZeroReducer drops anchors whose loss underflows to 0.
        loss = losses.CircleLoss(m, gamma, reducer=MeanReducer(), distance=UnitCosineSimilarity())
        super().__init__(num_classes, dim, loss)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        # PML's CircleLoss._compute_loss on masks of all pairs: the same numbers, without its boolean
        # selections, index writes and pair indices, which wait for a GPU.
        loss = self.loss
        similarities = loss.distance(features)
        positive_pairs, negative_pairs = pair_masks(labels)
        fixed = similarities.detach()  # the weights a_p and a_n are constants
        logits = torch.where(
            positive_pairs, -loss.gamma * torch.relu(loss.op - fixed) * (similarities - loss.delta_p),
            torch.where(negative_pairs, loss.gamma * torch.relu(fixed - loss.on) * (similarities - loss.delta_n), 0))
        per_anchor = loss.soft_plus(lmu.logsumexp(logits, positive_pairs, add_one=False)
                                    + lmu.logsumexp(logits, negative_pairs, add_one=False)).squeeze(1)
        per_anchor = per_anchor * (positive_pairs.any(1) & negative_pairs.any(1))
        # PML's GenericPairLoss: at most one positive and one negative pair is a zero loss.
        counted = (positive_pairs.sum() > 1) | (negative_pairs.sum() > 1)
        return LossOutput(per_anchor.mean() * counted)
