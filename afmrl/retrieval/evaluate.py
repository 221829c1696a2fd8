"""Evaluation tasks (exact search: the metrics of record).

Tasks on the evaluation split S (queries and gallery from ``afmrl.catalog.splits.eval_roles``):
- ``listing``: listing -> listing (image and text fused; text only for text-only catalogues);
- ``image_to_image``, ``text_to_image``, ``image_to_text``: the same queries and gallery, one modality
  per side (listings with images only);
- ``photo_to_catalogue`` (catalogues with ``gallery`` listings, e.g. grocery-store): S's photos
  (image) against the catalogue listings only (fused);
- ``photo_to_train_catalogue``: S's photos (image) against the train photos (image) and the
  catalogue listings (fused): a gallery of other sessions' photos plus the shop catalogue.
Relevant items: the gallery listings of the query's product. Per-category R@1 for ``listing``.
Given each row's key attributes, every task is also scored on its hard slice (``{task}_hard_R@1``...:
queries with a near-duplicate of another product in the gallery, ``afmrl.retrieval.hard_slice``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from afmrl.catalog.splits import eval_roles
from afmrl.errors import DataError
from afmrl.retrieval.embed import Embeddings
from afmrl.retrieval.hard_slice import hard_queries
from afmrl.retrieval.metrics import retrieval_metrics, topk


@dataclass
class TaskData:
    name: str
    sim: np.ndarray
    relevant: np.ndarray
    query_categories: list
    query_rows: np.ndarray | None = None  # row numbers (in the evaluated frame) of the queries
    hard: np.ndarray | None = None  # per query: in the hard slice (afmrl.retrieval.hard_slice)


@dataclass
class EvalResult:
    metrics: dict[str, float]
    per_category: dict[str, dict[str, float]]
    counts: dict[str, int]
    tasks: list[TaskData] = field(default_factory=list)
    per_query: dict = field(default_factory=dict)  # see per_query_metrics


# the one figure a catalogue is judged by: photo -> catalogue where shoppers' photos query a shop's
# catalogue (a "gallery" split), listing -> listing otherwise
PRIMARY_METRICS = ("photo_to_catalogue_R@1", "listing_R@1")


def primary_metric(metrics: dict[str, float]) -> str:
    """The first of :data:`PRIMARY_METRICS` that ``metrics`` holds with a finite value."""
    for name in PRIMARY_METRICS:
        value = metrics.get(name)
        if isinstance(value, int | float) and np.isfinite(value):
            return name
    raise DataError(f"no primary metric ({' or '.join(PRIMARY_METRICS)}) was scored: the split has no queries "
                    "with a relevant listing", field="eval.split")


def resolve_split(listings: pd.DataFrame, wanted: str) -> str:
    """``wanted`` when the catalogue has it; never a silent fallback to another split."""
    present = set(listings["split"].dropna())
    if wanted in present:
        return wanted
    raise DataError(f"the catalogue has no {wanted!r} split (its splits: {', '.join(sorted(present)) or 'none'}); "
                    f"set eval.split to one of them", field="eval.split")


def _relevance(q_products: Sequence, g_products: Sequence) -> np.ndarray:
    q = np.array([p if p is not None else f"\0q{i}" for i, p in enumerate(q_products)], dtype=object)
    g = np.array([p if p is not None else f"\0g{i}" for i, p in enumerate(g_products)], dtype=object)
    return q[:, None] == g[None, :]


def query_categories(listings: pd.DataFrame) -> list:
    """Each row's category; a row without one (a shopper photo) takes its product's catalogue
    (``gallery``) listing's category, so per-category figures cover photos too."""
    cats = listings["category"].tolist()
    gallery = listings[(listings["split"] == "gallery") & listings["category"].notna() & listings["product_id"].notna()]
    by_product = dict(zip(gallery["product_id"], gallery["category"], strict=True))
    return [c if c is not None and c == c else by_product.get(p) for c, p in zip(cats, listings["product_id"], strict=True)]


