"""Weighted attribute agreement between listings: the signal the AGCL loss uses.

For two attribute dicts ``a`` and ``b`` (normalised first, so ``1 l`` equals ``1000 ml``) and
non-negative weights ``w``::

    shared(a, b) = { k : k in a, k in b, w_k > 0 }
    sim(a, b)    = sum_{k in shared} w_k [a_k == b_k] / sum_{k in shared} w_k

**Missing keys.** A key that only one side (or neither) states is *unknown*, not a disagreement:
it is left out of both sums. When no key is shared the similarity is undefined and the functions
return ``missing`` (default 0.0: "no evidence of sameness"). ``all_agree`` is true only when at
least ``min_shared`` keys are shared and every shared key agrees, so two listings that state
nothing in common are never treated as the same product (the AGCL false-negative mask must not
fire on missing evidence). Keys absent from ``weights`` get weight 0 (ignored) when ``weights`` is
given; ``weights=None`` means the schema's default weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from afmrl.attributes.schema import DEFAULT_SCHEMA, AttributeSchema


def weights_over_defaults(overrides: Mapping[str, float] | None,
                          schema: AttributeSchema = DEFAULT_SCHEMA) -> dict[str, float]:  # fmt: skip
    """The schema's default weights with ``overrides`` on top (``train.attribute_weights``): a key not
    named keeps its default; a weight of 0 leaves the key out."""
    return {**schema.default_weights(), **(overrides or {})}


def _weights(weights: Mapping[str, float] | None, schema: AttributeSchema) -> dict[str, float]:
    w = schema.default_weights() if weights is None else dict(weights)
    bad = {k: v for k, v in w.items() if v < 0}
    if bad:
        raise ValueError(f"attribute weights must be >= 0, got {bad}")
    return {k: float(v) for k, v in w.items() if v > 0}


def attribute_similarity(
    a: Mapping[str, Any] | None,
    b: Mapping[str, Any] | None,
    weights: Mapping[str, float] | None = None,
    *,
    missing: float = 0.0,
    schema: AttributeSchema = DEFAULT_SCHEMA,
    normalize: bool = True,
) -> float:
    """Weighted agreement over the keys both sides state (see the module docstring)."""
    w = _weights(weights, schema)
    na = schema.normalize(a) if normalize else dict(a or {})
    nb = schema.normalize(b) if normalize else dict(b or {})
    num = den = 0.0
    for key, wk in w.items():
        if key in na and key in nb:
            den += wk
            num += wk * (na[key] == nb[key])
    return num / den if den > 0 else float(missing)


def _codes(attrs: Sequence[Mapping[str, Any] | None], keys: list[str], schema: AttributeSchema,
           normalize: bool) -> np.ndarray:  # fmt: skip
    """(n, k) int codes per key; -1 where the key is missing."""
    codes = np.full((len(attrs), len(keys)), -1, dtype=np.int64)
    vocab: list[dict[str, int]] = [{} for _ in keys]
    for i, a in enumerate(attrs):
        na = schema.normalize(a) if normalize else dict(a or {})
        for j, key in enumerate(keys):
            v = na.get(key)
            if v is not None and v != "":
                codes[i, j] = vocab[j].setdefault(str(v), len(vocab[j]))
    return codes


def pairwise_agreement(
    attrs: Sequence[Mapping[str, Any] | None],
    weights: Mapping[str, float] | None = None,
    *,
    missing: float = 0.0,
    min_shared: int = 1,
    schema: AttributeSchema = DEFAULT_SCHEMA,
    normalize: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(similarity (n, n) float32, all_agree (n, n) bool, shared-key count (n, n) int) in one pass."""
    w = _weights(weights, schema)
    keys = sorted(w)
    n = len(attrs)
    num = np.zeros((n, n), dtype=np.float64)
    den = np.zeros((n, n), dtype=np.float64)
    shared = np.zeros((n, n), dtype=np.int64)
    disagree = np.zeros((n, n), dtype=np.int64)
    if keys and n:
        codes = _codes(attrs, keys, schema, normalize)
        for j, key in enumerate(keys):
            c = codes[:, j]
            present = c >= 0
            both = present[:, None] & present[None, :]
            eq = (c[:, None] == c[None, :]) & both
            den += w[key] * both
            num += w[key] * eq
            shared += both
            disagree += both & ~eq
    sim = np.full((n, n), float(missing), dtype=np.float64)
    np.divide(num, den, out=sim, where=den > 0)
    agree = (shared >= max(1, min_shared)) & (disagree == 0)
    return sim.astype(np.float32), agree, shared


