from __future__ import annotations

import json

import pytest

from afmrl.catalog import read_catalog
from afmrl.catalog.importers import (
    import_grocery_store,
    import_offers,
    import_wdc_products,
    parse_column_mapping,
)
from afmrl.catalog.importers.text import parse_price
from afmrl.errors import DataError

from .conftest import shared_dataset


@pytest.mark.realdata
def test_grocery_store_counts_and_attributes(tmp_path):
    src = shared_dataset("grocery-store")
    cat = read_catalog(import_grocery_store(src, tmp_path / "gs"))
    df = cat.listings
    counts = df.groupby(["source", "split"]).size().to_dict()
    assert counts == {("grocery-store-photo", "train"): 2640, ("grocery-store-photo", "val"): 296,
                      ("catalogue", "gallery"): 81}  # fmt: skip
    assert df["listing_id"].is_unique
    assert df["product_id"].nunique() == 81
    assert all((cat.image_root / p).is_file() for p in df["image"].sample(50, random_state=0))
    milk = df[df["listing_id"] == "gs-catalogue-Arla-Ecological-Medium-Fat-Milk"].iloc[0]
    attrs = json.loads(milk["attributes"])
    assert attrs["brand"] == "Arla" and attrs["product_type"] == "milk" and attrs["coarse_class"] == "Milk"
    assert milk["description"].startswith("Fresh skimmed Milk")
    juice = json.loads(df[df["product_id"] == "God-Morgon-Orange-Juice"]["attributes"].iloc[0])
    assert juice["brand"] == "God Morgon"
    apple = json.loads(df[df["product_id"] == "Granny-Smith"]["attributes"].iloc[0])
    assert "brand" not in apple and apple["variety"] == "granny smith"


@pytest.mark.realdata
def test_wdc_products_counts_prices_and_product_splits(tmp_path, cfg):
    src = shared_dataset("wdc-products")
    df = read_catalog(import_wdc_products(src, tmp_path / "wdc", cfg.splits)).listings
    assert len(df) == 4575 and df["product_id"].nunique() == 750
    assert df.groupby("product_id")["split"].nunique().max() == 1
    assert df["price"].notna().mean() > 0.9
    offer = df[df["listing_id"] == "wdc-20467137"].iloc[0]
    assert json.loads(offer["attributes"]) == {"brand": "Corsair"} and offer["price"] == 79.0
    assert offer["currency"] == "AUD"


def test_offers_importer_maps_columns_and_flags_undecodable_text(tmp_path, cfg):
    csv = tmp_path / "feed.csv"
    csv.write_bytes(
        b"sku,name,group,maker,cost,cur\n"
        b"1,Red mug 350 ml,g1,Norvik,\"1,299.50\",usd\n"
        b"2,Caf\xe9 mug,g1,Norvik,3,EUR\n"
        b"3,\"Blue mug,\nlarge\",g2,,POA,\n"
    )
    mapping = parse_column_mapping("id=sku,title=name,product=group,brand=maker,price=cost,currency=cur")
    df = read_catalog(import_offers(csv, tmp_path / "cat", mapping, cfg.splits)).listings.set_index("listing_id")
    assert df.loc["1", "price"] == 1299.5 and df.loc["1", "currency"] == "USD"
    assert json.loads(df.loc["1", "attributes"]) == {"brand": "Norvik"}
    assert "title (column name): not valid UTF-8 (byte 0xe9" in df.loc["2", "import_issues"]
    assert df.loc["2", "title"] == "Caf\ufffd mug"
    assert df.loc["3", "title"] == "Blue mug,\nlarge" and df.loc["3", "price"] != df.loc["3", "price"]  # NaN
    assert df.loc["1", "split"] == df.loc["2", "split"]  # same product, same split


def test_offers_mapping_errors(tmp_path, cfg):
    with pytest.raises(DataError, match="title"):
        parse_column_mapping("id=sku")
    with pytest.raises(DataError, match="unknown mapping key"):
        parse_column_mapping("title=a,colour=b")
    csv = tmp_path / "f.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(DataError) as exc:
        import_offers(csv, tmp_path / "o", parse_column_mapping("title=name"), cfg.splits)
    assert exc.value.field == "name" and exc.value.file == str(csv)


@pytest.mark.parametrize(
    ("raw", "value"),
    [("12.00", 12.0), ("78,79", 78.79), ("1.893E3", 1893.0), ("1,299", 1299.0), ("4,314.99 Lei;", 4314.99),
     ("POA", None), ("", None)],  # fmt: skip
)
def test_parse_price(raw, value):
    assert parse_price(raw, []) == value
