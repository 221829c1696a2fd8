from __future__ import annotations

import json

import pandas as pd
import pytest

from afmrl.attributes.evaluate import evaluate_attributes
from afmrl.attributes.extractors.rules import RuleExtractor, extract_frame, mine_brands
from afmrl.catalog import read_catalog
from afmrl.catalog.synth import SPAM


def test_brand_lexicon_mined_from_titles_without_spam(synth_catalog):
    df = read_catalog(synth_catalog).listings
    truth = {json.loads(r)["brand"].lower() for r in df["reference_attributes"]}
    mined = mine_brands(list(df["title"]), list(df["product_id"]))  # titles only, no stated brands
    assert set(mined) == truth
    assert not {w.lower() for s in SPAM for w in s.split()} & set(mined)


def test_rules_recover_synthetic_attributes_from_text(synth_catalog):
    df = read_catalog(synth_catalog).listings
    ex = RuleExtractor.from_listings(df, use_provided=False)
    got = ex.extract_frame(df)
    report = evaluate_attributes(got, [json.loads(r) for r in df["reference_attributes"]])
    assert report["per_key"]["brand"]["accuracy"] == 1.0
    assert report["per_key"]["category"]["accuracy"] == 1.0
    assert report["micro"]["f1"] > 0.9
    # stated attributes are merged over what the rules read
    merged = extract_frame(df)
    stated = [json.loads(a) for a in df["attributes"]]
    for m, s in zip(merged, stated, strict=True):
        assert all(m[k] == RuleExtractor().schema.normalize_value(k, v) for k, v in s.items())


@pytest.mark.parametrize(
    ("title", "description", "expected"),
    [
        ("Sony WH-1000XM3 Wireless Noise Cancelling Headphones \u2013 Black", None,
         {"brand": "sony", "model": "wh-1000xm3", "colour": "black"}),
        ("SanDisk Cruzer Blade CZ50 16GB USB Flash Drive", None,
         {"brand": "sandisk", "model": "cz50", "capacity": "16 gb"}),
        ("Johnnie Walker - Blue Label - 700ml", None, {"brand": "johnnie walker", "size": "700 ml"}),
        ("APC Smart-UPS SRT 6000VA RM 230V", None, {"brand": "apc", "capacity": "6 kva"}),
        ("NEW!! Sony 2 in 1 cable 1 m", None, {"brand": "sony", "size": "1 m"}),
        ("Brightwell cotton tee XL - Best Price", "Pattern: striped. Colour: gray.",
         {"brand": "brightwell", "category": "t-shirt", "material": "cotton", "size": "xl", "pattern": "striped",
          "colour": "grey"}),
    ],
)
def test_rules_on_real_style_titles(title, description, expected):
    df = pd.DataFrame({
        "title": ["Sony phone", "Sony tv", "SanDisk card", "SanDisk stick", "Johnnie Walker Red", "Johnnie Walker Black",
                  "APC battery", "APC rack", "Brightwell mug", "Brightwell bottle", title],
        "product_id": ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"],
    })  # fmt: skip
    ex = RuleExtractor.from_listings(df.assign(attributes="{}"))
    got = ex.extract(title, description)
    assert {k: got.get(k) for k in expected} == expected


def test_evaluation_counts_by_hand():
    refs = [{"brand": "a", "colour": "red"}, {"brand": "b", "colour": "blue"}, {"brand": "c"}]
    preds = [{"brand": "A", "colour": "red"}, {"brand": "x"}, {"colour": "green", "pattern": "plain"}]
    r = evaluate_attributes(preds, refs, valid=[True, True, False])
    # brand: 1 right, 1 wrong, 1 missing -> tp 1, fp 1, fn 2; colour: 1 right, 1 missing -> tp 1, fn 1
    assert r["per_key"]["brand"] == pytest.approx({"support": 3, "accuracy": 1 / 3, "precision": 1 / 2,
                                                   "recall": 1 / 3, "f1": 0.4})  # fmt: skip
    assert r["per_key"]["colour"]["precision"] == 1.0 and r["per_key"]["colour"]["recall"] == 0.5
    assert r["micro"]["precision"] == pytest.approx(2 / 3) and r["micro"]["recall"] == pytest.approx(2 / 5)
    assert r["macro_f1"] == pytest.approx((0.4 + 2 / 3) / 2)
    assert r["exact_match"] == pytest.approx(1 / 3)
    assert r["valid_json_rate"] == pytest.approx(2 / 3)
    assert "pattern" not in r["per_key"]  # no reference states it: not judged
