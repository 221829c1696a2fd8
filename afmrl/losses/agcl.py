"""AGCL: Attribute-Guided Contrastive Learning (AFMRL, Zhang et al., Findings of ACL 2026).

Inputs: ``a``, ``b`` (B, d) L2-normalised embeddings (row i: two views of listing i), and
``attr_sim`` (B, B): the attribute similarity of every pair of listings in the batch (weighted
agreement over the key attributes both state, ``afmrl.attributes.similarity``), with
``attr_comparable`` (B, B) bool: whether the pair shares enough stated keys to be compared.

For i != j, with thresholds tau_hard <= tau_fn and weight beta >= 1:

    false negative  F_ij: comparable_ij and attr_sim_ij >= tau_fn     (same key attributes: same product)
    hard negative   H_ij: comparable_ij and tau_hard <= attr_sim_ij < tau_fn  (differ in few attributes)

    w_ij = 0 if F_ij,  beta if H_ij,  1 otherwise
    P_i  = {i} ∪ {j : F_ij}  if fn_as_positive else {i}

    L_i = -log( sum_{j in P_i} e^{s_ij/tau} / ( sum_{j in P_i} e^{s_ij/tau} + sum_{j not in P_i} w_ij e^{s_ij/tau} ) )

averaged over i and over both directions (a->b and b->a). When no pair is comparable (or no pair
reaches tau_hard) every w_ij = 1 and AGCL equals InfoNCE (tested).

Two levers, off by default (then the loss is exactly the one above):

- ``positive_weight`` rho in (0, 1] (with ``fn_as_positive``): a false negative counts in the
  numerator with weight rho, the pair i itself with weight 1 (attribute agreement as a weaker
  positive than identity):

      L_i = -log( (e^{s_ii/tau} + rho sum_{j in F_i} e^{s_ij/tau})
                  / (e^{s_ii/tau} + rho sum_{j in F_i} e^{s_ij/tau} + sum_{j not in P_i} w_ij e^{s_ij/tau}) )

- ``intra_modal``: the a->b direction's candidates also hold every a_j (j != i), the b->a
  direction's every b_j, under the same w_ij (hard negatives weighted beta, false negatives masked,
  or positives of weight rho with ``fn_as_positive``): the image-image and text-text terms next to the
  cross-modal one, in the same softmax (sentence-transformers' GISTEmbedLoss contrasts anchors and
  positives so too).
- ``guide_margin`` m (not None): GIST's filter on top, with the zero-shot guide embeddings
  ``guide_a`` / ``guide_b``: w_ij = 0 also where the guide rates j closer to i than i's own positive
  (g(a_i, b_j) > g(a_i, b_i) - m, or the same seen from b_j: :func:`afmrl.losses.gist.guide_negative_mask`),
  the attribute weights elsewhere.
- ``attr_spare_keys`` (k,) bool over the code columns, with ``guide_margin``: the guide never masks a pair
  (in-batch or mined) whose attributes both state one of these keys with different values (two sizes,
  capacities or model numbers: a near-duplicate the attributes tell apart, which a zero-shot guide that
  reads numbers poorly takes for the positive); such a pair keeps its attribute weight (beta when it is
  a hard negative). Without it the guide's masks hide exactly the one-attribute near-duplicates.

Mined negatives (``mined_b`` (B, K, d) with ``mined_attr_codes`` (B, K, k) and ``mined_valid`` (B, K),
:mod:`afmrl.training.mining`; needs the ``attr_codes`` form): each anchor i also meets its own K
catalogue-wide negatives n_ik in the a->b direction, weighted by the same rule against i's item:
beta when comparable with tau_hard <= sim < tau_fn (differs in few key attributes), 0 when sim >= tau_fn
(the same key attributes: the same product listed twice, masked), 1 otherwise; with ``guide_margin``
also 0 where the guide rates n_ik as close to a_i as b_i (``mined_guide`` (B, K, d')).

Instead of the pairwise matrices, pass the per-item ``attr_codes`` (B, k) (-1: key not stated) with
``attr_key_weights`` (k,) (``afmrl.attributes.similarity.attribute_codes``): the loss computes the
similarity itself (``min_shared_keys`` keys in common to compare). Across processes this is the form
to use: the codes are gathered so the masks span the global batch (:mod:`afmrl.losses.distributed`);
pairwise matrices must then already be global (N, N).

Example::

    codes, w = attribute_codes(batch_attrs, weights)
    sim, comparable = similarity_from_codes(torch.from_numpy(codes), torch.from_numpy(w), min_shared=2)
    loss = AGCLLoss(tau_hard=0.5, tau_fn=1.0, beta=2.0)(img, txt, attr_sim=sim, attr_comparable=comparable)
    # or, per item (gathered across processes):
    loss = AGCLLoss(min_shared_keys=2)(img, txt, attr_codes=torch.from_numpy(codes), attr_key_weights=torch.from_numpy(w))
    # weighted positives and intra-modal terms
    loss = AGCLLoss(fn_as_positive=True, positive_weight=0.5, intra_modal=True)(img, txt, attr_sim=sim,
                                                                                attr_comparable=comparable)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from afmrl.attributes.similarity import codes_agreement, codes_differ, similarity_from_codes
from afmrl.losses.core import Temperature, weighted_contrastive, weighted_contrastive_blocks
from afmrl.losses.distributed import gather_items
from afmrl.losses.gist import guide_negative_mask, mined_guide_mask


def agcl_weights(attr_sim: torch.Tensor, comparable: torch.Tensor, tau_hard: float, tau_fn: float,
                 beta: float) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(weights, false_negatives): negative weights w_ij and the false-negative mask F_ij of a batch
    (the diagonal, each pair itself, is neither)."""
    n = attr_sim.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=attr_sim.device)
    return negative_weights(attr_sim, comparable.to(torch.bool) & off, tau_hard, tau_fn, beta)


