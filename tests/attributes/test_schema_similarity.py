from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from afmrl.attributes.normalize import clean_text, normalize_size
from afmrl.attributes.schema import DEFAULT_SCHEMA, enhanced_text, serialize_attributes
from afmrl.attributes.similarity import (
    all_agree,
    attribute_codes,
    attribute_similarity,
    pairwise_agreement,
    pairwise_attribute_similarity,
    similarity_from_codes,
    weights_over_defaults,
)
from afmrl.catalog.synth import BRANDS, CATEGORIES, COLOURS, MATERIAL_STYLE, PATTERNS


@pytest.mark.parametrize(
    ("forms", "canonical"),
    [
        (["1 l", "1L", "1000 ml", "1,0 litre", "100 cl", " 1 LTR "], "1 l"),
        (["330ml", "330 ML", "33 cl"], "330 ml"),
        (["1.5 l", "1500 ml", "1,5L"], "1.5 l"),
        (['6.1"', "6.1 in", "6.1 inch", "6.1 inches", "6.1\u2033"], "6.1 in"),
        (["32GB", "32 gb", "32 GB"], "32 gb"),
        (["1 TB", "1000 GB"], "1 tb"),
        (["2 kg", "2000 g"], "2 kg"),
        (["M", "size M", "Medium", "med"], "m"),
        (["XL", "x-large", "extra large", "size xl"], "xl"),
    ],
)
def test_units_and_sizes_have_one_canonical_form(forms, canonical):
    assert {normalize_size(f) for f in forms} == {canonical}


@pytest.mark.parametrize(
    ("key", "forms", "canonical"),
    [
        ("colour", ["grey", "gray", "Gry", " GREY "], "grey"),
        ("colour", ["black", "blk", "BLK"], "black"),
        ("colour", ["orange", "orng"], "orange"),
        ("material", ["aluminium", "aluminum", "alu", "ALU"], "aluminium"),
        ("material", ["polyester", "poly"], "polyester"),
        ("category", ["t-shirt", "tee", "T-Shirt", "tshirt", "t shirt"], "t-shirt"),
        ("category", ["backpack", "bkpk", "rucksack"], "backpack"),
        ("pattern", ["striped", "stripe", "stripes"], "striped"),
        ("brand", ["TAG  Heuer", "tag heuer ", "Tag\tHeuer"], "tag heuer"),
        ("model", ["WH-1000XM3", "wh-1000xm3 ", "WH 1000XM3"], "wh1000xm3"),
        ("fine_class", ["Arla-Ecological-Medium-Fat-Milk", "arla ecological medium fat milk"],
         "arla ecological medium fat milk"),
    ],
)
def test_synonyms_case_whitespace(key, forms, canonical):
    assert {DEFAULT_SCHEMA.normalize_value(key, f) for f in forms} == {canonical}


def test_null_like_values_are_missing():
    assert [clean_text(v) for v in ("", "N/A", "unknown", " none ", None, "-")] == [None] * 6
    assert DEFAULT_SCHEMA.normalize({"brand": "unknown", "colour": "Red", "Color": "blue", "foo": 1}) == {"colour": "red"}


def test_default_schema_covers_the_three_catalogues():
    for key in ("category", "brand", "colour", "pattern", "size", "material"):  # synthetic
        assert key in DEFAULT_SCHEMA
    for key in ("coarse_class", "fine_class", "product_type", "brand", "variety"):  # grocery-store
        assert key in DEFAULT_SCHEMA
    for key in ("brand", "model", "colour", "capacity"):  # wdc-products
        assert key in DEFAULT_SCHEMA
    # every synthetic value survives normalisation unchanged (apart from case) and enums know it
    assert set(COLOURS) <= set(DEFAULT_SCHEMA["colour"].vocabulary)
    assert set(PATTERNS) <= set(DEFAULT_SCHEMA["pattern"].vocabulary)
    assert set(MATERIAL_STYLE) <= set(DEFAULT_SCHEMA["material"].vocabulary)
    assert set(CATEGORIES) <= set(DEFAULT_SCHEMA["category"].vocabulary)
    for spec in CATEGORIES.values():
        for size in spec.sizes:
            assert DEFAULT_SCHEMA.normalize_value("size", size) == normalize_size(size.upper())
    assert {DEFAULT_SCHEMA.normalize_value("brand", b) for b in BRANDS} == {b.lower() for b in BRANDS}


