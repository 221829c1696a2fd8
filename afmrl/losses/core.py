"""The shared core: a symmetric contrastive loss with per-pair negative weights and extra positives.

For similarity logits s_ij = a_i . b_j / tau, positive set P_i (always containing i) and negative
weights w_ij >= 0 (0 masks the pair out of the denominator):

    L_i^{a->b} = -log( sum_{j in P_i} exp(s_ij) / ( sum_{j in P_i} exp(s_ij) + sum_{j not in P_i} w_ij exp(s_ij) ) )

and L = (mean_i L_i^{a->b} + mean_i L_i^{b->a}) / 2, where the b->a direction uses the transposed
logits and transposed weights/positives. Computed in log space (log w = -inf for masked pairs).
With w = 1 everywhere and P_i = {i} this is CLIP's symmetric InfoNCE.
"""

from __future__ import annotations

import math

import torch
from torch import nn


class Temperature(nn.Module):
    """Softmax temperature, learnable (as log 1/tau, clamped as in CLIP to 1/tau <= 100) or fixed."""

    def __init__(self, init: float = 0.05, learnable: bool = True) -> None:
        super().__init__()
        value = torch.tensor(math.log(1.0 / init))
        if learnable:
            self.log_scale = nn.Parameter(value)
        else:
            self.register_buffer("log_scale", value)

    def forward(self) -> torch.Tensor:
        return self.log_scale.clamp(max=math.log(100.0)).exp()

    @property
    def tau(self) -> float:
        return float(1.0 / self().detach())


def _direction(logits: torch.Tensor, weights: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    neg_inf = torch.finfo(logits.dtype).min
    pos_logits = logits.masked_fill(~positives, neg_inf)
    log_w = torch.where(weights > 0, weights.clamp(min=1e-30).log(), torch.full_like(weights, neg_inf))
    neg_logits = (logits + log_w).masked_fill(positives, neg_inf)
    numerator = torch.logsumexp(pos_logits, dim=1)
    denominator = torch.logsumexp(torch.cat([pos_logits, neg_logits], dim=1), dim=1)
    return (denominator - numerator).mean()


def weighted_contrastive(
    a: torch.Tensor,
    b: torch.Tensor,
    scale: torch.Tensor | float,
    weights: torch.Tensor | None = None,
    positives: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric weighted InfoNCE. ``weights``/``positives``: (B, B); the diagonal is always positive."""
    n = a.shape[0]
    logits = (a @ b.T) * scale
    eye = torch.eye(n, dtype=torch.bool, device=a.device)
    w = torch.ones_like(logits) if weights is None else weights.to(logits.dtype)
    p = eye if positives is None else (positives.to(torch.bool) | eye)
    return 0.5 * (_direction(logits, w, p) + _direction(logits.T, w.T, p.T))
