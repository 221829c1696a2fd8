"""Fast checks of the service's parts that need no index: attribute agreement, the dedup review data,
image paths kept inside the catalogue, request body limits, and `afmrl serve` with nothing to serve."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from afmrl.errors import DataError
from afmrl.serving.catalog_images import CatalogImages
from afmrl.serving.compare import compare, extractor_for, key_attributes, query_attributes
from afmrl.serving.dedup import load_dedup


def test_compare_normalises_then_splits_agreeing_and_differing_keys():
    q = {"brand": "Norvik", "colour": "gray", "size": "1 l", "pattern": "plain"}
    c = {"brand": "norvik", "colour": "red", "size": "1000 ml", "material": "ceramic"}
    out = compare(q, c)
    assert out["agree"] == {"brand": "norvik", "size": "1 l"}
    assert out["differ"] == {"colour": {"query": "grey", "candidate": "red"}}
    assert out["only_query"] == {"pattern": "plain"} and out["only_candidate"] == {"material": "ceramic"}
    assert 0 < out["similarity"] < 1
    assert compare({}, c)["similarity"] is None  # nothing shared: no evidence either way


def test_key_attributes_read_the_title_and_keep_what_the_seller_states():
    ex = extractor_for([{"brand": "Orvo"}, {"brand": "tamsin"}], None)
    q = query_attributes("Orvo orange aluminium plain bottle 750 ml", [], ex)
    assert q["brand"] == "orvo" and q["size"] == "750 ml" and q["pattern"] == "plain"
    c = key_attributes(ex, "Top Seller | Tamsin orange bottle 750 ml", {"colour": "red"})
    assert c["brand"] == "tamsin" and c["colour"] == "red"  # stated wins over the title's "orange"
    assert compare(q, c)["differ"]["brand"] == {"query": "orvo", "candidate": "tamsin"}
    assert query_attributes("   ", [], ex) == {}


def test_dedup_data_reads_groups_and_review_queue_and_says_when_absent(tmp_path):
    assert load_dedup(None)["available"] is False and "--dedup" in load_dedup(None)["message"]
    assert "does not exist" in load_dedup(tmp_path / "nope")["message"]
    pd.DataFrame({"listing_a": ["a", "c"], "listing_b": ["b", "d"], "score": [0.4, 0.8], "threshold": 0.5,
                  "reason": "just below the threshold"}).to_parquet(tmp_path / "review.parquet")  # fmt: skip
    pd.DataFrame({"listing_id": ["a", "b", "c"], "group_id": ["g1", "g1", "g2"],
                  "group_size": [2, 2, 1]}).to_parquet(tmp_path / "groups.parquet")  # fmt: skip
    (tmp_path / "junk.parquet").write_text("not parquet")
    for path in (tmp_path, tmp_path / "groups.parquet"):  # the folder or one of its files
        d = load_dedup(path)
        assert d["available"] and d["n_pairs"] == 2 and [p["listing_a"] for p in d["pairs"]] == ["c", "a"]
        assert d["groups"] == [{"group_id": "g1", "listings": ["a", "b"]}]
        json.dumps(d)  # JSON-able


def test_catalog_images_stay_inside_the_image_root(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(b"x")
    (tmp_path.parent / "secret.jpg").write_bytes(b"s")
    pd.DataFrame({"listing_id": ["a", "b", "c"], "image": ["images/a.jpg", "../secret.jpg", None]}).to_parquet(
        tmp_path / "listings.parquet")  # fmt: skip
    images = CatalogImages(tmp_path)
    assert images.path("a") == (tmp_path / "images" / "a.jpg").resolve()
    with pytest.raises(DataError, match="escapes"):
        images.path("b")
    with pytest.raises(DataError, match="no image"):
        images.path("c")


@pytest.mark.slow  # creates an MLflow SQLite store and a Milvus Lite file
def test_serve_with_nothing_to_serve_exits_2_with_what_to_run(tmp_path):
    from afmrl.cli import app

    result = CliRunner().invoke(app, ["--set", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", "--set",
                                      f"index.uri={tmp_path / 'milvus.db'}", "serve", "--port", "0"])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "no version of 'afmrl-encoder' has alias 'champion'" in result.output and "afmrl promote" in result.output