def test_serialize_is_stable_and_in_schema_order():
    a = {"size": "1 l", "colour": "red", "brand": "norvik", "zzz": "x", "aaa": "y", "pattern": ""}
    b = dict(reversed(list(a.items())))
    assert serialize_attributes(a) == serialize_attributes(b) == "brand: norvik; colour: red; size: 1 l; aaa: y; zzz: x"
    assert enhanced_text("Norvik bottle", {"colour": "red"}) == "Norvik bottle | colour: red"
    assert enhanced_text("Norvik bottle", {}) == "Norvik bottle"


def test_similarity_counts_only_shared_keys():
    w = {"brand": 2.0, "colour": 1.0, "size": 1.0}
    a = {"brand": "Norvik", "colour": "red", "size": "1 l"}
    # normalisation first: 1000 ml is 1 l, RED is red
    assert attribute_similarity(a, {"brand": "norvik", "colour": "RED", "size": "1000 ml"}, w) == 1.0
    # a wrong colour costs its weight share; brand weighs double
    assert attribute_similarity(a, {"brand": "norvik", "colour": "blue", "size": "1L"}, w) == pytest.approx(3 / 4)
    assert attribute_similarity(a, {"brand": "orvo", "colour": "red", "size": "1L"}, w) == pytest.approx(2 / 4)
    # a key only one side states is unknown, not a disagreement
    assert attribute_similarity(a, {"brand": "norvik"}, w) == 1.0
    # nothing shared: the `missing` value
    assert attribute_similarity(a, {"pattern": "plain"}, w) == 0.0
    assert attribute_similarity(a, {"pattern": "plain"}, w, missing=0.5) == 0.5
    # keys without weight are ignored
    assert attribute_similarity({"pattern": "plain"}, {"pattern": "dotted"}, w, missing=-1) == -1


def test_pairwise_matches_scalar_and_all_agree_needs_evidence():
    rng = random.Random(0)
    values = {"brand": ["a", "b", None], "colour": ["red", "grey", "gray", None], "size": ["1 l", "1000 ml", "2 l", None]}
    attrs = [{k: rng.choice(v) for k, v in values.items() if rng.choice(v) is not None} for _ in range(25)]
    w = {"brand": 2.0, "colour": 1.0, "size": 0.5}
    sim = pairwise_attribute_similarity(attrs, w)
    assert sim.shape == (25, 25) and sim.dtype == np.float32
    for i, j in itertools.product(range(25), repeat=2):
        assert sim[i, j] == pytest.approx(attribute_similarity(attrs[i], attrs[j], w), abs=1e-6)
    agree = all_agree(attrs, w, min_shared=2)
    sim2, agree2, shared = pairwise_agreement(attrs, w, min_shared=2)
    assert (agree == agree2).all() and (sim == sim2).all()
    assert (agree == ((shared >= 2) & np.isclose(sim, 1.0))).all()
    assert not all_agree([{"brand": "a"}, {"colour": "red"}], w)[0, 1]  # nothing shared: never "the same"
    assert all_agree([{"colour": "grey"}, {"colour": "gray"}], w)[0, 1]


def test_weights_over_defaults_keep_the_keys_not_named():
    w = weights_over_defaults({"category": 0.0, "brand": 2.0})
    assert w["brand"] == 2.0 and w["category"] == 0.0 and w["colour"] == DEFAULT_SCHEMA.default_weights()["colour"]
    attrs = [{"category": "shoes", "brand": "orvo", "colour": "red"}, {"category": "shoes", "brand": "orvo"}]
    _, kept = attribute_codes(attrs, w)
    assert len(kept) == len([k for k, v in w.items() if v > 0])  # category left out, every other key kept
    codes, _ = attribute_codes(attrs, w)
    sim, comparable = similarity_from_codes(codes, kept, min_shared=2)
    assert not comparable[0, 1]  # brand alone is shared once category no longer counts
