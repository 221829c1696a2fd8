"""Write the WDC Products copy as a shop's offers feed (the form of the held-back offers: titles only).

    python benchmarks/offers_feed.py --data ../shared/data/wdc-products --out offers.csv
    python benchmarks/offers_feed.py --data ../shared/data/wdc-products --out offers-category.csv --category-clusters 12
    python benchmarks/offers_feed.py --data ../shared/data/wdc-products --out offers-41k.csv --category-clusters 12 --copies 9

then ``python benchmarks/retrieval.py --dataset offers --data offers.csv --columns
id=id,title=title,product=product[,category=category]``.

- Columns ``id``, ``title`` and ``product`` (tableA.csv's ``cluster_id``: the product, an evaluation label
  that only ever reaches ``product_id``).
- ``--category-clusters K``: a ``category`` column, which the held-back feed has and this copy does not:
  each product's category is its cluster among K (k-means, spherical, seed 0) of the mean zero-shot
  MiniLM embedding of its offers' titles, named ``cat00``.. A coarse field that is one value per product,
  as a shop's category is; it is computed from the titles (model inputs anyway), never from the labels
  beyond grouping a product's own offers.
- ``--copies N`` (a scale probe for timing, not for quality): N copies of the feed, copy c of every
  product a product of its own (``<cluster>-c``) whose title has each number below 6 digits raised by c
  (titles without a number get `` vc``), so the feed grows N-fold with near-duplicates that differ in
  their numbers. Its R@1 figures mean nothing about real feeds.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def kmeans_categories(titles: list[str], products: np.ndarray, k: int, seed: int = 0, iters: int = 50) -> np.ndarray:
    """One ``catNN`` per row: the spherical k-means cluster of its product's mean title embedding."""
    from sentence_transformers import SentenceTransformer

    from afmrl.models.pretrained import minilm_path

    emb = SentenceTransformer(str(minilm_path()), device="cpu").encode(titles, batch_size=128,
                                                                       normalize_embeddings=True)  # fmt: skip
    return cluster_products(np.asarray(emb, dtype=np.float64), products, k, seed, iters)


def cluster_products(emb: np.ndarray, products: np.ndarray, k: int, seed: int = 0, iters: int = 50) -> np.ndarray:
    """Spherical k-means over each product's mean row embedding; the row's product's cluster as ``catNN``."""
    ids, inv = np.unique(products, return_inverse=True)
    means = np.zeros((len(ids), emb.shape[1]))
    np.add.at(means, inv, emb)
    means /= np.linalg.norm(means, axis=1, keepdims=True).clip(min=1e-12)
    k = min(k, len(ids))
    centres = means[np.random.default_rng(seed).choice(len(ids), k, replace=False)]
    label = np.zeros(len(ids), dtype=np.int64)
    for _ in range(iters):  # each product's cluster: the last assignment step's
        label = (means @ centres.T).argmax(1)
        centres = np.stack([means[label == j].mean(0) if (label == j).any() else centres[j] for j in range(k)])
        centres /= np.linalg.norm(centres, axis=1, keepdims=True).clip(min=1e-12)
    return np.array([f"cat{j:02d}" for j in label[inv]])


def shifted_title(title: str, c: int) -> str:
    """Copy ``c`` of a title: every number below 6 digits raised by ``c`` (`` vc`` appended when none)."""
    if c == 0:
        return title
    out = re.sub(r"\d+", lambda m: str(int(m.group()) + c) if len(m.group()) < 6 else m.group(), title)
    return out if re.search(r"\d", title) else f"{title} v{c}"


def offers_feed(table_a: Path, category_clusters: int = 0, copies: int = 1) -> pd.DataFrame:
    df = pd.read_csv(table_a)
    base = pd.DataFrame({"id": df["id"].astype(str), "title": df["title"].fillna("").astype(str),
                         "product": df["cluster_id"].astype(str)})  # fmt: skip
    if category_clusters:
        base["category"] = kmeans_categories(base["title"].tolist(), df["cluster_id"].to_numpy(), category_clusters)
    parts = []
    for c in range(copies):
        part = base.copy()
        if c:
            part["id"] = part["id"] + f"-{c}"
            part["product"] = part["product"] + f"-{c}"
            part["title"] = [shifted_title(t, c) for t in part["title"]]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the wdc-products folder (tableA.csv)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--category-clusters", type=int, default=0, help="0: no category column")
    ap.add_argument("--copies", type=int, default=1, help="scale probe: N copies (timing only)")
    args = ap.parse_args(argv)
    feed = offers_feed(args.data / "tableA.csv", args.category_clusters, args.copies)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    feed.to_csv(args.out, index=False)
    print(f"{args.out}: {len(feed)} offers of {feed['product'].nunique()} products")


if __name__ == "__main__":
    main()
