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
"""

from __future__ import annotations

import torch
from torch import nn

from afmrl.attributes.similarity import similarity_from_codes
from afmrl.losses.core import Temperature, weighted_contrastive
from afmrl.losses.distributed import gather_items


def agcl_weights(attr_sim: torch.Tensor, comparable: torch.Tensor, tau_hard: float, tau_fn: float,
                 beta: float) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """(weights, false_negatives): negative weights w_ij and the false-negative mask F_ij."""
    n = attr_sim.shape[0]
    off = ~torch.eye(n, dtype=torch.bool, device=attr_sim.device)
    comparable = comparable.to(torch.bool) & off
    fn = comparable & (attr_sim >= tau_fn)
    hard = comparable & (attr_sim >= tau_hard) & ~fn
    w = torch.ones_like(attr_sim, dtype=torch.float32)
    w = torch.where(hard, torch.full_like(w, beta), w)
    w = torch.where(fn, torch.zeros_like(w), w)
    return w, fn


class AGCLLoss(nn.Module):
    def __init__(self, temperature: float = 0.05, learnable: bool = True, tau_hard: float = 0.5,
                 tau_fn: float = 1.0, beta: float = 2.0, fn_as_positive: bool = False,
                 min_shared_keys: int = 2) -> None:  # fmt: skip
        super().__init__()
        if tau_hard > tau_fn:
            raise ValueError(f"tau_hard ({tau_hard}) must be <= tau_fn ({tau_fn})")
        self.temperature = Temperature(temperature, learnable)
        self.tau_hard, self.tau_fn, self.beta, self.fn_as_positive = tau_hard, tau_fn, beta, fn_as_positive
        self.min_shared_keys = min_shared_keys

    def forward(self, a: torch.Tensor, b: torch.Tensor, *, attr_sim: torch.Tensor | None = None,
                attr_comparable: torch.Tensor | None = None, attr_codes: torch.Tensor | None = None,
                attr_key_weights: torch.Tensor | None = None, **_: object) -> torch.Tensor:  # fmt: skip
        if attr_codes is not None:
            if attr_key_weights is None:
                raise ValueError("attr_codes needs attr_key_weights (one weight per attribute key)")
            attr_sim, attr_comparable = similarity_from_codes(gather_items(attr_codes), attr_key_weights,
                                                              self.min_shared_keys)  # fmt: skip
        elif attr_sim is None or attr_comparable is None:
            raise ValueError("AGCL needs attr_sim and attr_comparable, or attr_codes and attr_key_weights")
        w, fn = agcl_weights(attr_sim, attr_comparable, self.tau_hard, self.tau_fn, self.beta)
        return weighted_contrastive(a, b, self.temperature(), weights=w.to(a.dtype),
                                    positives=fn if self.fn_as_positive else None)  # fmt: skip