def evaluate_embeddings(listings: pd.DataFrame, emb: Embeddings, split: str, ks: Sequence[int] = (1, 5, 10),
                        seed: int = 0, key_attributes: list[dict] | None = None) -> EvalResult:  # fmt: skip
    """``listings`` and ``emb`` rows are aligned (the rows that were embedded). ``key_attributes`` (one dict per
    row, :func:`afmrl.retrieval.hard_slice.key_attributes`): also score each task's hard slice
    (``{task}_hard_R@1``...)."""
    if key_attributes is not None and len(key_attributes) != len(listings):
        raise DataError(f"key_attributes has {len(key_attributes)} rows for {len(listings)} listings",
                        field="key_attributes")  # fmt: skip
    df = listings.reset_index(drop=True)
    roles = eval_roles(df, split, seed).to_numpy()
    q_idx = np.flatnonzero(roles == "query")
    g_idx = np.flatnonzero(roles == "gallery")
    products = df["product_id"].tolist()
    cats = query_categories(df)
    metrics: dict[str, float] = {}
    tasks: list[TaskData] = []

    def run(name: str, q_vecs: np.ndarray, q_rows: np.ndarray, g_vecs: np.ndarray, g_rows: np.ndarray) -> None:
        if len(q_rows) == 0 or len(g_rows) == 0:
            return
        sim = q_vecs @ g_vecs.T
        same = q_rows[:, None] == g_rows[None, :]
        sim[same] = -np.inf  # a query never retrieves itself
        rel = _relevance([products[i] for i in q_rows], [products[i] for i in g_rows]) & ~same
        metrics.update(retrieval_metrics(sim, rel, ks, prefix=f"{name}_"))
        hard = None
        if key_attributes is not None:
            hard = hard_queries([key_attributes[i] for i in q_rows], [key_attributes[i] for i in g_rows], ~rel & ~same)
            if hard.any():
                metrics.update(retrieval_metrics(sim[hard], rel[hard], ks, prefix=f"{name}_hard_"))
        tasks.append(TaskData(name, sim, rel, [cats[i] for i in q_rows], q_rows, hard))

    run("listing", emb.listing[q_idx], q_idx, emb.listing[g_idx], g_idx)
    if emb.image is not None:
        qi, gi = q_idx[emb.has_image[q_idx]], g_idx[emb.has_image[g_idx]]
        run("image_to_image", emb.image[qi], qi, emb.image[gi], gi)
        if emb.cross_modal:
            run("text_to_image", emb.text[q_idx], q_idx, emb.image[gi], gi)
            run("image_to_text", emb.image[qi], qi, emb.text[g_idx], g_idx)
        catalogue = np.flatnonzero(df["split"].to_numpy() == "gallery")
        photos = np.flatnonzero((df["split"].to_numpy() == split) & emb.has_image)
        if len(catalogue) and len(photos) and emb.cross_modal:
            run("photo_to_catalogue", emb.image[photos], photos, emb.listing[catalogue], catalogue)
            train_photos = np.flatnonzero((df["split"].to_numpy() == "train") & emb.has_image)
            if len(train_photos):
                gallery = np.concatenate([train_photos, catalogue])
                g_vecs = np.concatenate([emb.image[train_photos], emb.listing[catalogue]])
                run("photo_to_train_catalogue", emb.image[photos], photos, g_vecs, gallery)
        elif len(catalogue) and len(photos):  # zero-shot: image against the catalogue's images
            run("photo_to_catalogue", emb.image[photos], photos, emb.image[catalogue], catalogue)

    per_category: dict[str, dict[str, float]] = {}
    for task in tasks[:1]:
        cats_arr = np.array([c if c is not None else "(none)" for c in task.query_categories], dtype=object)
        for c in sorted(set(cats_arr)):
            sel = cats_arr == c
            per_category[str(c)] = retrieval_metrics(task.sim[sel], task.relevant[sel], (1,))
    counts = {"queries": int(len(q_idx)), "gallery": int(len(g_idx)), "listings": int(len(df))}
    return EvalResult(metrics, per_category, counts, tasks)


def per_query(task: TaskData, measure: str) -> np.ndarray:
    """One value per scored query (those with a relevant item, in order) whose mean is the task's
    ``measure`` (``R@k`` or ``mAP@k``, k <= 10) as :func:`retrieval_metrics` reports it."""
    has = task.relevant.any(axis=1)
    sim, rel = np.asarray(task.sim[has], dtype=np.float32), task.relevant[has]
    kind, _, k_text = measure.partition("@")
    if kind not in ("R", "mAP") or not k_text.isdigit() or not 1 <= int(k_text) <= 10:
        raise ValueError(f"no per-query form for {measure!r} (R@k or mAP@k, k <= 10)")
    if not len(sim):
        return np.zeros(0)
    hits = np.take_along_axis(rel, topk(sim, 10), axis=1)
    k = int(k_text)
    if kind == "R":
        return hits[:, :k].any(axis=1).astype(np.float64)
    h = hits[:, :10].astype(np.float32)
    precision = np.cumsum(h, axis=1) / np.arange(1, h.shape[1] + 1)
    return ((precision * h).sum(axis=1) / np.minimum(rel.sum(axis=1), 10)).astype(np.float64)


def hard_task(task: TaskData) -> TaskData | None:
    """The task restricted to its hard slice (named ``{task}_hard``); None when it has none."""
    if task.hard is None or not task.hard.any():
        return None
    h = task.hard
    rows = task.query_rows[h] if task.query_rows is not None else None
    return TaskData(f"{task.name}_hard", task.sim[h], task.relevant[h],
                    [c for c, keep in zip(task.query_categories, h, strict=True) if keep], rows)  # fmt: skip


def result_tasks(result: EvalResult) -> dict[str, TaskData]:
    """Every scored task by name, the hard slices (``{task}_hard``) included."""
    out = {t.name: t for t in result.tasks}
    for task in result.tasks:
        hard = hard_task(task)
        if hard is not None:
            out.setdefault(hard.name, hard)
    return out


def per_query_metrics(result: EvalResult, metrics: Sequence[str], ids: Sequence) -> dict:
    """``{"query_ids": {task: [...]}, "values": {metric: [...]}}`` for the gate's ``<task>_<R@k|mAP@k>``
    metrics (``{task}_hard_R@1`` too); ``ids`` names the evaluated rows (listing ids). Metrics without a
    per-query form are left out."""
    tasks = result_tasks(result)
    out: dict = {"query_ids": {}, "values": {}}
    for metric in metrics:
        name, _, measure = metric.rpartition("_")
        task = tasks.get(name)
        if task is None or task.query_rows is None:
            continue
        try:
            values = per_query(task, measure)
        except ValueError:
            continue
        out["values"][metric] = [float(v) for v in values]
        rows = task.query_rows[task.relevant.any(axis=1)]
        out["query_ids"][name] = [str(ids[i]) for i in rows]
    return out
