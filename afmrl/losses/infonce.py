"""Symmetric InfoNCE (CLIP).

Inputs: ``a``, ``b`` (B, d) L2-normalised; row i of each is a positive pair, every other row of the
batch is a negative.

    L = 1/2 [ CE(a b^T / tau, I) + CE(b a^T / tau, I) ]

tau is learnable (CLIP's log-parametrised logit scale, clamped at 100) or fixed.
Reference: Radford et al., "Learning Transferable Visual Models From Natural Language
Supervision", ICML 2021; open_clip's ``ClipLoss``.

With mined negatives (``mined_b`` (B, K, d) and ``mined_valid`` (B, K) bool, :mod:`afmrl.training.mining`)
each anchor a_i also meets its own K negatives in the a->b direction, each counted once
(sentence-transformers' ``MultipleNegativesRankingLoss`` with hard-negative columns).

Example::

    loss = InfoNCELoss(temperature=0.05)(img_emb, txt_emb)
    loss = InfoNCELoss()(img_emb, txt_emb, mined_b=neg_emb, mined_valid=neg_idx >= 0)
"""

from __future__ import annotations

import torch
from torch import nn

from afmrl.losses.core import Temperature, unit_mined, weighted_contrastive


class InfoNCELoss(nn.Module):
    def __init__(self, temperature: float = 0.05, learnable: bool = True) -> None:
        super().__init__()
        self.temperature = Temperature(temperature, learnable)

    def forward(self, a: torch.Tensor, b: torch.Tensor, *, mined_b: torch.Tensor | None = None,
                mined_valid: torch.Tensor | None = None, **_: object) -> torch.Tensor:  # fmt: skip
        return weighted_contrastive(a, b, self.temperature(), mined=unit_mined(mined_b, mined_valid))
