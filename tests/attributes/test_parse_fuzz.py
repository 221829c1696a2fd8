"""Fuzz the attribute parser: whatever a model emits, ``parse_attributes`` returns a writable
``(dict, bool, reason)`` and never raises (fast tier: each test runs ~200 examples in a few seconds)."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from afmrl.attributes.parse import MAX_ANSWER_CHARS, parse_attributes

FUZZ = settings(max_examples=200, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip

# any code point, with lone surrogates and control characters drawn often
ANY_CHAR = st.sampled_from(["\ud800", "\udbff", "\udc80", "\udfff", "\x00", "\x1b", "\u2028", "\ufffd", '"', "\\"]) | (
    st.characters(codec=None, categories=None, exclude_categories=())
)
TOKENS = st.sampled_from([
    "{", "}", "[", "]", "(", ")", '"', "'", ":", ",", "=", " ", "\n", "\t", "\\", "`", "```", "```json\n",
    "brand", "colour", "Color", "size", "material", '"brand"', "'colour'", "True", "False", "None", "null",
    "1.5 l", "500", "-1e999", "Norvik", "red", "\ud800", "\udfff", "\\ud800", "\\u0000", "\x00", "\x1b",
    "\u2028", "\ufeff", "“", "”", "- ", "* ", "value", "{\"value\": ", "n/a",
])  # fmt: skip


def _check(text) -> None:
    attrs, valid, reason = parse_attributes(text)
    assert isinstance(attrs, dict) and isinstance(valid, bool)
    assert reason is None or isinstance(reason, str)
    assert valid or reason is not None  # an answer that yields nothing says why
    for key, value in attrs.items():
        assert isinstance(key, str) and isinstance(value, str | list)
        for s in [key, *(value if isinstance(value, list) else [value])]:
            assert isinstance(s, str)
            s.encode("utf-8")  # writable: no lone surrogate
    (reason or "").encode("utf-8")


@FUZZ
@given(st.text(ANY_CHAR, max_size=400))
def test_arbitrary_text_never_raises(text):
    _check(text)


@FUZZ
@given(st.lists(TOKENS, max_size=120).map("".join))
def test_json_like_token_soup_never_raises(text):
    _check(text)


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(data):
    _check(data)


@FUZZ
@given(st.sampled_from(["[", "{", '{"a": ', "{'a': [", "(", '"', "```json\n{", '{"brand": {"value": ']),
       st.integers(1, 20_000), st.sampled_from(["", "}", "]", '"brand": "x"}', "```"]))  # fmt: skip
def test_huge_nesting_and_unbalanced_fences_never_raise(opener, depth, tail):
    text = opener * depth + tail
    _check(text)
    if len(text) > MAX_ANSWER_CHARS:
        assert "truncated" in parse_attributes(text)[2]


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(ANY_CHAR, max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(ANY_CHAR, max_size=8), inner, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(st.dictionaries(st.sampled_from(["brand", "colour", "Color", "size", "material", "category", "x"])
                       | st.text(ANY_CHAR, max_size=8),
                       JSON_VALUES, max_size=6))  # fmt: skip
def test_json_objects_parse_to_a_valid_result(obj):
    text = json.dumps(obj)  # escapes lone surrogates as \udxxx: json.loads brings them back
    _check(text)
    if len(obj) != 1:  # (one key may be a wrapper around a list: {"items": []} has no object to read)
        assert parse_attributes(text)[1] is True
