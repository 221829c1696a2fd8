"""Oracle: AGCL's false-negative masking from the true product ids (an upper bound, benchmarks only).

Inputs: ``a``, ``b`` (B, d) L2-normalised; ``product_ids`` (B,) int tensor, -1 for unknown.
w_ij = 0 when i != j share a known product id, else 1 (optionally those pairs become positives).
Uses labels the other methods never see: report it, never ship it. Across processes the product ids
are gathered, so the mask spans the global batch (:mod:`afmrl.losses.distributed`).

Example::

    loss = OracleLoss()(img, txt, product_ids=torch.tensor([0, 0, 1]))
"""

from __future__ import annotations

import torch
from torch import nn

from afmrl.losses.core import Temperature, unit_mined, weighted_contrastive
from afmrl.losses.distributed import gather_items


def same_product(product_ids: torch.Tensor) -> torch.Tensor:
    known = product_ids >= 0
    same = (product_ids[:, None] == product_ids[None, :]) & known[:, None] & known[None, :]
    same.fill_diagonal_(False)
    return same


class OracleLoss(nn.Module):
    def __init__(self, temperature: float = 0.05, learnable: bool = True, as_positive: bool = False) -> None:
        super().__init__()
        self.temperature = Temperature(temperature, learnable)
        self.as_positive = as_positive

    def forward(self, a: torch.Tensor, b: torch.Tensor, *, product_ids: torch.Tensor,
                mined_b: torch.Tensor | None = None, mined_valid: torch.Tensor | None = None,
                **_: object) -> torch.Tensor:  # fmt: skip
        """``mined_b``: each anchor's mined negatives (other products by construction: counted once)."""
        same = same_product(gather_items(product_ids))
        return weighted_contrastive(a, b, self.temperature(), weights=(~same).to(a.dtype),
                                    positives=same if self.as_positive else None,
                                    mined=unit_mined(mined_b, mined_valid))  # fmt: skip
