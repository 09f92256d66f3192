"""The synthesis objective, term by term.

total = class + r_feature * sum_l w_l * bn_l + tv_l2 * TV_l2(x) + tv_l1 * TV_l1(x) + l2 * mean_n ||x_n||_2
where x is the crop the teacher sees. The class term is cross-entropy to hard labels in round 0
and soft-target cross-entropy (KL divergence plus the targets' entropy) to calibrated
probabilities in rounds k > 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from dfnas.ops import tv_loss


def class_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """CE to int64 class indices (N,), or soft CE -mean_n sum_k p_nk log softmax(logits)_nk to probabilities (N, K)."""
    logits = logits.float()
    if targets.dtype == torch.int64:
        return F.cross_entropy(logits, targets)
    return -(targets * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def l2_prior(x: Tensor) -> Tensor:
    """Mean over the batch of each image's L2 norm."""
    return torch.linalg.vector_norm(x.flatten(1), dim=1).mean()


@dataclass(frozen=True)
class LossWeights:
    r_feature: float
    tv_l2: float
    tv_l1: float
    l2: float


@dataclass(frozen=True)
class LossTerms:
    """Unweighted terms (0-dim tensors) and the weighted total that is minimized."""

    total: Tensor
    class_: Tensor
    bn: Tensor
    tv_l2: Tensor
    tv_l1: Tensor
    l2: Tensor

    def as_floats(self) -> dict[str, float]:
        return {name: float(getattr(self, name).detach()) for name in ("total", "class_", "bn", "tv_l2", "tv_l1", "l2")}


def synthesis_loss(logits: Tensor, targets: Tensor, bn_weighted: Tensor, x: Tensor, weights: LossWeights) -> LossTerms:
    """Combine the class term, the (already layer-weighted) BN term and the image priors on x."""
    zero = x.new_zeros(())
    class_term = class_loss(logits, targets)
    # Priors with weight 0 are skipped: same total, no wasted passes over the crop.
    tv2 = tv_loss(x, "l2") if weights.tv_l2 else zero
    tv1 = tv_loss(x, "l1") if weights.tv_l1 else zero
    l2 = l2_prior(x) if weights.l2 else zero
    total = (
        class_term
        + weights.r_feature * bn_weighted
        + weights.tv_l2 * tv2
        + weights.tv_l1 * tv1
        + weights.l2 * l2
    )
    return LossTerms(total=total, class_=class_term, bn=bn_weighted, tv_l2=tv2, tv_l1=tv1, l2=l2)
