"""The ingest stage: data.* in params.yaml (as DVC writes it back), every format, fsspec URIs, offers images,
the source digest (KFP's cache key) and the Kubeflow data parameters."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from PIL import Image

from afmrl.catalog.ingest import ingest, limit_products
from afmrl.catalog.io import read_catalog
from afmrl.catalog.sources import redact_uri, source_digest
from afmrl.config import Config, load_config
from afmrl.errors import ConfigError, DataError
from afmrl.stages import ingest as ingest_stage

from .conftest import shared_dataset

SMALL_SYNTH = ["synth.n_base_products=4", "synth.near_duplicates=1", "synth.listings_per_product=2",
               "synth.image_size=48", "tracking.enabled=false"]  # fmt: skip


# ---- configuration ----


def test_data_defaults_keep_the_synthetic_catalogue_and_every_column_key():
    data = Config().data
    assert (data.format, data.path, data.max_products) == ("synthetic", "data/sources", None)
    columns = Config().to_dict()["data"]["columns"]
    assert set(columns) == {"id", "title", "product", "category", "brand", "description", "price", "currency",
                            "image", "attr"}  # fmt: skip
    assert all(v is None for k, v in columns.items() if k != "attr") and columns["attr"] == {}


def test_params_as_dvc_writes_them_back_load(tmp_path):
    """`dvc exp run -S` rewrites params.yaml with ruamel: null as an empty value, quotes dropped, numbers bare."""
    path = tmp_path / "params.yaml"
    path.write_text(
        "data:\n  format: offers\n  path: /feeds/shop.csv\n  columns:\n    id: 2024\n    title: name\n"
        "    product:\n    image: photo\n    attr:\n      size: size\n  max_products:\n"
        "train:\n  mixed_precision: no\n"
    )  # fmt: skip
    cfg = load_config(path)
    assert cfg.data.columns.mapping() == {"id": "2024", "title": "name", "image": "photo", "attr.size": "size"}
    assert cfg.data.columns.product is None and cfg.data.max_products is None
    path.write_text("data:\n  columns:\n    attr:\n")  # an emptied mapping
    assert load_config(path).data.columns.attr == {}


def test_default_params_round_trip_through_dvcs_own_writer(tmp_path):
    """Every section survives DVC's rewrite (dvc.utils.hydra.apply_overrides, what `dvc exp run -S` runs)."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(Config().to_dict(), sort_keys=False))
    apply_overrides(str(path), ["train.lr=0.002", "data.format=offers", "data.path=s3://shop/feed.csv",
                                "data.columns.id=sku", "data.columns.title=name", "data.columns.product=cluster",
                                "+data.columns.attr.size=size", "data.max_products=5"])  # fmt: skip
    cfg = load_config(path)
    expected = Config().to_dict()
    expected["train"]["lr"] = 0.002
    expected["data"].update(format="offers", path="s3://shop/feed.csv", max_products=5)
    expected["data"]["columns"].update(id="sku", title="name", product="cluster", attr={"size": "size"})
    assert cfg.to_dict() == expected
    assert "format: offers" in path.read_text()


@pytest.mark.parametrize(("override", "field", "words"), [
    (["data.format=parquet"], "data.format", "unknown format 'parquet'"),
    (["data.format=offers"], "data.columns", "needs data.columns.title"),
    (["data.path="], "data.path", "a folder, file or URI"),
    (["data.columns.sku=id"], "data.columns.sku", "Extra inputs"),
])  # fmt: skip
def test_bad_data_settings_name_their_key(override, field, words):
    with pytest.raises(ConfigError) as err:
        load_config(None, override)
    assert err.value.field == field and words in str(err.value)


def test_kubeflow_data_parameters_become_data_settings():
    cfg = Config()
    same = ingest_stage.with_data_settings(cfg, "", "", "{}")
    assert same.data == cfg.data
    got = ingest_stage.with_data_settings(cfg, "offers", "gs://b/feed.csv",
                                          '{"id": "sku", "title": "name", "attr": {"size": "sz"}, "attr.fit": "f"}')
    assert (got.data.format, got.data.path) == ("offers", "gs://b/feed.csv")
    assert got.data.columns.mapping() == {"id": "sku", "title": "name", "attr.size": "sz", "attr.fit": "f"}
    for bad, field in (('{"id": ', "data_columns"), ("[1]", "data_columns"), ('{"sku": "x", "title": "t"}', "data")):
        with pytest.raises(ConfigError) as err:
            ingest_stage.with_data_settings(cfg, "offers", "", bad)
        assert err.value.field == field


