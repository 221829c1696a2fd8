from __future__ import annotations

import pandas as pd

from afmrl.catalog.splits import assign_splits, eval_roles
from afmrl.config import SplitConfig


def test_assign_splits_by_product_keeps_existing_and_is_stable():
    df = pd.DataFrame({"listing_id": [f"l{i}" for i in range(400)],
                       "product_id": [f"p{i // 4}" for i in range(400)], "split": [None] * 399 + ["gallery"]})  # fmt: skip
    cfg = SplitConfig(seed=3, val_fraction=0.2, test_fraction=0.2)
    out = assign_splits(df, cfg)
    assert out["split"].iloc[-1] == "gallery"
    assert out.iloc[:-1].groupby("product_id")["split"].nunique().max() == 1
    share = out["split"].value_counts(normalize=True)
    assert 0.1 < share["val"] < 0.3 and 0.1 < share["test"] < 0.3
    again = assign_splits(df.iloc[::-1], cfg).sort_index()
    assert again["split"].tolist() == out["split"].tolist()


def test_eval_roles_protocol():
    df = pd.DataFrame({
        "listing_id": ["a1", "a2", "a3", "b1", "c1", "c2", "u1", "t1"],
        "product_id": ["A", "A", "A", "B", "C", "C", None, "A"],
        "split": ["val", "val", "val", "val", "val", "gallery", "val", "train"],
    })  # fmt: skip
    roles = eval_roles(df, "val", seed=0)
    by_id = dict(zip(df["listing_id"], roles, strict=True))
    assert sorted(by_id[x] for x in ("a1", "a2", "a3")) == ["gallery", "query", "query"]
    assert by_id["b1"] == "gallery" and by_id["u1"] == "gallery"  # singletons / unlabeled: distractors
    assert by_id["c1"] == "query" and by_id["c2"] == "gallery"  # catalogue listing is the gallery item
    assert pd.isna(by_id["t1"])  # other splits are not used
