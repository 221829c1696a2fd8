"""Bad input to `afmrl dedup --pairs` and to benchmarks/dedup.py: exit code 2 naming the file and column."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from afmrl.catalog.io import write_catalog
from afmrl.cli import app
from afmrl.dedup.pairs import product_pairs, read_pairs
from afmrl.errors import DataError

from ..conftest import load_benchmark


def _pairs(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_read_pairs_names_file_line_and_column(tmp_path):
    ok = read_pairs(_pairs(tmp_path / "ok.csv", "ltable_id,rtable_id,label\na,b,1\nb,c,0\n"), {"a", "b", "c"})
    assert ok.to_dict("list") == {"listing_a": ["a", "b"], "listing_b": ["b", "c"], "label": [1, 0]}
    cases = [
        ("ltable_id,rtable_id\na,b\n", "field label", "missing column"),
        ("ltable_id,rtable_id,label\na,b,yes\n", "record line 2, field label", "0 or 1"),
        ("ltable_id,rtable_id,label\na,b,1\na,zz,0\n", "record line 3, field rtable_id", "'zz' is not a listing"),
        ("ltable_id,rtable_id,label\na,,1\n", "record line 2, field rtable_id", "empty value"),
    ]
    for n, (text, where, what) in enumerate(cases):
        path = _pairs(tmp_path / f"bad{n}.csv", text)
        with pytest.raises(DataError) as err:
            read_pairs(path, {"a", "b", "c"})
        assert f"file {path}, {where}" in str(err.value) and what in str(err.value)


def test_product_pairs_sample_non_matching_pairs_when_every_neighbour_is_the_same_product():
    """A few products with many listings each (grocery-store's photos): every neighbour is the same product,
    so random pairs of two products give the calibration its non-matching kind."""
    ids = [f"l{i}" for i in range(12)]
    products = ["a"] * 6 + ["b"] * 6
    pairs = product_pairs(ids, products, np.ones(12, bool), {(0, 1), (6, 7)}, max_positives_per_product=5)
    matching = pairs[pairs["label"] == 1]
    other = pairs[pairs["label"] == 0]
    assert len(other) == len(matching) > 0
    by_id = dict(zip(ids, products, strict=True))
    assert all(by_id[a] != by_id[b] for a, b in zip(other["listing_a"], other["listing_b"], strict=True))


def test_product_pairs_label_neighbours_and_add_missed_positives():
    ids = ["a", "b", "c", "d", "e"]
    products = ["p", "p", "q", "p", None]
    labelled = [True, True, True, True, False]
    pairs = product_pairs(ids, products, labelled, {(0, 2), (1, 4)}, max_positives_per_product=10)
    got = {(a, b): y for a, b, y in pairs.itertuples(index=False)}
    assert got == {("a", "b"): 1, ("a", "d"): 1, ("b", "d"): 1, ("a", "c"): 0}  # e is unlabelled


def _catalog(tmp_path: Path) -> Path:
    listings = pd.DataFrame({"listing_id": ["a", "b", "c"], "product_id": ["p", "p", "q"],
                             "title": ["red mug", "red mug 300ml", "blue plate"], "split": "train",
                             "source": "test"})  # fmt: skip
    return write_catalog(listings, tmp_path / "cat")


def test_cli_refuses_a_pair_file_without_its_columns(tmp_path):
    cat = _catalog(tmp_path)
    pairs = _pairs(tmp_path / "pairs.csv", "left,right,label\na,b,1\n")
    r = CliRunner().invoke(app, ["--set", "tracking.enabled=false", "dedup", str(cat), "--pairs", str(pairs),
                                 "--out", str(tmp_path / "out")])  # fmt: skip
    assert r.exit_code == 2, r.output
    text = " ".join(r.output.split())
    assert str(pairs.name) in text and "field ltable_id" in text and "missing column" in text
    assert not (tmp_path / "out" / "groups.parquet").exists()


def test_cli_refuses_pairs_of_one_kind(tmp_path):
    cat = _catalog(tmp_path)
    pairs = _pairs(tmp_path / "pairs.csv", "ltable_id,rtable_id,label\na,b,1\n")
    r = CliRunner().invoke(app, ["--set", "tracking.enabled=false", "dedup", str(cat), "--pairs", str(pairs)])
    assert r.exit_code == 2 and "field label" in " ".join(r.output.split()), r.output


def _benchmark():
    return load_benchmark("dedup")


def test_benchmark_refuses_test_pairs_without_labels(tmp_path, capsys):
    offers = tmp_path / "offers.csv"
    offers.write_text("sku,name\n1,red mug\n2,red mug 300ml\n3,blue plate\n", encoding="utf-8")
    cal = _pairs(tmp_path / "cal.csv", "ltable_id,rtable_id,label\n1,2,1\n1,3,0\n")
    test = _pairs(tmp_path / "test.csv", "ltable_id,rtable_id\n2,3\n")
    code = _benchmark().main(["--data", str(offers), "--columns", "id=sku,title=name", "--calibration-pairs", str(cal),
                              "--pairs", str(test), "--out", str(tmp_path / "out.json")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2 and f"file {test}" in err and "field label" in err
    assert not (tmp_path / "out.json").exists()


@pytest.mark.slow
def test_benchmark_runs_on_a_small_offer_set(tmp_path):
    """The whole job from an offers CSV: import, MiniLM, Milvus Lite neighbours, fit, calibrate, group, score."""
    rows, cal, test = [], [], []
    brands = ["acme", "globex", "initech", "umbrella", "hooli", "stark"]
    for k in range(80):
        brand, code = brands[k % 6], f"x{k * 37 % 1000:03d}{'abcdef'[k // 6 % 6]}"
        rows += [(f"{k}a", f"{brand} {code} wireless speaker {k}", brand),
                 (f"{k}b", f"{brand.upper()} {code.upper()} speaker, bluetooth", brand)]  # fmt: skip
        (cal if k < 64 else test).append((f"{k}a", f"{k}b", 1))
        (cal if k < 64 else test).append((f"{k}a", f"{(k + 1) % 80}b", 0))
    offers = tmp_path / "offers.csv"
    pd.DataFrame(rows, columns=["id", "title", "maker"]).to_csv(offers, index=False)
    for name, pairs in (("cal", cal), ("test", test)):
        pd.DataFrame(pairs, columns=["ltable_id", "rtable_id", "label"]).to_csv(tmp_path / f"{name}.csv", index=False)
    out = tmp_path / "dedup.json"
    code = _benchmark().main(["--data", str(offers), "--columns", "id=id,title=title,brand=maker", "--calibration-pairs",
                              str(tmp_path / "cal.csv"), "--pairs", str(tmp_path / "test.csv"), "--out", str(out),
                              "--top-k", "3"])  # fmt: skip
    assert code == 0
    result = json.loads(out.read_text())
    assert {"precision", "recall", "f1", "threshold"} <= set(result)
    assert result["test_pairs"] == 32 and result["f1"] >= 0.8  # matching codes make these easy
    assert out.with_suffix(".md").read_text().startswith("| precision")
