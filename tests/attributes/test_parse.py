from __future__ import annotations

import json
import random

import pytest

from afmrl.attributes.parse import parse_attributes, parse_detailed

# (what a model emitted, expected attributes, expected valid, a word the reason must contain or None)
CORPUS = [
    ('{"brand": "Norvik", "colour": "red", "size": "1L"}', {"brand": "norvik", "colour": "red", "size": "1 l"}, True, None),
    ('Sure! Here are the attributes:\n```json\n{"brand": "Norvik", "colour": "gray"}\n```\nAnything else?',
     {"brand": "norvik", "colour": "grey"}, True, "around"),
    ('```json\n{"brand": "Orvo", "material": "alu"}\n```', {"brand": "orvo", "material": "aluminium"}, True, None),
    ('{"brand": "Norvik", "colour": "red",}', {"brand": "norvik", "colour": "red"}, True, "trailing comma"),
    ("{'brand': 'Norvik', 'colour': 'blk', 'pattern': None}", {"brand": "norvik", "colour": "black"}, True, "python"),
    ('{"brand": "Norvik", "waterproof": True, "size": 500}', {"brand": "norvik", "size": "500"}, True, "waterproof"),
    ('{"Brand": "Aldera", "Color": "Orng", "Material": "poly", "foo": "bar"}',
     {"brand": "aldera", "colour": "orange", "material": "polyester"}, True, "foo (unknown key)"),
    ('{"brand": "Kestrel", "colour": ["black", "red"], "size": {"value": "6.1\\""}}',
     {"brand": "kestrel", "colour": "black/red", "size": "6.1 in"}, True, "nested value"),
    ('{"attributes": {"brand": "Solano", "category": "tee"}}', {"category": "t-shirt", "brand": "solano"}, True,
     "unwrapped"),
    ('[{"brand": "Orvo", "size": "1000 ml"}]', {"brand": "orvo", "size": "1 l"}, True, None),
    ('{"brand": "Tamsin", "colour": "red", "size": "1,5 l', {"brand": "tamsin", "colour": "red", "size": "1.5 l"}, True,
     "truncated"),
    ("brand: Vantor\ncolour: navy blue\nsize: 1 l", {"brand": "vantor", "colour": "navy", "size": "1 l"}, False,
     "not JSON"),
    ('{brand: "Lumen", colour: "teal"}', {"brand": "lumen", "colour": "teal"}, True, "unquoted"),
    ("I cannot see the image clearly.", {}, False, "no JSON"),
    ("", {}, False, "empty"),
    (None, {}, False, "not text"),
    ('{"brand": "Zephra", "colour": "unknown", "pattern": "n/a", "size": null}', {"brand": "zephra"}, True, None),
    ('{"brand": "Zephra"} and also {"colour": "red", "pattern": "striped"}', {"colour": "red", "pattern": "striped"},
     True, "around"),
    ("{\u201cbrand\u201d: \u201cQuillon\u201d, \u201ccolour\u201d: \u201cpink\u201d}", {"brand": "quillon", "colour": "pink"},
     True, "smart quotes"),
    ('{"brand": "Marlowe", "size": "size M", "category": "tee"}', {"category": "t-shirt", "brand": "marlowe", "size": "m"},
     True, None),
    ('{"brand": {"nested": {"deep": 1}}, "colour": "white"}', {"colour": "white"}, True, "brand (nested object)"),
    ('{"brand": "Norvik"}}}', {"brand": "norvik"}, True, "around"),
    ("{'brand': \"Men's Wear\", 'colour': 'Gray'}", {"brand": "men's wear", "colour": "grey"}, True, None),
    ('{"brand": "A", "brand_name": "B", "colour": 7}', {"brand": "a", "colour": "7"}, True, "duplicate"),
    ('{"product": {"brand": "Vantor", "size": "330ML"}, }', {"brand": "vantor", "size": "330 ml"}, True, None),
    (b'{"brand": "Orvo"}', {"brand": "orvo"}, True, None),
    ("{" * 200 + '"brand": "x"', {}, False, None),
]


def _is_strict_json_object(text) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except (TypeError, ValueError):
        return False


@pytest.mark.parametrize(("text", "attrs", "valid", "reason_word"), CORPUS)
def test_malformed_outputs(text, attrs, valid, reason_word):
    got, ok, reason = parse_attributes(text)
    assert got == attrs
    assert ok is valid
    if reason_word is not None:
        assert reason is not None and reason_word in reason
    if reason_word is None and _is_strict_json_object(text):
        assert reason is None, reason  # nothing repaired or dropped: nothing to report


def test_clean_object_is_strict_and_reasonless():
    res = parse_detailed('{"brand": "norvik", "colour": "red"}')
    assert res.strict and res.valid and res.reason is None
    assert res.emitted_keys == 2 and res.kept_keys == 2
    repaired = parse_detailed('{"brand": "norvik", "colour": "red",}')
    assert repaired.valid and not repaired.strict


def test_keys_come_back_in_schema_order():
    attrs, _, _ = parse_attributes('{"size": "1 l", "colour": "red", "brand": "x", "category": "bottle"}')
    assert list(attrs) == ["category", "brand", "colour", "size"]


def test_never_raises_on_random_text():
    rng = random.Random(0)
    alphabet = list('{}[]"\':,\\ \nabcTrueNone0123456789.-`') + ["```json", "null", "brand", "colour"]
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))
        attrs, valid, reason = parse_attributes(text)
        assert isinstance(attrs, dict) and isinstance(valid, bool)
        assert valid or reason is not None
