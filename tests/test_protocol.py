"""The benchmark protocol's data side (issue 14): no label reaches a model input, lexicons come from
training listings only, the product-disjoint setting, photo categories from the catalogue."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from afmrl.catalog import read_catalog, write_catalog
from afmrl.catalog.importers import import_grocery_store
from afmrl.catalog.importers.grocery_store import SHOP_KEYS
from afmrl.catalog.splits import UNUSED, hold_out_products, training_listings
from afmrl.config import Config
from afmrl.models.inputs import listing_attributes, rules_extractor
from afmrl.retrieval.evaluate import query_categories

from .conftest import SHARED_DATA, shared_dataset
from .grocery_layout import write_grocery_layout

LEAK_CHECK = SHARED_DATA.parent / "tools" / "leak-check.py"


def test_a_grocery_photo_carries_no_text_and_the_catalogue_only_shop_attributes(tmp_path):
    cat = read_catalog(import_grocery_store(write_grocery_layout(tmp_path / "src"), tmp_path / "gs")).listings
    photos = cat[cat["source"] == "grocery-store-photo"]
    assert len(photos) == 16
    assert photos["title"].isna().all() and photos["description"].isna().all() and photos["category"].isna().all()
    assert (photos["attributes"] == "{}").all()
    ref = [json.loads(r) for r in photos["reference_attributes"]]  # the labels: evaluation only
    assert [r["fine_class"] for r in ref] == photos["product_id"].tolist()
    listings = cat[cat["split"] == "gallery"].set_index("product_id")
    milk = json.loads(listings.loc["Arla-Standard-Milk", "attributes"])
    assert milk == {"product_type": "milk", "brand": "Arla", "variety": "standard milk"}
    assert all(set(json.loads(a)) <= set(SHOP_KEYS) for a in listings["attributes"])
    assert json.loads(listings.loc["Arla-Standard-Milk", "reference_attributes"])["fine_class"] == "Arla-Standard-Milk"
    assert listings.loc["Pink-Lady", "category"] == "fruit" and listings.loc["Pink-Lady", "title"] == "Pink Lady"


@pytest.mark.slow  # subprocess
@pytest.mark.realdata
def test_the_imported_grocery_store_passes_the_leak_check(tmp_path):
    src = shared_dataset("grocery-store")
    if not LEAK_CHECK.is_file():
        pytest.skip(f"the leak check is absent: {LEAK_CHECK}")
    import_grocery_store(src, tmp_path / "gs")
    done = subprocess.run([sys.executable, str(LEAK_CHECK), str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "naming their product 0" in done.stdout


@pytest.mark.slow  # the validation gate (Great Expectations, image decoding)
def test_bare_photos_pass_the_validation_gate(tmp_path, cfg):
    from afmrl.stages import validate

    src = import_grocery_store(write_grocery_layout(tmp_path / "src"), tmp_path / "gs")
    result = validate.run(cfg, src, tmp_path / "valid")
    assert len(read_catalog(tmp_path / "valid").listings) == len(read_catalog(src).listings)
    assert json.loads(result.report_path.read_text())["quarantined"] == 0


# ---- lexicons from training listings only


WARES = ("kettle", "toaster", "blender")


def _offers() -> pd.DataFrame:
    rows = []
    for split, brand, n in (("train", "Acme", 3), ("train", "Borealis", 3), ("test", "Zephyrine", 3)):
        for i in range(n):
            rows.append({"listing_id": f"{brand}-{i}", "product_id": f"{brand}-p{i}", "title": f"{brand} {WARES[i]} k{i}",
                         "description": None, "category": None, "attributes": "{}", "split": split})  # fmt: skip
    return pd.DataFrame(rows)


def test_a_brand_only_in_test_listings_is_not_in_the_lexicon():
    df = _offers()
    brands = rules_extractor(df).brands
    assert "acme" in brands and "borealis" in brands and "zephyrine" not in brands
    enc = Config().encoder.model_copy(update={"attributes_source": "rules"})
    test_rows = df[df["split"] == "test"]
    fitted = listing_attributes(test_rows, enc, fit_on=df)
    assert not any("brand" in a for a in fitted)  # applied to test listings with the training lexicon
    assert not any("brand" in a for a in listing_attributes(df, enc)[-3:])  # fitted on the frame's train split
    train_rows = df[df["split"] == "train"]
    assert [a.get("brand") for a in listing_attributes(train_rows, enc, fit_on=df)] == ["acme"] * 3 + ["borealis"] * 3


def test_training_listings_keep_the_catalogue_listings_of_trained_products_only():
    df = pd.DataFrame({"listing_id": list("abcde"), "product_id": ["p", "q", "p", "q", "r"],
                       "split": ["train", "test", "gallery", "gallery", "gallery"]})  # fmt: skip
    assert training_listings(df)["listing_id"].tolist() == ["a", "c"]
    no_train = df.assign(split="test")
    assert training_listings(no_train) is no_train


def test_the_extract_stage_mines_its_lexicon_from_training_listings(tmp_path):
    from afmrl.stages import extract

    df = _offers().assign(source="test")
    write_catalog(df, tmp_path / "cat")
    cfg = Config().model_copy(update={"tracking": Config().tracking.model_copy(update={"enabled": False})})
    result = extract.run(cfg, tmp_path / "cat", tmp_path / "attrs")
    table = pd.read_parquet(result.table_path).set_index("listing_id")
    got = {lid: json.loads(a).get("brand") for lid, a in table["attributes"].items()}
    assert got["Acme-0"] == "acme" and got["Zephyrine-0"] is None


# ---- product-disjoint setting


def _catalogue(n_products: int = 40) -> pd.DataFrame:
    rows = []
    for p in range(n_products):
        rows.append({"listing_id": f"g{p}", "product_id": f"p{p}", "split": "gallery"})
        rows += [{"listing_id": f"t{p}-{k}", "product_id": f"p{p}", "split": "train"} for k in range(3)]
        rows.append({"listing_id": f"v{p}", "product_id": f"p{p}", "split": "test"})
    rows.append({"listing_id": "u0", "product_id": None, "split": "test"})  # unlabelled: a distractor
    return pd.DataFrame(rows)


def test_hold_out_products_makes_train_and_evaluation_disjoint():
    df = _catalogue()
    out = hold_out_products(df, 0.25, 0, "test")
    trained = set(out.loc[out["split"] == "train", "product_id"])
    evaluated = set(out.loc[(out["split"] == "test") & out["product_id"].notna(), "product_id"])
    assert len(evaluated) == 10 and len(trained) == 30 and not trained & evaluated
    pd.testing.assert_frame_equal(out[out["split"] == "gallery"], df[df["split"] == "gallery"])  # the whole catalogue
    assert out.loc[out["listing_id"] == "u0", "split"].item() == "test"
    assert set(out["split"]) == {"train", "test", "gallery", UNUSED}
    assert len(out) == len(df)
    pd.testing.assert_frame_equal(out, hold_out_products(df, 0.25, 0, "test"))  # deterministic
    other = hold_out_products(df, 0.25, 1, "test")
    assert set(other.loc[other["split"] == "test", "product_id"].dropna()) != evaluated  # the seed picks


def test_hold_out_products_without_a_catalogue_uses_every_labelled_product():
    df = _catalogue(20)
    df = df[df["split"] != "gallery"]
    out = hold_out_products(df, 0.5, 3, "test")
    trained = set(out.loc[out["split"] == "train", "product_id"])
    evaluated = set(out.loc[out["split"] == "test", "product_id"].dropna())
    assert len(evaluated) == 10 and len(trained) == 10 and not trained & evaluated
    with pytest.raises(ValueError, match="share"):
        hold_out_products(df, 1.0, 0, "test")


def test_a_photo_without_category_takes_its_catalogue_listings():
    df = pd.DataFrame({"listing_id": ["g1", "g2", "ph1", "ph2", "ph3"], "product_id": ["a", "b", "a", "c", None],
                       "category": ["fruit", "milk", None, None, None],
                       "split": ["gallery", "gallery", "val", "val", "val"]})  # fmt: skip
    assert query_categories(df) == ["fruit", "milk", "fruit", None, None]


def test_product_disjoint_on_the_layout_keeps_photos_of_held_products_out_of_training(tmp_path):
    cat = read_catalog(import_grocery_store(write_grocery_layout(Path(tmp_path / "src")), tmp_path / "gs")).listings
    out = hold_out_products(cat, 0.25, 0, "val")
    held = set(out.loc[out["split"] == "val", "product_id"])
    assert len(held) == 1 and not held & set(out.loc[out["split"] == "train", "product_id"])
    assert (out["split"] == "gallery").sum() == 4
