"""The shared core: a symmetric contrastive loss with per-pair negative weights and extra positives.

For similarity logits s_ij = a_i . b_j / tau, positive set P_i (always containing i) and negative
weights w_ij >= 0 (0 masks the pair out of the denominator):

    L_i^{a->b} = -log( sum_{j in P_i} exp(s_ij) / ( sum_{j in P_i} exp(s_ij) + sum_{j not in P_i} w_ij exp(s_ij) ) )

and L = (mean_i L_i^{a->b} + mean_i L_i^{b->a}) / 2, where the b->a direction uses the transposed
logits and transposed weights/positives. Computed in log space (log w = -inf for masked pairs).
With w = 1 everywhere and P_i = {i} this is CLIP's symmetric InfoNCE.

Generalisations (:func:`weighted_contrastive_blocks`, :func:`block_direction`): positives with a
weight p_ij in (0, 1] (the numerator sums p_ij exp(s_ij)), and candidates in several blocks: the
cross-modal a b^T and the intra-modal a a^T (resp. b b^T for the b->a direction), each block with its
own weights, all in one softmax per anchor. GIST's one-directional loss is one such direction with
the blocks a b^T, a a^T, b b^T.

Mined negatives (``mined=(n, w)``, :mod:`afmrl.training.mining`): each anchor a_i also meets its own K
negatives n_i1..n_iK (catalogue-wide neighbours of other products, mined before training), each with
a weight w_ik (0 masks it), in the a->b direction: one more block of logits a_i . n_ik / tau in the same
softmax (sentence-transformers' ``MultipleNegativesRankingLoss`` with hard-negative columns, each
anchor against its own). They are this process's rows only: nothing is gathered for them.

Across processes (``torchrun`` / ``accelerate launch``, :mod:`afmrl.losses.distributed`): ``a`` and
``b`` are this process's rows; they are gathered with their gradient, ``weights`` / ``positives``
are the *global* (N, N) matrices (N = world size x local rows; each loss builds them from gathered
per-item metadata), and each process averages L_i over its local rows only (both directions against
the global columns). The mean of the processes' losses is the single-process loss on the
concatenated batch and the mean of their parameter gradients is its gradient.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from afmrl.losses.distributed import gather_with_grad, local_rows

Block = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
Mined = tuple[torch.Tensor, torch.Tensor]  # (negatives (n, K, d), their weights (n, K)) of this process's anchors


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


def unit_mined(mined_b: torch.Tensor | None, mined_valid: torch.Tensor | None) -> Mined | None:
    """Mined negatives each counted once (weight 1; 0 where ``mined_valid`` is False: a padded slot)."""
    if mined_b is None:
        return None
    valid = torch.ones(mined_b.shape[:2], dtype=torch.bool, device=mined_b.device) if mined_valid is None \
        else mined_valid.to(torch.bool)  # fmt: skip
    return mined_b, valid.to(mined_b.dtype)


def weighted_contrastive(
    a: torch.Tensor,
    b: torch.Tensor,
    scale: torch.Tensor | float,
    weights: torch.Tensor | None = None,
    positives: torch.Tensor | None = None,
    mined: Mined | None = None,
) -> torch.Tensor:
    """Symmetric weighted InfoNCE. ``weights``/``positives``: (B, B) over the global batch; the
    diagonal is always positive. One block of :func:`weighted_contrastive_blocks` with 0/1 positives
    (and the anchors' ``mined`` negatives)."""
    positive_weights = None if positives is None else positives.to(torch.bool).to(a.dtype)
    return weighted_contrastive_blocks(a, b, scale, weights=weights, positive_weights=positive_weights, mined=mined)




def block_direction(blocks: list[Block]) -> torch.Tensor:
    """One direction of a contrastive loss whose candidates come in several blocks (e.g. the cross
    block a b^T and the intra-modal block a a^T), averaged over the anchor rows.

    Each block is ``(logits, neg_weights, pos_weights)``, all (n, M_k) for the same n anchor rows:
    a candidate with ``pos_weights > 0`` is a positive counted with that weight, every other one a
    negative counted with ``neg_weights`` (0 masks it out). For anchor i:

        L_i = -log( sum_pos p_ij e^{s_ij} / ( sum_pos p_ij e^{s_ij} + sum_neg w_ij e^{s_ij} ) )

    over the candidates of every block. With one block, 0/1 positives and the diagonal positive this is
    :func:`weighted_contrastive`'s direction; with 0/1 negative weights and one positive it is a
    cross-entropy over the concatenated blocks with masked logits at -inf (sentence-transformers'
    ``GISTEmbedLoss``)."""
    pos_parts, neg_parts = [], []
    for logits, neg_w, pos_w in blocks:
        neg_inf = torch.finfo(logits.dtype).min
        is_pos = pos_w > 0
        log_p = torch.where(is_pos, pos_w.to(logits.dtype).clamp(min=1e-30).log(), torch.full_like(logits, neg_inf))
        log_w = torch.where(neg_w > 0, neg_w.to(logits.dtype).clamp(min=1e-30).log(), torch.full_like(logits, neg_inf))
        pos_parts.append((logits + log_p).masked_fill(~is_pos, neg_inf))
        neg_parts.append((logits + log_w).masked_fill(is_pos, neg_inf))
    pos = torch.cat(pos_parts, dim=1)
    numerator = torch.logsumexp(pos, dim=1)
    denominator = torch.logsumexp(torch.cat([pos, *neg_parts], dim=1), dim=1)
    return (denominator - numerator).mean()


def weighted_contrastive_blocks(
    a: torch.Tensor,
    b: torch.Tensor,
    scale: torch.Tensor | float,
    weights: torch.Tensor | None = None,
    positive_weights: torch.Tensor | None = None,
    intra_modal: bool = False,
    mined: Mined | None = None,
) -> torch.Tensor:
    """Symmetric weighted InfoNCE with weighted positives and, optionally, intra-modal negatives.

    ``weights``: (N, N) negative weights (0 masks); ``positive_weights``: (N, N) >= 0, a pair with a
    weight > 0 is an extra positive counted with that weight (the diagonal is always a positive of
    weight 1). ``intra_modal``: the a->b direction also contrasts a_i with every a_j (j != i), the b->a
    direction b_i with every b_j, with the same weights (so a pair masked or made positive across the
    modalities is masked or made positive within each modality too). N is the global batch across
    processes; each process averages over its local rows (:mod:`afmrl.losses.distributed`).
    With ``positive_weights`` in {0, 1} and ``intra_modal=False`` it equals :func:`weighted_contrastive`.
    ``mined``: each local anchor's own negatives and their weights, one more a->b block (module doc)."""
    rows = local_rows(a.shape[0])
    a_all, b_all = gather_with_grad(a), gather_with_grad(b)
    n_all = a_all.shape[0]
    for name, m in (("weights", weights), ("positive_weights", positive_weights)):
        if m is not None and tuple(m.shape) != (n_all, n_all):
            raise ValueError(f"{name}: expected the global ({n_all}, {n_all}) matrix, got {tuple(m.shape)}")
    full_eye = torch.eye(n_all, dtype=torch.bool, device=a.device)
    w = torch.ones(n_all, n_all, dtype=a.dtype, device=a.device) if weights is None else weights.to(a.dtype)
    p = torch.zeros(n_all, n_all, dtype=a.dtype, device=a.device) if positive_weights is None \
        else positive_weights.to(a.dtype)  # fmt: skip
    p = torch.where(full_eye, torch.ones_like(p), p)
    eye = full_eye[rows]
    off = (~eye).to(a.dtype)
    ab_blocks: list[Block] = [((a @ b_all.T) * scale, w[rows], p[rows])]
    ba_blocks: list[Block] = [((b @ a_all.T) * scale, w.T[rows], p.T[rows])]
    if intra_modal:  # the diagonal (the item itself) is neither a positive nor a negative
        ab_blocks.append(((a @ a_all.T) * scale, w[rows] * off, p[rows] * off))
        ba_blocks.append(((b @ b_all.T) * scale, w.T[rows] * off, p.T[rows] * off))
    if mined is not None:
        negatives, neg_w = mined
        if negatives.shape[:2] != neg_w.shape or negatives.shape[0] != a.shape[0]:
            raise ValueError(f"mined: negatives {tuple(negatives.shape)} and weights {tuple(neg_w.shape)} must be "
                             f"(n, K, d) and (n, K) for the {a.shape[0]} local anchors")  # fmt: skip
        logits = torch.einsum("nd,nkd->nk", a, negatives.to(a.dtype)) * scale
        ab_blocks.append((logits, neg_w.to(a.dtype), torch.zeros_like(logits)))
    return 0.5 * (block_direction(ab_blocks) + block_direction(ba_blocks))
