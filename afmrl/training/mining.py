"""Catalogue-wide hard negatives, mined once before training (``train.mined_negatives`` K > 0).

In-batch negatives are whatever the sampler put next to a pair; the near-duplicates that decide
identical-product retrieval (the same cereal in another size, the same phone in another colour) are
rarely among them. Mining looks over the whole training catalogue instead, as sentence-transformers'
``mine_hard_negatives`` does: for each training pair i, the frozen zero-shot guide
(:mod:`afmrl.training.guide`: the pretrained towers, in a space both views share) scores the b side of
every other pair against a_i; the K best-scoring items of *other* products (product identity is the
training signal every method gets; one item per product: its best-scoring one) become row i's mined
negatives. A pair whose product is unknown counts as a product of its own.

AGCL mines with its attributes too (``train.mining_attribute_bonus`` lambda > 0): a candidate whose
attributes make it a hard negative of pair i (comparable, tau_hard <= attribute similarity < tau_fn:
it differs from i's item in few key attributes) ranks by guide similarity + lambda, so the near-
duplicates that differ in one attribute come first (lambda >= 2 puts every one of them before any other
candidate); the other candidates rank by guide similarity alone.

The trainer gives each anchor its own K negatives as one more block of its a->b softmax
(:func:`afmrl.losses.core.weighted_contrastive_blocks`, ``mined``), under the loss's weights: AGCL
weighs a mined negative by attributes (beta when it differs from the anchor's item in few key
attributes, 0 when it states the same ones: a false negative), InfoNCE and the oracle count each once,
GIST masks the ones its guide rates as close as the positive.

Example::

    mined = mine_negatives(guide_a, guide_b, products, k=4)   # (N, 4) pair indices, -1: none
    mined = cached_mine_negatives("cache", guide_a, guide_b, products, k=4)  # the same, stored once per input
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from afmrl.atomic import atomic_path
from afmrl.attributes.similarity import codes_agreement
from afmrl.digest import content_hash
from afmrl.models.encoders.base import l2_normalize
from afmrl.progress import progress


def product_index(products: np.ndarray) -> np.ndarray:
    """Dense product ids 0..P-1 for the pairs; an unknown product (< 0) gets an id of its own."""
    products = np.asarray(products, dtype=np.int64)
    dense = np.empty(len(products), dtype=np.int64)
    known = products >= 0
    _, dense[known] = np.unique(products[known], return_inverse=True)
    n_known = int(dense[known].max()) + 1 if known.any() else 0
    dense[~known] = n_known + np.arange(int((~known).sum()))
    return dense


@dataclass(frozen=True)
class AttributeBonus:
    """Mining by attributes (module doc): per-pair codes (N, keys) and key weights
    (:func:`afmrl.attributes.similarity.attribute_codes`), AGCL's thresholds and the bonus lambda."""

    codes: torch.Tensor
    key_weights: torch.Tensor
    bonus: float
    tau_hard: float = 0.5
    tau_fn: float = 1.0
    min_shared: int = 2

    def __call__(self, rows: slice) -> torch.Tensor:
        """(c, N): lambda where pair j is a hard negative of pair i by attributes, else 0."""
        sim, comparable = codes_agreement(self.codes[rows][:, None, :], self.codes[None, :, :], self.key_weights,
                                          self.min_shared)  # fmt: skip
        hard = comparable & (sim >= self.tau_hard) & (sim < self.tau_fn)
        return hard.float() * self.bonus


@torch.no_grad()
def mine_negatives(guide_a: torch.Tensor, guide_b: torch.Tensor, products: np.ndarray, k: int,
                   chunk: int = 256, attributes: AttributeBonus | None = None) -> torch.Tensor:  # fmt: skip
    """(N, k) long: row i holds the pair indices of the k b-side items the guide rates closest to a_i
    among other products (plus the ``attributes`` bonus), best first, one per product; -1 where fewer
    than k other products exist."""
    n = guide_a.shape[0]
    if guide_b.shape[0] != n or len(products) != n:
        raise ValueError(f"guide_a, guide_b and products must have one row per pair ({n})")
    out = torch.full((n, k), -1, dtype=torch.long)
    if k <= 0 or n == 0:
        return out[:, :0] if k <= 0 else out
    ga, gb = l2_normalize(guide_a.float()), l2_normalize(guide_b.float())
    pid = torch.from_numpy(product_index(products))
    n_products = int(pid.max()) + 1
    k_eff = min(k, n_products - 1)
    if k_eff <= 0:
        return out
    cols = torch.arange(n)
    chunk = max(1, min(chunk, (1 << 23) // n))  # rows per block: a (chunk, N) block (x keys with attributes)
    with progress("mine negatives", n, unit="pair") as advance:
        for start in range(0, n, chunk):
            rows = slice(start, min(n, start + chunk))
            sim = ga[rows] @ gb.T  # (c, N)
            if attributes is not None:
                sim = sim + attributes(rows)
            sim = sim.masked_fill(pid[rows, None] == pid[None, :], float("-inf"))  # own product: never a negative
            index = pid.expand(sim.shape[0], n)
            best = torch.full((sim.shape[0], n_products), float("-inf")).scatter_reduce(1, index, sim, "amax")
            hit = sim == best.gather(1, index)  # the best-scoring item of each product
            best_j = torch.full((sim.shape[0], n_products), -1, dtype=torch.long).scatter_reduce(
                1, index, torch.where(hit, cols.expand_as(sim), -1), "amax")  # fmt: skip
            vals, prods = best.topk(k_eff, dim=1)
            chosen = best_j.gather(1, prods)
            out[rows, :k_eff] = torch.where(torch.isfinite(vals), chosen, -1)
            advance(sim.shape[0])
    return out


def cached_mine_negatives(cache_dir: str | Path | None, guide_a: torch.Tensor, guide_b: torch.Tensor,
                          products: np.ndarray, k: int, attributes: AttributeBonus | None = None) -> torch.Tensor:  # fmt: skip
    """:func:`mine_negatives` through an on-disk cache keyed by the content of every input (guides, products,
    k, the attribute codes and the bonus's settings), so the seeds of a benchmark or a re-run mine once."""
    if cache_dir is None:
        return mine_negatives(guide_a, guide_b, products, k, attributes=attributes)
    parts: list = [guide_a.float().numpy().tobytes(), guide_b.float().numpy().tobytes(),
                   np.asarray(products, dtype=np.int64).tobytes(), int(k)]  # fmt: skip
    if attributes is not None:
        parts += [attributes.codes.numpy().astype(np.int64).tobytes(), attributes.key_weights.numpy().tobytes(),
                  attributes.bonus, attributes.tau_hard, attributes.tau_fn, attributes.min_shared]  # fmt: skip
    path = Path(cache_dir) / f"mined-{content_hash(*parts)[:20]}.npy"
    if path.exists():
        return torch.from_numpy(np.load(path))
    out = mine_negatives(guide_a, guide_b, products, k, attributes=attributes)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, out.numpy())
    return out
