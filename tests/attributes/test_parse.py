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


# --- hostile answers: bounded work, always writable ---


def test_oversized_answer_is_truncated_and_the_reason_says_so():
    from afmrl.attributes.parse import MAX_ANSWER_CHARS

    # 5 MB: an object, then a runaway generation of (unclosed) fences and broken objects
    filler = "```json\n{oops\n```\n{oops}\n" * (5_000_000 // 24)
    text = '{"brand": "Norvik", "colour": "red"}\n' + filler
    assert len(text) > 5_000_000 > MAX_ANSWER_CHARS
    attrs, valid, reason = parse_attributes(text)
    assert attrs == {"brand": "norvik", "colour": "red"} and valid
    assert reason is not None and "truncated" in reason and f"{MAX_ANSWER_CHARS}" in reason


def test_parse_work_is_bounded_by_the_cap(monkeypatch):
    """Structural, not timed: no scanner sees more than the cap, and only a bounded number of
    candidate objects are tried however many the answer holds."""
    from afmrl.attributes import parse

    seen: list[int] = []
    tried: list[int] = []
    real_candidates, real_try_load = parse._candidates, parse._try_load
    monkeypatch.setattr(parse, "_candidates", lambda s: seen.append(len(s)) or real_candidates(s))
    monkeypatch.setattr(parse, "_try_load", lambda c, t: tried.append(len(c)) or real_try_load(c, t))
    parse_attributes("{x}" * 20_000 + "\n```json\n{y}\n```" * 5_000)
    assert max(seen) <= parse.MAX_ANSWER_CHARS
    assert len(tried) <= parse.MAX_CANDIDATES


@pytest.mark.parametrize(
    "text",
    [
        '{"brand": "Nor\ud800vik", "colour": "red"}',  # a lone surrogate in the text
        '{"brand": "Nor\\ud800vik", "colour": "red"}',  # one escaped in the JSON (json.loads makes it)
        '{"brand": "Norvik", "colour": "red", "x\\udfff": 1}',  # in a dropped key: the reason names it
        'brand: Nor\udc80vik\ncolour: red',  # key: value lines
        b'{"brand": "Nor\xed\xa0\x80vik", "colour": "red"}',  # CESU-8 bytes of a surrogate
    ],
)
def test_surrogates_become_replacement_characters(text):
    attrs, _, reason = parse_attributes(text)
    assert attrs["colour"] == "red"
    for s in [*attrs, *attrs.values(), reason or ""]:
        s.encode("utf-8")  # strict: raises on a lone surrogate
    assert "\ufffd" in attrs.get("brand", "") + (reason or "")


def test_writable_text_keeps_pairs_and_replaces_lone_surrogates():
    from afmrl.attributes.parse import writable_text

    assert writable_text("a\ud83d\ude00b\ud800c\udfff") == "a\U0001f600b\ufffdc\ufffd"
    assert writable_text("plain") == "plain"


def test_surrogate_answer_survives_the_extract_stage_parquet_write(tmp_path, monkeypatch, cfg):
    """A lone surrogate in a model answer used to crash ``attributes.parquet``; it now comes back as U+FFFD."""
    import contextlib
    import sys
    import types

    import pandas as pd

    from afmrl.attributes.extractors import mllm as mllm_extractor
    from afmrl.catalog.importers import import_offers, parse_column_mapping
    from afmrl.config import load_config
    from afmrl.stages import extract

    feed = tmp_path / "feed.csv"
    feed.write_text("sku,name\n1,Red mug\n2,Blue mug\n")
    cat = import_offers(feed, tmp_path / "cat", parse_column_mapping("id=sku,title=name"), cfg.splits).parent
    answers = {"1": '{"brand": "Nor\ud800vik", "colour": "red"} \udfff', "2": '{"brand": "Orvo\\udc00"}'}

    class FakeExtractor:
        def __init__(self, *args, **kwargs):
            pass

        def generate(self, items, cache=None, advance=None):
            return [mllm_extractor.Generation(it.listing_id, answers[it.listing_id], 0.1, False) for it in items]

    fake_models = types.ModuleType("afmrl.models.mllm")  # the real one imports transformers (~10 s)
    fake_models.load_mllm = lambda *a, **k: types.SimpleNamespace(fingerprint="fake", model=None)
    fake_models.cpu_threads_for = lambda *a, **k: contextlib.nullcontext()
    monkeypatch.setitem(sys.modules, "afmrl.models.mllm", fake_models)
    monkeypatch.setattr(mllm_extractor, "MLLMExtractor", FakeExtractor)
    run_cfg = load_config(None, ["tracking.enabled=false", "attributes.backend=mllm",
                                 f"attributes.cache_path={tmp_path / 'cache.sqlite'}"])  # fmt: skip
    result = extract.run(run_cfg, cat, tmp_path / "out")
    table = pd.read_parquet(result.table_path).set_index("listing_id")
    assert table.loc["1", "raw"] == '{"brand": "Nor\ufffdvik", "colour": "red"} \ufffd'
    assert json.loads(table.loc["1", "extracted"]) == {"brand": "nor\ufffdvik", "colour": "red"}
    assert json.loads(table.loc["2", "extracted"]) == {"brand": "orvo\ufffd"}
