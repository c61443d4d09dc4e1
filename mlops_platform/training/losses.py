"""Training losses: cross entropy with label smoothing, and focal loss for imbalanced classes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017, https://arxiv.org/abs/1708.02002): mean of -(1 - p_t)^gamma * log p_t.

    Down-weights examples the model already gets right, so rare classes keep contributing gradient.
    gamma = 0 is exactly cross entropy.
    """

    def __init__(self, gamma: float = 2.0) -> None:
        super().__init__()
        if gamma < 0:
            raise ValueError(f"focal gamma={gamma} must be >= 0")
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        # Computed in float32 even under autocast: pow/exp of low-precision log-probs loses the small
        # probabilities that focal loss exists to weight.
        log_probs = F.log_softmax(logits.float(), dim=-1)
        log_pt = log_probs.gather(1, targets.unsqueeze(1)).squeeze(1)
        weight = (1.0 - log_pt.exp()).clamp_min(0.0).pow(self.gamma)
        return -(weight * log_pt).mean()


def build_loss(name: str, *, label_smoothing: float = 0.0, focal_gamma: float = 2.0) -> nn.Module:
    """The loss a config names; raises ValueError for an unknown name."""
    if name == "cross_entropy":
        return nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    if name == "focal":
        return FocalLoss(focal_gamma)
    raise ValueError(f"loss={name!r} is not one of cross_entropy, focal")