def pairwise_attribute_similarity(
    attrs: Sequence[Mapping[str, Any] | None],
    weights: Mapping[str, float] | None = None,
    *,
    missing: float = 0.0,
    schema: AttributeSchema = DEFAULT_SCHEMA,
    normalize: bool = True,
) -> np.ndarray:
    """``S[i, j] = attribute_similarity(attrs[i], attrs[j], weights)`` for all pairs, vectorised."""
    return pairwise_agreement(attrs, weights, missing=missing, schema=schema, normalize=normalize)[0]


def all_agree(
    attrs: Sequence[Mapping[str, Any] | None],
    weights: Mapping[str, float] | None = None,
    *,
    min_shared: int = 1,
    schema: AttributeSchema = DEFAULT_SCHEMA,
    normalize: bool = True,
) -> np.ndarray:
    """``M[i, j]``: at least ``min_shared`` weighted keys shared and all of them agree (false-negative mask)."""
    return pairwise_agreement(attrs, weights, min_shared=min_shared, schema=schema, normalize=normalize)[1]


def attribute_codes(
    attrs: Sequence[Mapping[str, Any] | None],
    weights: Mapping[str, float] | None = None,
    *,
    schema: AttributeSchema = DEFAULT_SCHEMA,
    normalize: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """(codes (n, k) int, key weights (k,)): precomputed once so a training step can compute the
    batch's similarities with :func:`similarity_from_codes` (numpy or torch) without Python loops."""
    w = _weights(weights, schema)
    keys = code_keys(weights, schema)
    return _codes(attrs, keys, schema, normalize), np.array([w[k] for k in keys], dtype=np.float32)


def code_keys(weights: Mapping[str, float] | None = None, schema: AttributeSchema = DEFAULT_SCHEMA) -> list[str]:
    """The keys of :func:`attribute_codes`' columns, in order (the weighted keys, sorted)."""
    return sorted(_weights(weights, schema))


def similarity_from_codes(codes, key_weights, min_shared: int = 1, missing: float = 0.0):
    """(similarity, comparable) from codes (n, k) and weights (k,), on numpy arrays or torch tensors.

    ``similarity`` is :func:`pairwise_agreement`'s; ``comparable`` is "at least ``min_shared`` keys
    shared", so ``comparable & (similarity == 1)`` is :func:`all_agree`.
    """
    return codes_agreement(codes[:, None, :], codes[None, :, :], key_weights, min_shared, missing)


def codes_agreement(x, y, key_weights, min_shared: int = 1, missing: float = 0.0):
    """(similarity, comparable) of the codes ``x`` and ``y`` (numpy or torch, broadcast against each
    other over every axis but the last, the keys): e.g. an anchor's codes (B, 1, k) against its mined
    negatives' (B, K, k). :func:`similarity_from_codes` is this for every pair of rows of one array."""
    if x.shape[-1] == 0:
        both = (x >= 0) & (y >= 0)
        num = den = (both * key_weights).sum(-1)
        shared = both.sum(-1)
    else:  # one key at a time: pair-shaped accumulators, never a (pairs x keys) temporary (catalogue-wide mining)
        num = den = shared = 0
        for j in range(x.shape[-1]):
            xj, yj = x[..., j], y[..., j]
            both = (xj >= 0) & (yj >= 0)
            num = num + (both & (xj == yj)) * key_weights[j]
            den = den + both * key_weights[j]
            shared = shared + both
    comparable = shared >= max(1, min_shared)
    if isinstance(num, np.ndarray):
        sim = np.full(num.shape, float(missing), dtype=np.float32)
        np.divide(num, den, out=sim, where=den > 0)
        return sim, comparable
    import torch

    sim = torch.where(den > 0, num / den.clamp(min=1e-12), torch.full_like(num, float(missing)))
    return sim.float(), comparable


def codes_differ(x, y, keys):
    """bool, broadcast like :func:`codes_agreement`: both sides state one of ``keys`` ((k,) bool over the
    code columns) with different values: a difference the attributes can tell (a size, a model number)."""
    out = (x[..., :0].sum(-1) + y[..., :0].sum(-1)) != 0  # all False, in the broadcast shape
    for j in range(x.shape[-1]):
        if bool(keys[j]):
            xj, yj = x[..., j], y[..., j]
            out = out | ((xj >= 0) & (yj >= 0) & (xj != yj))
    return out
