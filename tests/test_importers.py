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
    assert attrs["brand"] == "Arla" and attrs["product_type"] == "milk" and "coarse_class" not in attrs
    assert json.loads(milk["reference_attributes"])["coarse_class"] == "Milk"  # the class ids: evaluation only
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


# --- hostile feeds through the CLI: exit 2, one line naming the file (and line), nothing written ---

OFFER_COLUMNS = "id=sku,title=name,product=group"


def _import_offers_cli(tmp_path, content: bytes):
    from typer.testing import CliRunner

    from afmrl.cli import app

    src = tmp_path / "feed.csv"
    src.write_bytes(content)
    out = tmp_path / "cat"
    result = CliRunner().invoke(app, ["data", "import", "offers", str(src), "--columns", OFFER_COLUMNS, "--out", str(out)])
    return src, out, result


def _one_line(output: str) -> str:
    return " ".join(output.split())  # the console may wrap a long path


def test_offers_cli_header_only_csv_is_a_data_error(tmp_path):
    src, out, result = _import_offers_cli(tmp_path, b"sku,name,group\n")
    assert result.exit_code == 2, result.output
    assert "DataError" in result.output and str(src) in _one_line(result.output)
    assert "no records" in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    ("content", "opened"),
    [
        # the quote never closes: rows 3 and 4 would be swallowed into the title of row 2
        (b'sku,name,group\n1,Red mug,g1\n2,"Blue mug,g2\n3,Green mug,g3\n4,Tea pot,g4\n', 3),
        # a stray opening quote closed by a later row's quoted field: rows 3..5 merged into one record
        (b'sku,name,group\n1,Red mug,g1\n2,Mug,g1\n3,"Pizza stone,g3\n4,Tea pot,g4\n5,"Blue mug, large",g5\n', 4),
        # in the header: every row would become part of a column name
        (b'sku,"name,group\n1,Red mug,g1\n', 1),
    ],
)
def test_offers_cli_unclosed_quote_names_the_line_it_opened(tmp_path, content, opened):
    src, out, result = _import_offers_cli(tmp_path, content)
    assert result.exit_code == 2, result.output
    text = _one_line(result.output)
    assert str(src) in text and f"line {opened}" in text and "quote" in text, text
    assert not out.exists()


def test_offers_cli_failed_import_keeps_the_previous_catalogue(tmp_path):
    src, out, result = _import_offers_cli(tmp_path, b"sku,name,group\n1,Red mug,g1\n2,Blue mug,g2\n")
    assert result.exit_code == 0, result.output
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    src.write_bytes(b'sku,name,group\n1,Red mug,g1\n2,"Blue mug,g2\n3,Green mug,g3\n')
    from typer.testing import CliRunner

    from afmrl.cli import app

    result = CliRunner().invoke(app, ["data", "import", "offers", str(src), "--columns", OFFER_COLUMNS, "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_offers_record_line_numbers_are_physical_lines(tmp_path, cfg):
    # header = line 1; a quoted field spanning two lines moves every later record down one line
    csv = tmp_path / "feed.csv"
    csv.write_bytes(b'name,group\nRed mug,g1\n"Blue mug,\nlarge",g2\nGreen mug,g3\n')
    df = read_catalog(import_offers(csv, tmp_path / "cat", parse_column_mapping("title=name,product=group"),
                                    cfg.splits)).listings  # fmt: skip
    assert dict(zip(df["title"], df["listing_id"], strict=True)) == {
        "Red mug": "feed-2", "Blue mug,\nlarge": "feed-3", "Green mug": "feed-5"}


def test_read_csv_error_names_the_physical_line(tmp_path):
    from afmrl.catalog.importers.text import read_csv

    csv = tmp_path / "feed.csv"
    csv.write_bytes(b'a,b\n1,2\n"x\n3\n')  # the quote opened on line 3 never closes
    with pytest.raises(DataError) as exc:
        read_csv(csv)
    assert exc.value.record == "line 3" and exc.value.file == str(csv)


def test_grocery_store_split_file_errors_name_the_physical_line(tmp_path):
    (tmp_path / "classes.csv").write_text(
        "Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int),"
        "Iconic Image Path (str),Product Description Path (str)\n"
        "Granny-Smith,0,Apple,0,/iconic-images-and-descriptions/Fruit/Apple/Granny-Smith/Granny-Smith_Iconic.jpg,"
        "/iconic-images-and-descriptions/Fruit/Apple/Granny-Smith/Granny-Smith_Description.txt\n"
    )
    (tmp_path / "train.txt").write_text("train/Fruit/Apple/a.jpg, 0, 0\n\ntrain/Fruit/Apple/b.jpg, 99, 0\n")
    with pytest.raises(DataError) as exc:
        import_grocery_store(tmp_path, tmp_path / "out")
    assert exc.value.record == "line 3"
