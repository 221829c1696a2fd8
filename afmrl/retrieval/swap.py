"""Zero-downtime swaps of the serving alias: check a collection, move the alias in one call, keep the
previous collection for a rollback, drop older ones.

Serving reads through the alias (``index.alias``), never a collection name, so a swap is one Milvus
``alter_alias`` call: a query sees the old collection or the new one, never a partial one. Before the
move, :func:`check_collection` verifies the new collection: complete (the build's ``afmrl.complete``
property), holding the count its build recorded, and recall@10 of a sample of its own vectors searched
through the index against exact search over every stored vector (``index.check_min_recall``). After
it, :func:`prune_collections` keeps the ``index.keep`` most recently served collections of the prefix
(the one served and the previous one, by default) and candidates built after the served one, and drops
the rest; the previous target is recorded on the new one (``afmrl.previous``) for :func:`rollback`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from afmrl.retrieval.milvus import VECTOR_FIELD, IndexStoreError, MilvusIndex

TOP = 10


class SwapCheckError(IndexStoreError):
    """A collection failed the checks that come before it may serve."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def exact_top(index: MilvusIndex, name: str, queries: np.ndarray, k: int, page: int = 5000) -> list[list[str]]:
    """Exact inner-product top-``k`` ids over every vector the collection stores (one page in memory)."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.full((len(queries), k), "", dtype=object)
    for rows in index.iter_fields(name, (VECTOR_FIELD,), batch_size=page):
        ids = np.asarray([r["listing_id"] for r in rows], dtype=object)
        x = np.asarray([r[VECTOR_FIELD] for r in rows], dtype=np.float32)
        s = queries @ x.T
        all_s = np.concatenate([best_s, s], axis=1)
        all_i = np.concatenate([best_i, np.broadcast_to(ids, s.shape)], axis=1)
        part = np.argsort(-all_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(all_s, part, axis=1), np.take_along_axis(all_i, part, axis=1)
    return [[str(i) for i in row if i != ""] for row in best_i]


def sample_recall(index: MilvusIndex, name: str, sample: int, k: int = TOP, seed: int = 0) -> float:
    """Recall@k of ``sample`` of the collection's own vectors, searched through the index, against exact
    search (1.0 on FLAT; what HNSW / IVF settings cost on a server)."""
    ids = [i for page in index.iter_ids(name) for i in page]
    if not ids:
        return 0.0
    rng = np.random.default_rng(seed)
    picked = [ids[i] for i in rng.choice(len(ids), min(sample, len(ids)), replace=False)]
    vecs = index.vectors(name, picked)
    q = np.stack([vecs[i] for i in picked])
    k = min(k, len(ids))
    truth = exact_top(index, name, q, k)
    found = index.search(name, q, k)
    hits = [len({h.listing_id for h in f} & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits))


def check_collection(index: MilvusIndex, name: str, *, sample: int, min_recall: float,
                     expected: int | None = None) -> dict[str, Any]:  # fmt: skip
    """The checks before ``name`` may serve; raises :class:`SwapCheckError` naming the failed one."""
    if not index.has(name):
        raise SwapCheckError(f"collection {name!r} not found in {index.where}: run `afmrl index build` first")
    props = index.properties(name)
    if props.get("afmrl.complete") != "true":
        raise SwapCheckError(f"collection {name!r} is not a complete build (afmrl.complete={props.get('afmrl.complete')}): "
                             "re-run `afmrl index build` (it resumes)")  # fmt: skip
    count = index.count(name)
    want = expected if expected is not None else int(props.get("afmrl.count", count))
    if count != want:
        raise SwapCheckError(f"collection {name!r} holds {count} listings, its build recorded {want}")
    recall = sample_recall(index, name, sample)
    if recall < min_recall:
        raise SwapCheckError(f"collection {name!r}: recall@{TOP} of {sample} sampled queries through the index is "
                             f"{recall:.3f} against exact search, below index.check_min_recall {min_recall}")  # fmt: skip
    return {"count": count, "expected": want, "recall_at_10": round(recall, 4), "sample": min(sample, count)}


def prune_collections(index: MilvusIndex, prefix: str, keep: int, protect: set[str], served: str) -> list[str]:
    """Drop what a swap to ``served`` leaves behind: of the collections of ``prefix`` that have served, all
    beyond the ``keep`` most recently served; of those that never served, the ones built before ``served``
    (superseded candidates). Never one in ``protect`` (the alias targets) nor one still being built."""
    props = {n: index.properties(n) for n in index.collections(prefix)}
    was_served = sorted((n for n in props if props[n].get("afmrl.served_at")),
                        key=lambda n: props[n]["afmrl.served_at"], reverse=True)  # fmt: skip
    stale = was_served[keep:]
    cutoff = props.get(served, {}).get("afmrl.built_at", "")
    stale += [n for n in props if not props[n].get("afmrl.served_at") and props[n].get("afmrl.built_at", "") < cutoff]
    dropped = []
    for name in sorted(stale):
        if name not in protect and props[name].get("afmrl.complete") == "true":
            index.drop(name)
            dropped.append(name)
    return dropped


def swap_alias(index: MilvusIndex, alias: str, collection: str, *, prefix: str, keep: int, sample: int,
               min_recall: float, check: bool = True) -> dict[str, Any]:  # fmt: skip
    """Check ``collection``, point ``alias`` at it in one call, record the previous target, prune."""
    checks = check_collection(index, collection, sample=sample, min_recall=min_recall) if check else {}
    previous = index.alias_target(alias)
    props: dict[str, Any] = {"afmrl.served_at": _now()}
    if previous and previous != collection:
        props["afmrl.previous"] = previous
    index.set_properties(collection, props)
    index.set_alias(alias, collection)  # create_alias / alter_alias: one call, atomic for readers
    dropped = prune_collections(index, prefix, keep, {collection, *([previous] if previous else [])}, collection)
    return {"alias": alias, "collection": collection, "previous": previous, "checks": checks, "dropped": dropped}


def rollback(index: MilvusIndex, alias: str) -> dict[str, Any]:
    """Point ``alias`` back at the collection it served before the last swap (kept by :func:`swap_alias`)."""
    current = index.alias_target(alias)
    if current is None:
        raise IndexStoreError(f"alias {alias!r} does not exist in {index.where}: nothing to roll back")
    previous = index.properties(current).get("afmrl.previous")
    if not previous:
        raise IndexStoreError(f"alias {alias!r} -> {current!r} has no previous collection recorded: nothing to roll back to")
    if not index.has(previous):
        raise IndexStoreError(f"the previous collection {previous!r} of alias {alias!r} was dropped (index.keep): "
                              "rebuild it with `afmrl index build` and switch with `afmrl index alias`")  # fmt: skip
    index.set_properties(previous, {"afmrl.served_at": _now(), "afmrl.previous": current})
    index.set_alias(alias, previous)
    return {"alias": alias, "collection": previous, "previous": current}
