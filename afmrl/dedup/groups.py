"""From scored candidate pairs to groups and a review queue.

``average`` linkage (default): clusters merge, best link first, only while the mean score over every pair
between them stays at or above the threshold, a pair that was never a candidate counting as 0 (no evidence
of a match), so one strong link cannot chain two different products through a shared neighbour;
``scored_average``: the mean over the scored pairs only (looser). ``components``: connected components of the pairs at or above the
threshold (chains allowed). The review queue holds the pairs a human should look at: scores within
``margin`` below the threshold, and pairs above it whose clusters linkage kept apart.
"""

from __future__ import annotations

import heapq
from typing import Literal

import numpy as np
import pandas as pd


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, x: int, y: int) -> int:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            self.parent[max(rx, ry)] = min(rx, ry)
        return min(rx, ry)


def cluster(n: int, a: np.ndarray, b: np.ndarray, scores: np.ndarray, threshold: float,
            method: Literal["average", "scored_average", "components"] = "average") -> np.ndarray:  # fmt: skip
    """A group label (the smallest member's row) for each of ``n`` listings, from pairs (a[k], b[k]) scored
    ``scores[k]``."""
    uf = _UnionFind(n)
    if method == "components":
        for i, j, s in zip(a.tolist(), b.tolist(), scores.tolist(), strict=True):
            if s >= threshold:
                uf.union(i, j)
        return np.array([uf.find(i) for i in range(n)], dtype=np.int64)
    # average linkage over the scored pairs: links[x][y] = [sum, count] between clusters x and y
    links: dict[int, dict[int, list[float]]] = {}
    for i, j, s in zip(a.tolist(), b.tolist(), scores.tolist(), strict=True):
        if i == j:
            continue
        for x, y in ((i, j), (j, i)):
            cell = links.setdefault(x, {}).setdefault(y, [0.0, 0.0])
            cell[0] += s
            cell[1] += 1
    size = [1] * n
    scored = method == "scored_average"

    def mean(x: int, y: int, cell: list[float]) -> float:
        return cell[0] / (cell[1] if scored else size[x] * size[y])

    heap = [(-c[0], x, y) for x, row in links.items() for y, c in row.items() if x < y and c[0] >= threshold]
    heapq.heapify(heap)
    alive = set(range(n))
    while heap:
        neg, x, y = heapq.heappop(heap)
        if x not in alive or y not in alive:
            continue
        cell = links[x].get(y)
        if cell is None or abs(mean(x, y, cell) + neg) > 1e-12:  # stale entry
            continue
        keep, gone = min(x, y), max(x, y)
        size[keep] += size[gone]
        uf.union(keep, gone)
        alive.discard(gone)
        row_gone = links.pop(gone, {})
        row_keep = links.setdefault(keep, {})
        row_keep.pop(gone, None)
        row_gone.pop(keep, None)
        for z, (s, c) in row_gone.items():
            before = row_keep.get(z, [0.0, 0.0])
            merged = [before[0] + s, before[1] + c]
            row_keep[z] = merged
            links[z].pop(gone, None)
            links[z][keep] = merged
        for z, cell in row_keep.items():
            m = mean(keep, z, cell)
            if m >= threshold:
                heapq.heappush(heap, (-m, min(keep, z), max(keep, z)))
    return np.array([uf.find(i) for i in range(n)], dtype=np.int64)


def group_table(ids: list[str], labels: np.ndarray) -> pd.DataFrame:
    """One row per listing: ``listing_id``, ``group_id`` (``g<first member's row>``) and ``group_size``."""
    sizes = np.bincount(labels, minlength=len(ids))
    return pd.DataFrame({"listing_id": ids, "group_id": [f"g{int(g):07d}" for g in labels],
                         "group_size": sizes[labels].astype(np.int64)})  # fmt: skip


def review_queue(ids: list[str], titles: list[str], a: np.ndarray, b: np.ndarray, scores: np.ndarray,
                 labels: np.ndarray, threshold: float, margin: float) -> pd.DataFrame:  # fmt: skip
    """Pairs for a human, most uncertain first: near misses (``threshold - margin <= score < threshold``)
    and matches the grouping kept apart."""
    near = (scores < threshold) & (scores >= threshold - margin)
    split = (scores >= threshold) & (labels[a] != labels[b])
    keep = np.flatnonzero(near | split)
    keep = keep[np.argsort(np.abs(scores[keep] - threshold), kind="stable")]
    return pd.DataFrame({
        "listing_a": [ids[i] for i in a[keep]], "listing_b": [ids[j] for j in b[keep]],
        "score": scores[keep].astype(np.float64), "threshold": float(threshold),
        "reason": np.where(split[keep], "match kept apart by linkage", "just below the threshold"),
        "title_a": [titles[i] for i in a[keep]], "title_b": [titles[j] for j in b[keep]],
        "same_group": labels[a[keep]] == labels[b[keep]],
    })  # fmt: skip
