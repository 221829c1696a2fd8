"""GIST-style guided in-batch negatives.

Inputs: ``a``, ``b`` (B, d) L2-normalised embeddings of the model being trained, and
``guide_a``, ``guide_b`` (B, d') embeddings of the same items by a frozen guide model.
With guide similarities g_ij = guide_a_i . guide_b_j, a negative j of anchor i is masked out of the
denominator (w_ij = 0) when the guide rates it at least as close as the positive:

    absolute margin:  g_ij > g_ii - margin
    relative margin:  g_ij > g_ii * (1 - margin)

the diagonal is never masked; the rest is :func:`afmrl.losses.core.weighted_contrastive` (both
directions, each with its own guide matrix orientation). Across processes the guide embeddings are
gathered, so the mask spans the global batch (:mod:`afmrl.losses.distributed`).
Reference: Solatorio, "GISTEmbed: Guided In-sample Selection of Training Negatives for Text
Embedding Fine-tuning", 2024; sentence-transformers' ``GISTEmbedLoss``.

Example::

    loss = GISTLoss(margin=0.0)(img, txt, guide_a=zs_img, guide_b=zs_txt)
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from afmrl.losses.core import Temperature, weighted_contrastive
from afmrl.losses.distributed import gather_items


def gist_mask(guide_a: torch.Tensor, guide_b: torch.Tensor, margin: float = 0.0,
              strategy: Literal["absolute", "relative"] = "absolute") -> torch.Tensor:  # fmt: skip
    """(B, B) bool: True where the pair is a suspected false negative (to mask)."""
    g = guide_a @ guide_b.T
    pos = g.diagonal().unsqueeze(1)
    threshold = pos - margin if strategy == "absolute" else pos * (1 - margin)
    mask = g > threshold
    mask.fill_diagonal_(False)
    return mask


class GISTLoss(nn.Module):
    def __init__(self, temperature: float = 0.05, learnable: bool = True, margin: float = 0.0,
                 strategy: Literal["absolute", "relative"] = "absolute") -> None:  # fmt: skip
        super().__init__()
        self.temperature = Temperature(temperature, learnable)
        self.margin = margin
        self.strategy = strategy

    def forward(self, a: torch.Tensor, b: torch.Tensor, *, guide_a: torch.Tensor, guide_b: torch.Tensor,
                **_: object) -> torch.Tensor:  # fmt: skip
        guide_a, guide_b = gather_items(guide_a), gather_items(guide_b)
        # a->b rows are anchors of a; b->a rows are anchors of b (the transpose of the b->a guide mask)
        mask_ab = gist_mask(guide_a, guide_b, self.margin, self.strategy)
        mask_ba = gist_mask(guide_b, guide_a, self.margin, self.strategy).T
        weights = (~(mask_ab | mask_ba)).to(a.dtype)
        return weighted_contrastive(a, b, self.temperature(), weights=weights)