def mined_weights(codes: torch.Tensor, mined_codes: torch.Tensor, key_weights: torch.Tensor, min_shared: int,
                  tau_hard: float, tau_fn: float, beta: float) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(weights, false_negatives), (B, K): each anchor's mined negatives (codes (B, K, k)) judged against the
    anchor's own item (codes (B, k)) by :func:`negative_weights`."""
    sim, comparable = codes_agreement(codes[:, None, :], mined_codes, key_weights, min_shared)
    return negative_weights(sim, comparable, tau_hard, tau_fn, beta)


def negative_weights(attr_sim: torch.Tensor, comparable: torch.Tensor, tau_hard: float, tau_fn: float,
                     beta: float) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(weights, false_negatives) of candidates of any shape: 0 for a false negative (comparable, sim >=
    tau_fn), beta for a hard one (comparable, tau_hard <= sim < tau_fn), 1 otherwise."""
    comparable = comparable.to(torch.bool)
    fn = comparable & (attr_sim >= tau_fn)
    hard = comparable & (attr_sim >= tau_hard) & ~fn
    w = torch.ones_like(attr_sim, dtype=torch.float32)
    w = torch.where(hard, torch.full_like(w, beta), w)
    w = torch.where(fn, torch.zeros_like(w), w)
    return w, fn


class AGCLLoss(nn.Module):
    def __init__(self, temperature: float = 0.05, learnable: bool = True, tau_hard: float = 0.5,
                 tau_fn: float = 1.0, beta: float = 2.0, fn_as_positive: bool = False,
                 min_shared_keys: int = 2, positive_weight: float = 1.0, intra_modal: bool = False,
                 guide_margin: float | None = None) -> None:  # fmt: skip
        super().__init__()
        if tau_hard > tau_fn:
            raise ValueError(f"tau_hard ({tau_hard}) must be <= tau_fn ({tau_fn})")
        if not 0 < positive_weight <= 1:
            raise ValueError(f"positive_weight must be in (0, 1], got {positive_weight}")
        self.temperature = Temperature(temperature, learnable)
        self.tau_hard, self.tau_fn, self.beta, self.fn_as_positive = tau_hard, tau_fn, beta, fn_as_positive
        self.min_shared_keys = min_shared_keys
        self.positive_weight, self.intra_modal = positive_weight, intra_modal
        self.guide_margin = guide_margin

    def forward(self, a: torch.Tensor, b: torch.Tensor, *, attr_sim: torch.Tensor | None = None,
                attr_comparable: torch.Tensor | None = None, attr_codes: torch.Tensor | None = None,
                attr_key_weights: torch.Tensor | None = None, guide_a: torch.Tensor | None = None,
                guide_b: torch.Tensor | None = None, mined_b: torch.Tensor | None = None,
                mined_attr_codes: torch.Tensor | None = None, mined_valid: torch.Tensor | None = None,
                mined_guide: torch.Tensor | None = None, attr_spare_keys: torch.Tensor | None = None,
                **_: object) -> torch.Tensor:  # fmt: skip
        mined = None
        if mined_b is not None:
            mined = (mined_b, self._mined_weights(attr_codes, attr_key_weights, mined_attr_codes, mined_valid,
                                                  guide_a, guide_b, mined_guide, attr_spare_keys))  # fmt: skip
        spared = None
        if attr_codes is not None:
            if attr_key_weights is None:
                raise ValueError("attr_codes needs attr_key_weights (one weight per attribute key)")
            codes = gather_items(attr_codes)
            attr_sim, attr_comparable = similarity_from_codes(codes, attr_key_weights, self.min_shared_keys)
            if attr_spare_keys is not None:
                spared = codes_differ(codes[:, None, :], codes[None, :, :], attr_spare_keys)
        elif attr_spare_keys is not None:
            raise ValueError("attr_spare_keys needs attr_codes (the per-item form)")
        elif attr_sim is None or attr_comparable is None:
            raise ValueError("AGCL needs attr_sim and attr_comparable, or attr_codes and attr_key_weights")
        w, fn = agcl_weights(attr_sim, attr_comparable, self.tau_hard, self.tau_fn, self.beta)
        if self.guide_margin is not None:
            if guide_a is None or guide_b is None:
                raise ValueError("AGCL with guide_margin needs guide_a and guide_b (the guide's embeddings)")
            masked = guide_negative_mask(gather_items(guide_a), gather_items(guide_b), self.guide_margin)
            w = w * ~(masked & ~spared if spared is not None else masked)
        if not self.intra_modal and (self.positive_weight == 1.0 or not self.fn_as_positive):
            return weighted_contrastive(a, b, self.temperature(), weights=w.to(a.dtype),
                                        positives=fn if self.fn_as_positive else None, mined=mined)  # fmt: skip
        pos_w = fn.to(a.dtype) * self.positive_weight if self.fn_as_positive else None
        return weighted_contrastive_blocks(a, b, self.temperature(), weights=w.to(a.dtype), positive_weights=pos_w,
                                           intra_modal=self.intra_modal, mined=mined)  # fmt: skip

    def _mined_weights(self, attr_codes: torch.Tensor | None, key_weights: torch.Tensor | None,
                       mined_codes: torch.Tensor | None, valid: torch.Tensor | None, guide_a: torch.Tensor | None,
                       guide_b: torch.Tensor | None, mined_guide: torch.Tensor | None,
                       spare_keys: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """(B, K) weights of each anchor's mined negatives (module doc), from this process's rows."""
        if attr_codes is None or key_weights is None or mined_codes is None:
            raise ValueError("AGCL with mined negatives needs attr_codes, attr_key_weights and mined_attr_codes")
        w, _ = mined_weights(attr_codes, mined_codes, key_weights, self.min_shared_keys, self.tau_hard, self.tau_fn,
                             self.beta)  # fmt: skip
        if valid is not None:
            w = w * valid.to(w.dtype)
        if self.guide_margin is not None:
            if guide_a is None or guide_b is None or mined_guide is None:
                raise ValueError("AGCL with guide_margin and mined negatives needs guide_a, guide_b and mined_guide")
            positive = (F.normalize(guide_a, dim=-1) * F.normalize(guide_b, dim=-1)).sum(-1)
            masked = mined_guide_mask(guide_a, mined_guide, positive, self.guide_margin)
            if spare_keys is not None:
                masked = masked & ~codes_differ(attr_codes[:, None, :], mined_codes, spare_keys)
            w = w * ~masked
        return w
