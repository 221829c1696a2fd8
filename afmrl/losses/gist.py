"""GISTEmbed: guided in-sample selection of negatives, as sentence-transformers' ``GISTEmbedLoss``.

Inputs: ``a`` (anchors), ``b`` (positives), (B, d) L2-normalised embeddings of the model being
trained (row i of ``a`` and row i of ``b`` are a positive pair), and ``guide_a``, ``guide_b`` (B, d')
embeddings of the same items by a frozen guide model (normalised here: the guide compares by cosine).

With s = similarity of the trained model and g = the guide's cosine similarity, the candidates of
anchor a_i are three blocks, as ``GISTEmbedLoss(contrast_anchors=True, contrast_positives=True)``:

    ap: s(a_i, b_j)   aa: s(a_i, a_j)   pp: s(b_i, b_j)

A candidate is masked (logit -inf) when the guide rates it closer to its row than the row's positive,
judged in that block's guide matrix (g(a_i, b_j), g(a_i, a_j), g(b_i, b_j)) against the row's
guided anchor-positive similarity g_i = g(a_i, b_i):

    absolute:  g_block_ij > g_i - margin
    relative:  g_block_ij > g_i - |g_i| * margin

the true positive b_i is never masked, and

    L = mean_i CE( [ap_i, aa_i, pp_i] / tau, target i )

one direction (anchors against candidates), as in sentence-transformers. Deviation, on purpose: the
self-similarities a_i.a_i and b_i.b_i are always excluded; sentence-transformers excludes them only
through the guide (g = 1 > g_i - margin), which holds for any pair whose guide similarity is below
1 - margin but lets a self-similarity into the denominator when the guide sees anchor and positive
as identical (e.g. one guide vector for both sides of an image-text pair).

tau comes from :class:`~afmrl.losses.core.Temperature`: fixed (``learnable=False``; sentence-
transformers' default is 0.01) or learnable. Across processes (:mod:`afmrl.losses.distributed`) the
anchors, positives and guide embeddings are gathered, so every block spans the global batch and the
mean of the processes' losses is the single-process loss on the concatenated batch
(sentence-transformers' ``gather_across_devices`` gathers the positives only, so its anchor-anchor
block stays per device).

Reference: Solatorio, "GISTEmbed: Guided In-sample Selection of Training Negatives for Text Embedding
Fine-tuning", 2024 (arXiv 2402.16829); sentence-transformers' ``GISTEmbedLoss`` (equality tested in
tests/losses/test_loss_parity.py).

Example::

    loss = GISTLoss(temperature=0.01, learnable=False)(title_emb, desc_emb, guide_a=zs_title, guide_b=zs_desc)
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from afmrl.losses.core import Temperature, block_direction
from afmrl.losses.distributed import gather_items, gather_with_grad, local_rows


def gist_mask(guide_rows: torch.Tensor, guide_cols: torch.Tensor, positive_sim: torch.Tensor, margin: float = 0.0,
              strategy: Literal["absolute", "relative"] = "absolute") -> torch.Tensor:  # fmt: skip
    """(n, M) bool: True where the guide rates candidate j at least as close to row i as the row's
    positive (``positive_sim``, (n,), the guided anchor-positive similarity): a suspected false
    negative, to mask. Guides are compared by cosine similarity."""
    g = F.normalize(guide_rows, dim=-1) @ F.normalize(guide_cols, dim=-1).T
    return g > _threshold(positive_sim, margin, strategy)


def mined_guide_mask(guide_rows: torch.Tensor, mined_guide: torch.Tensor, positive_sim: torch.Tensor,
                     margin: float = 0.0, strategy: Literal["absolute", "relative"] = "absolute") -> torch.Tensor:  # fmt: skip
    """(n, K) bool: :func:`gist_mask`'s rule for each row's own K mined negatives (``mined_guide`` (n, K, d'))."""
    g = torch.einsum("nd,nkd->nk", F.normalize(guide_rows, dim=-1), F.normalize(mined_guide, dim=-1))
    return g > _threshold(positive_sim, margin, strategy)


def _threshold(positive_sim: torch.Tensor, margin: float, strategy: str) -> torch.Tensor:
    """(n, 1): the guide similarity above which a candidate counts as close as row i's positive."""
    pos = positive_sim.view(-1, 1)
    return pos - margin if strategy == "absolute" else pos - pos.abs() * margin


def guide_negative_mask(guide_a: torch.Tensor, guide_b: torch.Tensor, margin: float = 0.0,
                        strategy: Literal["absolute", "relative"] = "absolute") -> torch.Tensor:  # fmt: skip
    """(N, N) bool for a symmetric loss's cross block: pair (i, j), i != j, is masked when the guide rates
    b_j closer to a_i than b_i (row i's test) or a_i closer to b_j than a_j (column j's test, the b->a
    direction). Used by AGCL's guided variant (``AGCLLoss(guide_margin=...)``)."""
    ga, gb = F.normalize(guide_a, dim=-1), F.normalize(guide_b, dim=-1)
    pos = (ga * gb).sum(-1)
    mask = gist_mask(ga, gb, pos, margin, strategy) | gist_mask(gb, ga, pos, margin, strategy).T
    mask.fill_diagonal_(False)
    return mask


class GISTLoss(nn.Module):
    def __init__(self, temperature: float = 0.05, learnable: bool = True, margin: float = 0.0,
                 strategy: Literal["absolute", "relative"] = "absolute") -> None:  # fmt: skip
        super().__init__()
        if strategy not in ("absolute", "relative"):
            raise ValueError(f"strategy must be 'absolute' or 'relative', got {strategy!r}")
        self.temperature = Temperature(temperature, learnable)
        self.margin = margin
        self.strategy = strategy

    def forward(self, a: torch.Tensor, b: torch.Tensor, *, guide_a: torch.Tensor, guide_b: torch.Tensor,
                mined_b: torch.Tensor | None = None, mined_valid: torch.Tensor | None = None,
                mined_guide: torch.Tensor | None = None, **_: object) -> torch.Tensor:  # fmt: skip
        """``mined_b`` / ``mined_guide`` (B, K, .): each anchor's mined negatives and their guide vectors,
        one more anchor-negative block (sentence-transformers' hard-negative column), under the same filter."""
        n = a.shape[0]
        rows = local_rows(n)
        a_all, b_all = gather_with_grad(a), gather_with_grad(b)
        ga_all, gb_all = gather_items(guide_a), gather_items(guide_b)
        ga, gb = ga_all[rows], gb_all[rows]
        eye = torch.eye(a_all.shape[0], dtype=torch.bool, device=a.device)[rows]  # row i's own column
        positive_sim = (F.normalize(ga, dim=-1) * F.normalize(gb, dim=-1)).sum(-1)
        scale = self.temperature()

        def block(anchor: torch.Tensor, cands: torch.Tensor, g_rows: torch.Tensor, g_cols: torch.Tensor,
                  positive: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
            masked = gist_mask(g_rows, g_cols, positive_sim, self.margin, self.strategy)
            masked = masked & ~eye if positive else masked | eye  # own positive kept; self-similarity out
            pos_w = (eye if positive else torch.zeros_like(eye)).to(a.dtype)
            return (anchor @ cands.T) * scale, (~masked).to(a.dtype), pos_w

        blocks = [block(a, b_all, ga, gb_all, True),  # anchor-positive
                  block(a, a_all, ga, ga_all, False),  # anchor-anchor
                  block(b, b_all, gb, gb_all, False)]  # positive-positive  # fmt: skip
        if mined_b is not None:
            if mined_guide is None:
                raise ValueError("GIST with mined negatives needs mined_guide (their guide vectors)")
            masked = mined_guide_mask(ga, mined_guide, positive_sim, self.margin, self.strategy)
            if mined_valid is not None:
                masked = masked | ~mined_valid.to(torch.bool)
            logits = torch.einsum("nd,nkd->nk", a, mined_b.to(a.dtype)) * scale
            blocks.append((logits, (~masked).to(a.dtype), torch.zeros_like(logits)))
        return block_direction(blocks)
