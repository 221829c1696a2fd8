"""Shared helpers for importers: tolerant CSV reading, text cleaning and price parsing."""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

from afmrl.errors import DataError

_SURROGATES = re.compile("[\udc80-\udcff]")
_NUMBER = re.compile(r"[-+]?\d[\d.,]*(?:[eE][-+]?\d+)?")


def read_csv(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """Read a CSV with a header; quoted fields may span lines.

    Bytes that are not UTF-8 are kept as surrogate escapes so that :func:`clean_text` can report
    the exact record and field instead of failing the whole file.
    """
    p = Path(path)
    if not p.exists():
        raise DataError("file not found", file=str(p))
    text = p.read_bytes().decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        raise DataError("empty CSV (no header)", file=str(p))
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise DataError(f"malformed CSV: {exc}", file=str(p), record=f"line {reader.line_num}") from exc
    return list(reader.fieldnames), rows


def clean_text(value: str | None, field: str, issues: list[str]) -> str | None:
    """Strip a text cell; undecodable bytes become U+FFFD and are recorded in ``issues``."""
    if value is None:
        return None
    bad = _SURROGATES.search(value)
    if bad:
        byte = ord(bad.group()) - 0xDC00
        issues.append(f"{field}: not valid UTF-8 (byte 0x{byte:02x} at character {bad.start()})")
        value = _SURROGATES.sub("\ufffd", value)
    value = value.strip()
    return value or None


def parse_price(value: str | None, issues: list[str]) -> float | None:
    """Parse prices as feeds write them: ``12.00``, ``78,79``, ``1.893E3``, ``1,299.00``, ``$5``."""
    if value is None or not value.strip():
        return None
    raw = value.strip()
    match = _NUMBER.search(raw)
    if match is None:
        return None  # "POA", "call for price": no price stated
    s = match.group()
    if "," in s and "." in s:
        s = s.replace(",", "")  # thousands separator
    elif "," in s:
        head, _, tail = s.rpartition(",")
        s = f"{head.replace(',', '')}.{tail}" if len(tail) != 3 else s.replace(",", "")
    s = s.rstrip(".")
    try:
        price = float(s)
    except ValueError:
        issues.append(f"price: cannot parse {raw!r}")
        return None
    if not math.isfinite(price):
        issues.append(f"price: not a finite number {raw!r}")
        return None
    return price


def join_issues(issues: list[str]) -> str | None:
    return "; ".join(issues) if issues else None
