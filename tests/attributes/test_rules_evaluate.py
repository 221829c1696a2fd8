from __future__ import annotations

import json

import pandas as pd
import pytest

from afmrl.attributes.evaluate import evaluate_attributes, pair_agreement
from afmrl.attributes.extractors.rules import RuleExtractor, extract_frame, mine_brands
from afmrl.catalog import read_catalog
from afmrl.catalog.synth import SPAM

from ..conftest import shared_dataset


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
         {"brand": "sony", "model": "wh1000xm3", "colour": "black"}),
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


def _fitted(titles: list[str]) -> RuleExtractor:
    df = pd.DataFrame({"title": titles, "product_id": [f"p{i}" for i in range(len(titles))]})
    return RuleExtractor.from_listings(df.assign(attributes="{}"))


def test_a_code_many_products_share_is_a_spec_not_their_model():
    ex = _fitted(["Kingston HX316C10FB/8 8GB DDR3 CL10", "Corsair CMZ8GX3M1A1600C10 DDR3 CL10",
                  "Crucial CT102464BA160B DDR3 CL10", "Kingston KVR16N11/8 DDR3"])  # fmt: skip
    assert {"ddr3", "cl10"} <= ex.generic_codes and "hx316c10fb8" not in ex.generic_codes
    # the longest code is still the model, but never a shared spec (before: "ddr3" for a title without one)
    assert ex.extract("HyperX Fury 8GB DDR3 CL10 DIMM").get("model") is None
    assert ex.extract("Kingston 8GB DDR3 KVR16N11/8")["model"] == "kvr16n118"
    # written with or without separators, a model number is one value
    assert ex.extract("Sony WH-1000XM3 black")["model"] == ex.extract("Sony WH1000XM3")["model"] == "wh1000xm3"
    assert _fitted(["a DDR3 b", "c DDR3 d"]).generic_codes == frozenset()  # two products: below the default 3


def test_brand_lexicon_drops_product_words_and_joins_spellings():
    titles = ["Karta VGA MSI GTX 1660", "Karta VGA Asus RTX 2060", "MSI RTX 2060 OC", "MSI B450M",
              "Asus GTX 1660", "Asus TUF B450", "Cooler Master MasterBox TD500", "CoolerMaster MasterBox Q300L", "CoolerMaster MWE 650",
              "Cooler Master H500", "Cooler Master V850", "Toner cartridge black", "Toner cartridge cyan", "Brother Toner TN-2420",
              "Brother Toner TN-2320", "Canon Toner 725", "Canon Toner 712", "Brother HL-L2375DW", "Canon EOS 250D",
              "HP Toner 85A", "HP Toner 12A", "HP LaserJet P1102"]
    lexicon = mine_brands(titles, [f"p{i}" for i in range(len(titles))])
    assert "karta vga" not in lexicon and "karta" not in lexicon  # it opens titles, but a brand follows it
    assert "toner" not in lexicon and "toner cartridge" not in lexicon  # opens 2 of the 8 titles that hold it
    assert {"msi", "asus", "brother", "canon", "hp"} <= set(lexicon) and "brother toner" not in lexicon
    assert lexicon["coolermaster"] == lexicon["cooler master"] == "cooler master"  # the spelling opening most titles
    ex = RuleExtractor(brands=lexicon)
    assert ex.extract("Karta VGA MSI GeForce GTX 1660 OC")["brand"] == "msi"
    assert ex.extract("Toner Reman Brother TN-2420")["brand"] == "brother"


def test_capacity_prefers_storage_over_frequency_whatever_the_order():
    ex = _fitted(["Corsair a", "Corsair b"])
    assert ex.extract("Corsair Vengeance DDR4 3200MHz 32GB")["capacity"] == "32 gb"
    assert ex.extract("Corsair Vengeance 32GB DDR4 3200MHz")["capacity"] == "32 gb"
    assert ex.extract("Intel Core i9 3.1 GHz")["capacity"] == "3.1 ghz"  # the only quantity


@pytest.mark.realdata
def test_rules_on_real_offers_agree_within_a_product_more_than_they_conflict(tmp_path, cfg):
    """On WDC Products' training offers, the rules read two offers of one product as differing in exactly one key
    attribute less often than as agreeing on all (the measure that AGCL's hard negatives and masks rest on)."""
    from afmrl.catalog.importers.wdc_products import import_wdc_products

    df = read_catalog(import_wdc_products(shared_dataset("wdc-products"), tmp_path / "wdc", cfg.splits)).listings
    train = df[df["split"] == "train"]
    ex = RuleExtractor.from_listings(train)
    report = pair_agreement(ex.extract_frame(train), list(train["product_id"]))
    same = report["same_product"]
    assert same["agree"] > 1.5 * same["one_differs"], same
    assert report["hard_purity"] > 0.9, report  # one key apart: nearly always two products


def test_pair_agreement_counts_by_hand():
    attrs = [{"brand": "a", "model": "x1"}, {"brand": "a", "model": "x1"}, {"brand": "a", "model": "x2"},
             {"brand": "a", "model": "x1", "colour": "red"}, {"brand": "a"}]  # fmt: skip
    report = pair_agreement(attrs, ["p", "p", "p", "q", "q"])
    # within p: (0,1) agree, (0,2) and (1,2) one apart; within q: (3,4) shares one key only
    assert report["same_product"] == {"agree": 1, "one_differs": 2, "incomparable": 1}
    # across, brand a: (0,3) (1,3) agree, (2,3) one apart, (0,4) (1,4) (2,4) incomparable
    assert report["other_product"] == {"agree": 2, "one_differs": 1, "incomparable": 3}
    assert report["mask_precision"] == 1 / 3 and report["hard_purity"] == 1 / 3
