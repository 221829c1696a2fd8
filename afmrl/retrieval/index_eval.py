"""Retrieval metrics through the Milvus index, on the protocol of ``afmrl.retrieval.evaluate``.

Same queries, gallery and relevance as the exact ``listing`` task (``eval_roles``), same metric code
(``retrieval_metrics``), but the ranking comes from Milvus: each query's vector searches the collection
with the filter ``split in [S, "gallery"]``; hits that are queries themselves (not gallery items of the
protocol) are dropped, and a query whose top hits were mostly dropped is searched again deeper, so the
top ``max(ks, 10)`` gallery items are those of the index. Names: ``index_listing_R@1`` beside the exact
``listing_R@1``. ``index_listing_MRR`` only sees ranks the searches reached (at least the metric
depth); ``index_listing_overlap@10`` is the share of the exact top 10 that Milvus also returned (1.0 for
an exact index such as FLAT, below for approximate ones).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from afmrl.catalog.splits import eval_roles
from afmrl.retrieval.evaluate import EvalResult, _relevance
from afmrl.retrieval.metrics import retrieval_metrics, topk
from afmrl.retrieval.milvus import MAX_TOP_K, IndexStoreError, MilvusIndex, literal_list

QUERY_BATCH = 256


def _overlap(index_sim: np.ndarray, exact_sim: np.ndarray, k: int = 10) -> float:
    k = min(k, exact_sim.shape[1])
    ex = topk(exact_sim, k)
    got = topk(index_sim, k)
    shares = []
    for i in range(len(ex)):
        found = {j for j in got[i] if np.isfinite(index_sim[i, j])}
        shares.append(len(found & set(ex[i].tolist())) / k)
    return float(np.mean(shares)) if shares else float("nan")


def evaluate_index(index: MilvusIndex, collection: str, listings: pd.DataFrame, listing_vectors: np.ndarray,
                   split: str, ks: Sequence[int] = (1, 5, 10), seed: int = 0, exact: EvalResult | None = None,
                   prefix: str = "index_listing_") -> dict[str, float]:  # fmt: skip
    """``listings`` and ``listing_vectors`` rows are aligned (the rows the exact evaluation embedded)."""
    df = listings.reset_index(drop=True)
    roles = eval_roles(df, split, seed).to_numpy()
    q_idx = np.flatnonzero(roles == "query")
    g_idx = np.flatnonzero(roles == "gallery")
    if len(q_idx) == 0 or len(g_idx) == 0:
        return {}
    ids = df["listing_id"].astype(str).tolist()
    pos = {ids[g]: j for j, g in enumerate(g_idx)}
    expr = f"split in {literal_list(sorted({split, 'gallery'}))}"
    expected = int(df["split"].isin([split, "gallery"]).sum())
    held = index.count_where(collection, expr)
    if held != expected:
        raise IndexStoreError(
            f"collection {collection!r} holds {held} listings of splits {sorted({split, 'gallery'})}, the catalogue "
            f"has {expected}: build the index from this catalogue with index.splits covering them"
        )
    depth = max(max(ks), 10)
    sim = np.full((len(q_idx), len(g_idx)), -np.inf, dtype=np.float32)
    q_vecs = np.asarray(listing_vectors, dtype=np.float32)[q_idx]
    pending = np.arange(len(q_idx))
    limit = min(MAX_TOP_K, depth * 4)
    while len(pending):
        deeper = []
        for lo in range(0, len(pending), QUERY_BATCH):
            chunk = pending[lo : lo + QUERY_BATCH]
            for qi, hits in zip(chunk, index.search(collection, q_vecs[chunk], limit, expr), strict=True):
                kept = [(pos[h.listing_id], h.score) for h in hits if h.listing_id in pos]
                if len(kept) >= depth or len(hits) < limit or limit >= MAX_TOP_K:
                    for j, score in kept:
                        sim[qi, j] = score
                else:
                    deeper.append(qi)
        pending = np.asarray(deeper, dtype=np.int64)
        limit = min(MAX_TOP_K, limit * 4)
    products = df["product_id"].tolist()
    rel = _relevance([products[i] for i in q_idx], [products[i] for i in g_idx])
    metrics = retrieval_metrics(sim, rel, ks, prefix=prefix)
    task = next((t for t in (exact.tasks if exact else []) if t.name == "listing"), None)
    if task is not None and task.sim.shape == sim.shape:
        metrics[f"{prefix}overlap@10"] = _overlap(sim, task.sim)
    return metrics