# ---- formats ----


def _image(path: Path, colour: str) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (32, 32), colour).save(path)
    return path.read_bytes()


def _offers_cfg(csv: str, **columns: str) -> Config:
    sets = [f"data.columns.{k}={v}" for k, v in columns.items()]
    return load_config(None, ["data.format=offers", f"data.path={csv}", "tracking.enabled=false", *sets])


def test_offers_feed_with_images_relative_absolute_uri_and_missing(tmp_path):
    import fsspec

    feed = tmp_path / "shop"
    red = _image(feed / "photos" / "red.png", "red")
    blue = _image(tmp_path / "elsewhere" / "blue.png", "blue")
    with fsspec.open("memory://h1-test/green.png", "wb") as f:
        f.write(_image(tmp_path / "green.png", "green"))
    (feed / "feed.csv").write_text(
        "sku,name,group,photo,size\n"
        "a1,Red mug,p1,photos/red.png,250 ml\n"
        f"a2,Blue mug,p1,{tmp_path / 'elsewhere' / 'blue.png'},\n"
        "a3,Green mug,p2,memory://h1-test/green.png,1 l\n"
        "a4,Grey mug,p2,photos/grey.png,\n"
        "a5,Text only,p3,,\n"
    )  # fmt: skip
    cfg = _offers_cfg(str(feed / "feed.csv"), id="sku", title="name", product="group", image="photo")
    cfg.data.columns.attr = {"size": "size"}
    result = ingest_stage.run(cfg, tmp_path / "out")
    assert (result.format, result.name, result.listings, result.products) == ("offers", "feed", 5, 3)
    cat = read_catalog(tmp_path / "out")
    rows = cat.listings.set_index("listing_id")
    assert (cat.image_root / rows.loc["a1", "image"]).read_bytes() == red  # copied into the catalogue
    assert (cat.image_root / rows.loc["a2", "image"]).read_bytes() == blue
    assert rows.loc["a3", "image"].startswith("images/") and (cat.image_root / rows.loc["a3", "image"]).is_file()
    assert pd.isna(rows.loc["a5", "image"]) and pd.isna(rows.loc["a5", "import_issues"])
    assert pd.isna(rows.loc["a4", "image"])
    assert rows.loc["a4", "import_issues"].startswith("image (column photo): file not found")
    assert json.loads(rows.loc["a1", "attributes"]) == {"size": "250 ml"}
    manifest = json.loads((tmp_path / "out" / "catalog.json").read_text())
    assert manifest["format"] == "offers" and manifest["source_digest"] == result.source_digest


def test_offers_csv_read_through_an_fsspec_uri(tmp_path):
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/h1-feed/feed.csv", b"id,title,cluster\n1,Mug red,c1\n2,Mug red 250ml,c1\n3,Cup,c2\n")
    cfg = _offers_cfg("memory://h1-feed/feed.csv", id="id", title="title", product="cluster")
    first = source_digest(cfg.data, cfg.synth, cfg.splits)
    path = ingest(cfg.data, cfg.synth, cfg.splits, tmp_path / "out")
    assert len(pd.read_parquet(path)) == 3
    assert json.loads((tmp_path / "out" / "catalog.json").read_text())["path"] == "memory://h1-feed/feed.csv"
    assert source_digest(cfg.data, cfg.synth, cfg.splits) == first  # unchanged source: the same cache key
    fs.pipe("/h1-feed/feed.csv", b"id,title,cluster\n1,Mug red,c1\n")
    assert source_digest(cfg.data, cfg.synth, cfg.splits) != first
    with pytest.raises(DataError, match="memory://h1-feed/nope.csv: not found"):
        ingest(_offers_cfg("memory://h1-feed/nope.csv", title="title").data, cfg.synth, cfg.splits, tmp_path / "x")


