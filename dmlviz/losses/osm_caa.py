"""OSM + CAA weighted contrastive loss (Wang et al., AAAI 2019), with its classifier branch."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dmlviz.losses.base import FeatureLoss, LossOutput, LossSpec, Paper, Param, class_mask, pick, unit
from dmlviz.losses.registry import register

#: Centre of the attention Gaussian on the true-class probability, from the authors' code.
CAA_MEAN = 1.0


@register(
    LossSpec(
        name="osm-caa",
        display_name="OSM + CAA weighted contrastive",
        family="pair",
        description=(
            "A contrastive loss on L2-normalised features in which every pair gets a soft weight. Online "
            "soft mining weights near positive pairs most (a Gaussian of their distance), so a class may "
            "stay an extended arc instead of collapsing to a point, and negatives by how far they are "
            "inside the margin. Class-aware attention, from a softmax classifier on the same features, "
            "gives little weight to pairs with a sample the classifier finds implausible for its label "
            "(outliers, wrong labels). On the circle or sphere classes form arcs or caps at least "
            "alpha apart; the classifier's weight vectors point into them."
        ),
        formula=(
            r"L = (1-\lambda)\,\frac{\sum_{P} w_{ij}\, \tfrac12 d_{ij}^2}{\sum_{P} w_{ij}} "
            r"+ \lambda\,\frac{\sum_{N} w_{ij}\, \tfrac12 [\alpha - d_{ij}]_+^2}{\sum_{N} w_{ij}} + CE(W\hat f + b, y),"
            r"\ w_{ij} = \mathrm{sg}\big[s_{ij}\min(a_i, a_j)\big],\ s^+_{ij} = e^{-d_{ij}^2/\sigma_{OSM}^2},\ "
            r"s^-_{ij} = [\alpha - d_{ij}]_+,\ a_i = e^{-(p_i - 1)^2 / 2\sigma_{CAA}^2}"
        ),
        paper=Paper("Wang, Hua, Kodirov, Hu, Robertson", "Deep Metric Learning by Online Soft Mining and "
                    "Class-Aware Attention", "AAAI", 2019, "1811.01459"),
        hparams=(
            Param("alpha", 1.2, 0.01, 2.0, help="Margin: negative pairs closer than alpha (a distance between "
                  "unit vectors, at most 2; 1.2 is about 74 degrees) are pushed apart and weighted by how "
                  "deep inside they are."),
            Param("sigma_osm", 0.8, 0.05, 5.0, help="Width of the positive weights exp(−d²/σ²), the paper's "
                  "form; smaller values concentrate the pull on the nearest positives. The authors' Caffe "
                  "code writes exp(−d²/2σ²) with σ = 0.8, which is σ ≈ 1.13 here."),
            Param("lambda", 0.5, 0.0, 1.0, help="Balance of the negative term against the positive term."),
            Param("sigma_caa", 0.68, 0.01, 10.0, help="Width of the attention Gaussian on the classifier's "
                  "probability of the true class (centred at 1, from the authors' code; the paper's "
                  "sigma_CAA = 0.18 is, in that code, the width of a sample weighting of the classifier's "
                  "loss instead). Large values give every sample the same attention (plain OSM)."),
        ),
        normalized=True,
        learns="weights",
        implementation=(
            "dmlviz (pytorch-metric-learning has no OSM/CAA): OSM weights in the paper's form, CAA and the "
            "per-set weight normalisation as in the authors' Caffe layer (distance_weighted_valid_pair_loss_V5), "
            "weights detached (they only rescale pair gradients there); the classifier branch is a linear "
            "softmax layer on the normalised feature trained with plain cross-entropy (the authors' "
            "prototxts also weight its per-sample losses, which is not done here)"
        ),
        dims="any; 2-D shows arcs on the circle, 3-D caps on the sphere",
        pitfalls=(
            "Distances are between unit vectors, so alpha must stay below 2 (1.2 is about 74 degrees): "
            "with 10 classes on the 2-D circle neighbours are only 36 degrees (distance 0.62) apart, so "
            "many negative pairs stay inside the margin and the negative term never vanishes. The "
            "attention comes from a classifier that starts untrained: early on every probability is "
            "about 1/C and all pairs get nearly the same attention; on unit vectors its logits can only "
            "grow with its weights, so give it a larger loss_lr (the presets use 10 times the network's) "
            "or its accuracy lags far behind the geometry. A sigma_osm much larger than 2 makes "
            "all positive weights equal (a plain contrastive pull)."
        ),
        recommended={
            2: {"feature_dim": 2, "lr": 0.001, "loss_lr": 0.01},
            3: {"feature_dim": 3, "lr": 0.001, "loss_lr": 0.01},
        },
        needs_pairs=True,
    )
)
class OSMCAALoss(FeatureLoss):
    def __init__(self, num_classes: int, dim: int, alpha: float = 1.2, sigma_osm: float = 0.8,
                 sigma_caa: float = 0.68, **hp: float) -> None:
        super().__init__(num_classes, dim)
        self.alpha = alpha
        self.sigma_osm = sigma_osm
        self.sigma_caa = sigma_caa
        self.balance = float(hp["lambda"])
        self.classifier = nn.Linear(dim, num_classes)

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(unit(features))

    def class_vectors(self) -> dict[str, torch.Tensor]:
        return {"weights": self.classifier.weight}

    def attention(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """CAA a_i: a Gaussian (centred at 1) of the classifier's probability of the true class."""
        p = pick(logits.softmax(1), class_mask(labels, logits.shape[1]))
        return torch.exp(-((p - CAA_MEAN) ** 2) / (2 * self.sigma_caa**2))

    def pair_weights(self, sq_dist: torch.Tensor, dist: torch.Tensor, same: torch.Tensor,
                     attention: torch.Tensor) -> torch.Tensor:
        """w_ij = OSM score × min(a_i, a_j): Gaussian of the distance for positives, [alpha − d]+ for negatives."""
        osm = torch.where(same, torch.exp(-sq_dist / self.sigma_osm**2), (self.alpha - dist).clamp(min=0))
        return osm * torch.minimum(attention[:, None], attention[None, :])

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> LossOutput:
        f = unit(features)
        logits = self.classifier(f)
        # Unit vectors: |f_i - f_j|² = 2 - 2 f_i·f_j; the clamp keeps sqrt's gradient finite at d = 0.
        sq_dist = (2 - 2 * f @ f.T).clamp(min=0)
        dist = sq_dist.clamp(min=1e-12).sqrt()
        same = labels[:, None] == labels[None, :]
        off_diagonal = ~torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        pos, neg = same & off_diagonal, ~same
        # The weights only rescale each pair's gradient (as in the authors' Caffe layer): constants here.
        with torch.no_grad():
            w = self.pair_weights(sq_dist, dist, same, self.attention(logits, labels))
        w_pos, w_neg = w * pos, w * neg
        pull = (w_pos * 0.5 * sq_dist).sum() / w_pos.sum().clamp(min=1e-12)
        push = (w_neg * 0.5 * (self.alpha - dist).clamp(min=0) ** 2).sum() / w_neg.sum().clamp(min=1e-12)
        positive, negative = (1 - self.balance) * pull, self.balance * push
        softmax = F.cross_entropy(logits, labels)
        # A negative pair inside the margin alpha is pushed; the others add nothing.
        pushed = ((dist < self.alpha) & neg).sum() / neg.sum().clamp(min=1)
        return LossOutput(positive + negative + softmax, logits,
                          terms={"positive": positive, "negative": negative, "softmax": softmax},
                          active={"negative pairs": pushed})
