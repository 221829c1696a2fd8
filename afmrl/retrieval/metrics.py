"""Retrieval metrics from a similarity matrix and a relevance matrix (exact search).

For query q with relevant gallery set R_q (queries with an empty R_q are skipped and counted):
- R@k: 1 if any relevant item is in the top k (identical-product search: is the product found);
- MRR: 1 / rank of the first relevant item, over the full ranking;
- mAP@10: (1 / min(|R_q|, 10)) * sum_{k<=10} P@k * rel_k.
Names follow open_clip: ``{task}_R@{k}``, ``{task}_mAP@10``, ``{task}_MRR``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def topk(sim: np.ndarray, k: int) -> np.ndarray:
    k = min(k, sim.shape[1])
    part = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sim, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


def retrieval_metrics(sim: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = (1, 5, 10),
                      prefix: str = "") -> dict[str, float]:  # fmt: skip
    sim = np.asarray(sim, dtype=np.float32)
    has = relevant.any(axis=1)
    out: dict[str, float] = {f"{prefix}queries": float(has.sum()), f"{prefix}queries_without_relevant": float((~has).sum())}
    if not has.any():
        return out
    sim, relevant = sim[has], relevant[has]
    depth = max(max(ks), 10)
    top = topk(sim, depth)
    hits = np.take_along_axis(relevant, top, axis=1)
    for k in ks:
        out[f"{prefix}R@{k}"] = float(hits[:, :k].any(axis=1).mean())
    best_rel = np.where(relevant, sim, -np.inf).max(axis=1)
    rank = 1 + (sim > best_rel[:, None]).sum(axis=1)
    out[f"{prefix}MRR"] = float((1.0 / rank).mean())
    h10 = hits[:, :10].astype(np.float32)
    precision = np.cumsum(h10, axis=1) / np.arange(1, h10.shape[1] + 1)
    denom = np.minimum(relevant.sum(axis=1), 10)
    out[f"{prefix}mAP@10"] = float(((precision * h10).sum(axis=1) / denom).mean())
    return out
