from __future__ import annotations

import pandas as pd
import pytest

from afmrl.catalog import read_catalog, write_catalog
from afmrl.catalog.schema import COLUMNS, parse_json_object
from afmrl.errors import DataError


def _rows():
    return pd.DataFrame(
        {"listing_id": ["a", "b"], "product_id": ["p1", None], "title": ["Red mug", "Blue mug"],
         "price": [3.5, None], "source": ["x", "x"], "attributes": [{"colour": "red"}, None], "split": ["train", None]}
    )  # fmt: skip


def test_roundtrip_keeps_values_and_adds_missing_columns(tmp_path):
    write_catalog(_rows(), tmp_path / "cat", image_root=tmp_path / "imgs")
    cat = read_catalog(tmp_path / "cat")
    df = cat.listings
    assert list(df.columns) == list(COLUMNS)
    assert df["listing_id"].tolist() == ["a", "b"]
    assert df["product_id"].iloc[1] is None
    assert parse_json_object(df["attributes"].iloc[0]) == {"colour": "red"}
    assert df["attributes"].iloc[1] == "{}"
    assert pd.isna(df["price"].iloc[1])
    assert cat.image_root.resolve() == (tmp_path / "imgs").resolve()


def test_unknown_column_is_an_error(tmp_path):
    with pytest.raises(DataError, match="unknown column"):
        write_catalog(_rows().assign(colour="red"), tmp_path)


def test_non_numeric_price_names_record_and_field(tmp_path):
    df = _rows().astype({"price": object})
    df.loc[1, "price"] = "cheap"
    with pytest.raises(DataError) as exc:
        write_catalog(df, tmp_path)
    assert exc.value.record == "b" and exc.value.field == "price"


def test_missing_table_is_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="listings.parquet"):
        read_catalog(tmp_path)


def test_attributes_must_be_json_objects():
    with pytest.raises(DataError) as exc:
        parse_json_object("[1, 2]", record="x")
    assert exc.value.record == "x" and exc.value.field == "attributes"
