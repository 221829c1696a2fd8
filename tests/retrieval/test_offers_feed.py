"""benchmarks/offers_feed.py: the WDC Products copy written as an offers feed (columns, categories, copies)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ..conftest import load_benchmark


@pytest.fixture(scope="module")
def feed():
    return load_benchmark("offers_feed")


def test_products_get_one_category_from_their_titles_mean(feed):
    # two tight groups of products in embedding space: every offer of a product shares its product's category
    rng = np.random.default_rng(0)
    centres = np.eye(4)[:2]
    products = np.repeat(np.arange(6), 3)
    emb = centres[(products >= 3).astype(int)] + 0.05 * rng.standard_normal((18, 4))
    cats = feed.cluster_products(emb, products, k=2)
    assert len(set(cats)) == 2 and all(c.startswith("cat") for c in cats)
    for p in range(6):
        assert len(set(cats[products == p])) == 1
    assert set(cats[products < 3]).isdisjoint(set(cats[products >= 3]))


def test_copies_are_products_of_their_own_with_shifted_numbers(feed, tmp_path):
    table = tmp_path / "tableA.csv"
    pd.DataFrame({"id": [1, 2, 3], "title": ["Disk 16GB 7200rpm", "Plain mug", "Serial 1234567"],
                  "cluster_id": [10, 10, 11], "brand": ["x", "x", "y"]}).to_csv(table, index=False)  # fmt: skip
    out = feed.offers_feed(table, copies=3)
    assert list(out.columns) == ["id", "title", "product"] and len(out) == 9
    assert out["id"].is_unique and out["product"].nunique() == 6
    assert out["title"].tolist()[3:6] == ["Disk 17GB 7201rpm", "Plain mug v1", "Serial 1234567"]
    assert out.loc[out["product"] == "10-2", "title"].tolist() == ["Disk 18GB 7202rpm", "Plain mug v2"]
