from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from afmrl.catalog import read_catalog
from afmrl.catalog.synth import ATTRIBUTE_KEYS, attribute_differences, generate, make_products
from afmrl.config import load_config


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


def test_same_seed_same_bytes(tmp_path, synth_catalog):
    c = load_config(None, ["synth.n_base_products=10", "synth.listings_per_product=3", "synth.image_size=96"])
    generate(c.synth, c.splits, tmp_path / "again")
    assert _digest(tmp_path / "again") == _digest(synth_catalog)
    other = load_config(None, ["synth.n_base_products=10", "synth.listings_per_product=3", "synth.image_size=96",
                               "synth.seed=1"])  # fmt: skip
    generate(other.synth, other.splits, tmp_path / "other")
    assert _digest(tmp_path / "other") != _digest(synth_catalog)


def test_near_duplicates_differ_in_exactly_one_attribute():
    products = make_products(load_config(None, ["synth.n_base_products=30", "synth.near_duplicates=3"]).synth)
    by_id = {r["product_id"]: r for r in products.to_dict("records")}
    variants = products[products["variant_of"].notna()]
    assert len(variants) == 90
    keys = ("category", *ATTRIBUTE_KEYS)
    for v in variants.to_dict("records"):
        base = by_id[v["variant_of"]]
        diff = attribute_differences({k: base[k] for k in keys}, {k: v[k] for k in keys})
        assert diff == [v["changed_attribute"]]
    assert products[list(keys)].drop_duplicates().shape[0] == len(products)  # every product distinct


def test_catalogue_ground_truth_listings_and_product_splits(synth_catalog):
    cat = read_catalog(synth_catalog)
    df = cat.listings
    assert len(df) == df["product_id"].nunique() * 3
    assert df.groupby("product_id")["split"].nunique().max() == 1  # no product on two sides
    assert set(df["split"]) <= {"train", "val", "test"}
    for _, row in df.iterrows():
        truth = json.loads(row["reference_attributes"])
        provided = json.loads(row["attributes"])
        assert set(truth) == {"category", *ATTRIBUTE_KEYS}
        assert all(truth[k] == v for k, v in provided.items())  # sellers never lie, they omit
        assert (cat.image_root / row["image"]).is_file()
    # listings of one product are different renderings, not copies
    first = df[df["product_id"] == df["product_id"].iloc[0]]["image"]
    assert len({(cat.image_root / p).read_bytes() for p in first}) == len(first)
    assert pd.Series(df["title"]).nunique() > len(df) * 0.8


def test_near_duplicates_share_a_split(synth_catalog):
    products = pd.read_parquet(synth_catalog / "products.parquet")
    split_of = read_catalog(synth_catalog).listings.groupby("product_id")["split"].first()
    variants = products[products["variant_of"].notna()]
    assert len(variants) > 0
    assert all(split_of[v] == split_of[b] for v, b in zip(variants["product_id"], variants["variant_of"], strict=True))
