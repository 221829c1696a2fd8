"""Candidate pairs from index neighbours: each listing's top-k in a Milvus collection of its embeddings.

The vectors go into a collection of afmrl's layout (:class:`afmrl.retrieval.milvus.MilvusIndex`; keyed by
row number) on Milvus Lite in a temporary folder by default, or on the server at ``dedup.uri``; the
collection is dropped afterwards. Every listing is searched (batched), itself left out.
"""

from __future__ import annotations

import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from afmrl.progress import progress
from afmrl.retrieval.milvus import MilvusIndex

SEARCH_BATCH = 256
UPSERT_BATCH = 2000


@dataclass
class Neighbours:
    """Top-k neighbours of every listing: ``ids[i]`` row numbers, ``scores[i]`` cosines (best first)."""

    ids: list[list[int]]
    scores: list[list[float]]

    def ranks(self) -> dict[tuple[int, int], int]:
        """(i, j) -> 1-based rank of j among i's neighbours."""
        return {(i, j): r + 1 for i, row in enumerate(self.ids) for r, j in enumerate(row)}

    def best(self) -> np.ndarray:
        return np.array([s[0] if s else np.nan for s in self.scores], dtype=np.float64)

    def pairs(self) -> set[tuple[int, int]]:
        """Unordered candidate pairs (i < j)."""
        return {(min(i, j), max(i, j)) for i, row in enumerate(self.ids) for j in row}


def _records(vectors: np.ndarray, lo: int) -> list[dict]:
    return [{"listing_id": str(lo + k), "product_id": None, "category": None, "title": None, "split": None,
             "attributes": {}, "price": None, "content_hash": "", "vector": v} for k, v in enumerate(vectors)]  # fmt: skip


def _search(index: MilvusIndex, vectors: np.ndarray, top_k: int, what: str) -> Neighbours:
    name = f"afmrl_dedup_{uuid.uuid4().hex[:12]}"
    index.ensure_collection(name, int(vectors.shape[1]))
    ids: list[list[int]] = []
    scores: list[list[float]] = []
    try:
        for lo in range(0, len(vectors), UPSERT_BATCH):
            index.upsert(name, _records(vectors[lo : lo + UPSERT_BATCH], lo))
        index.flush(name)
        with progress(f"dedup: {what} neighbours (Milvus)", len(vectors), unit="listing") as advance:
            for lo in range(0, len(vectors), SEARCH_BATCH):
                hits = index.search(name, vectors[lo : lo + SEARCH_BATCH], top_k + 1)
                for q, row in enumerate(hits, start=lo):
                    kept = [(int(h.listing_id), h.score) for h in row if int(h.listing_id) != q][:top_k]
                    ids.append([j for j, _ in kept])
                    scores.append([s for _, s in kept])
                advance(len(hits))
    finally:
        index.drop(name)
    return Neighbours(ids, scores)


def nearest(vectors: np.ndarray, top_k: int, uri: str | None = None, token: str | None = None,
            what: str = "embedding") -> Neighbours:  # fmt: skip
    """The ``top_k`` nearest other listings of each row of ``vectors`` (L2-normalised; inner product)."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if len(vectors) < 2:
        return Neighbours([[] for _ in range(len(vectors))], [[] for _ in range(len(vectors))])
    top_k = min(top_k, len(vectors) - 1)
    if uri is not None:
        with MilvusIndex(uri, token, metric="IP") as index:
            return _search(index, vectors, top_k, what)
    with tempfile.TemporaryDirectory(prefix="afmrl-dedup-") as tmp:
        with MilvusIndex(str(Path(tmp) / "dedup.db"), metric="IP") as index:
            return _search(index, vectors, top_k, what)
