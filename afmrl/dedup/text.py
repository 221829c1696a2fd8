"""Text normalisation for matching: word tokens, model-number-like codes and numbers of a listing."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

_WORD = re.compile(r"[a-z0-9]+")
# a code as written: letters/digits joined by - / . (``WH-1000XM3``, ``EM0320-59D``, ``T5.1``)
_CODE = re.compile(r"[a-z0-9]+(?:[-/.][a-z0-9]+)*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def normalize(text: Any) -> str:
    """Lower case, accents removed; ``None`` / NaN -> ``""``."""
    if text is None or (isinstance(text, float) and text != text):
        return ""
    folded = unicodedata.normalize("NFKD", str(text))
    return "".join(c for c in folded if not unicodedata.combining(c)).lower()


def tokens(text: str) -> list[str]:
    """Alphanumeric word tokens of normalised text."""
    return _WORD.findall(text)


def is_code(token: str) -> bool:
    """Model-number-like: letters and digits mixed (3+ characters), or a long digit run (5+)."""
    has_digit = any(c.isdigit() for c in token)
    has_alpha = any(c.isalpha() for c in token)
    return (has_digit and has_alpha and len(token) >= 3) or (token.isdigit() and len(token) >= 5)


def codes(text: str) -> set[str]:
    """Model-number-like codes of normalised text, separators removed (``wh-1000xm3`` -> ``wh1000xm3``); the
    pieces of a joined code count too (``em0320-59d`` gives ``em032059d`` and ``em0320``)."""
    out: set[str] = set()
    for raw in _CODE.findall(text):
        joined = re.sub(r"[-/.]", "", raw)
        if is_code(joined) and not _is_plain_measure(raw):
            out.add(joined)
        out.update(p for p in re.split(r"[-/.]", raw) if is_code(p) and not _is_plain_measure(p))
    return out


_MEASURE = re.compile(r"\d+(?:[.,]\d+)?(?:mm|cm|m|in|gb|tb|mb|kg|g|mg|ml|l|w|kw|v|mah|hz|ghz|mhz|x|pcs|pk|oz|lb|lbs|ft)")


def _is_plain_measure(token: str) -> bool:
    """``500gb``, ``43.5mm``, ``1500va``? Units are attributes, not model numbers (``va`` kept out on purpose:
    rare enough to be useful)."""
    return bool(_MEASURE.fullmatch(token))


def numbers(text: str) -> set[str]:
    """Numbers written in the text (``43.5``, ``1500``), decimal commas read as points."""
    return {n.replace(",", ".") for n in _NUMBER.findall(text)}


def code_similarity(a: set[str], b: set[str]) -> float:
    """1 when the two sides share a code; else the best partial agreement: one code is a prefix of the other
    (a colour suffix: ``wh1000xm3`` / ``wh1000xm3b``) scores the shorter's share of the longer; 0 when nothing
    agrees; NaN when a side has no code."""
    if not a or not b:
        return float("nan")
    if a & b:
        return 1.0
    best = 0.0
    for x in a:
        for y in b:
            short, long_ = (x, y) if len(x) <= len(y) else (y, x)
            if len(short) >= 4 and long_.startswith(short):
                best = max(best, len(short) / len(long_))
    return best