def test_synthetic_and_catalogue_formats_and_the_source_digest(tmp_path):
    cfg = load_config(None, SMALL_SYNTH)
    result = ingest_stage.run(cfg, tmp_path / "synthetic")
    assert result.format == "synthetic" and result.listings == 4 * 2 * 2 and sum(result.splits.values()) == 16
    again = source_digest(cfg.data, cfg.synth, cfg.splits)
    assert again == result.source_digest  # synthetic: a digest of the settings, the path ignored
    assert source_digest(load_config(None, [*SMALL_SYNTH, "synth.seed=1"]).data, cfg.synth.model_copy(
        update={"seed": 1}), cfg.splits) != again  # fmt: skip

    copy = load_config(None, ["data.format=catalogue", f"data.path={tmp_path / 'synthetic'}", "tracking.enabled=false"])
    copied = ingest_stage.run(copy, tmp_path / "copy")
    assert copied.digest == result.digest  # the same rows, re-written byte for byte
    assert read_catalog(tmp_path / "copy").image_root.resolve() == (tmp_path / "synthetic").resolve()
    with pytest.raises(DataError, match="not found"):
        ingest_stage.run(copy.model_copy(update={"data": copy.data.model_copy(update={"path": str(tmp_path / "no")})}),
                         tmp_path / "x")  # fmt: skip


def test_limit_products_keeps_whole_products():
    listings = pd.DataFrame({"listing_id": [f"l{i}" for i in range(8)],
                             "product_id": ["a", "a", "b", "b", "c", "c", None, None]})  # fmt: skip
    kept = limit_products(listings, 2)
    keys = kept["product_id"].fillna(kept["listing_id"])
    assert keys.nunique() == 2 and all(listings["product_id"].eq(p).sum() == n for p, n in keys.value_counts().items()
                                       if p in "abc")  # fmt: skip
    assert limit_products(listings, 2).equals(kept)


@pytest.mark.realdata
def test_grocery_store_and_wdc_products_ingest(tmp_path):
    grocery = shared_dataset("grocery-store")
    cfg = load_config(None, ["data.format=grocery-store", f"data.path={grocery}", "data.max_products=4",
                             "tracking.enabled=false"])  # fmt: skip
    result = ingest_stage.run(cfg, tmp_path / "grocery")
    assert result.products == 4 and result.splits.get("gallery") == 4 and result.splits.get("val", 0) > 0
    cat = read_catalog(tmp_path / "grocery")
    assert cat.image_root == grocery.resolve() and (cat.image_root / cat.listings["image"].iloc[0]).is_file()
    wdc = shared_dataset("wdc-products")
    cfg = load_config(None, ["data.format=wdc-products", f"data.path={wdc}", "tracking.enabled=false"])
    result = ingest_stage.run(cfg, tmp_path / "wdc")
    assert (result.name, result.listings, result.products) == ("wdc-products", 4575, 750)


def test_uris_lose_their_credentials():
    assert redact_uri("s3://key:secret@bucket/feed.csv?X-Amz-Signature=abc") == "s3://***@bucket/feed.csv"
    assert redact_uri("/data/feed.csv") == "/data/feed.csv"


# ---- a real MLLM is a parameter ----


@pytest.mark.slow  # imports transformers
def test_tiny_stage_points_at_a_real_model_instead_of_building_one(tmp_path, cfg):
    from afmrl.models.mllm import TINY_DIR, resolve_model
    from afmrl.stages import tiny

    real = cfg.model_copy(update={"mllm": cfg.mllm.model_copy(update={"model": "Qwen/Qwen2-VL-2B-Instruct"})})
    out = tiny.run(real, None, tmp_path / "tiny-vlm")
    assert [p.name for p in out.iterdir()] == ["base.json"]
    assert resolve_model(out) == "Qwen/Qwen2-VL-2B-Instruct"
    assert resolve_model("tiny") == TINY_DIR and resolve_model(tmp_path) == str(tmp_path)
    (out / "base.json").write_text("[1]")
    with pytest.raises(ConfigError, match="base pointer"):
        resolve_model(out)
