"""Shared helpers for importers: tolerant CSV reading, text cleaning and price parsing."""

from __future__ import annotations

import csv
import io
import math
import re
from pathlib import Path

from afmrl.catalog.sources import read_bytes, redact_uri
from afmrl.errors import DataError

_SURROGATES = re.compile("[\udc80-\udcff]")
_NUMBER = re.compile(r"[-+]?\d[\d.,]*(?:[eE][-+]?\d+)?")


def read_csv_records(path: str | Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """``(header, [(line, record), ...])`` of a CSV with a header (a local path or an fsspec URI);
    quoted fields may span lines.

    ``line`` is the physical line the record starts on (the header is line 1), so a record after a
    multi-line quoted field still names the line an editor shows. Bytes that are not UTF-8 are kept
    as surrogate escapes so that :func:`clean_text` can report the exact record and field instead
    of failing the whole file. Raises :class:`DataError` naming the file (and line) for: no header,
    no records, a quote that is never closed (the rest of the file would become one field), and a
    record spanning several lines whose field count differs from the header's (an opening quote
    closed by some later row's quote: the rows between were merged into one).
    """
    p = redact_uri(path)  # the name errors give (a URI without its credentials)
    text = read_bytes(path).decode("utf-8", errors="surrogateescape").lstrip("\ufeff")
    lines = list(io.StringIO(text, newline=""))  # physical lines, as the csv reader counts them
    reader = csv.reader(iter(lines))
    header = next(reader, [])
    if not header:
        raise DataError("empty CSV (no header)", file=p)
    if reader.line_num > 1 and _ends_inside_quotes(text):
        raise DataError("a quote opened in the header is never closed", file=p, record="line 1")
    records: list[tuple[int, dict[str, str]]] = []
    end = reader.line_num
    try:
        for row in reader:
            start, end = end + 1, reader.line_num
            if not row:
                continue  # a blank line
            merged = end > start and len(row) != len(header)
            if merged and not _ends_inside_quotes("".join(lines[start - 1 :])):  # (that one: after the loop)
                raise DataError(
                    f"a quoted field is not closed where expected: lines {start}-{end} were read as one record "
                    f"of {len(row)} fields (the header has {len(header)}); check the quotes on line {start}",
                    file=p, record=f"line {start}",
                )  # fmt: skip
            records.append((start, _as_record(header, row)))
    except csv.Error as exc:
        hint = " (a quote that is never closed?)" if "field larger than field limit" in str(exc) else ""
        raise DataError(f"malformed CSV: {exc}{hint}", file=p, record=f"line {end + 1}") from exc
    if records and _ends_inside_quotes("".join(lines[records[-1][0] - 1 :])):
        raise DataError(
            f"a quote opened in the record on line {records[-1][0]} is never closed (the rest of the file, "
            f"lines {records[-1][0]}-{len(lines)}, would be one field)",
            file=p, record=f"line {records[-1][0]}",
        )  # fmt: skip
    if not records:
        raise DataError("no records: the CSV has a header and nothing else", file=p)
    return header, records


def _as_record(header: list[str], row: list[str]) -> dict[str, str]:
    """A row as ``csv.DictReader`` gives it (extra fields under ``None``, missing ones None)."""
    record: dict = dict(zip(header, row, strict=False))
    if len(row) > len(header):
        record[None] = row[len(header) :]
    for name in header[len(row) :]:
        record[name] = None
    return record


def _ends_inside_quotes(text: str) -> bool:
    """The last record's text runs into the end of the file inside a quoted field."""
    try:
        for _ in csv.reader(io.StringIO(text, newline=""), strict=True):
            pass
    except csv.Error as exc:
        return "unexpected end of data" in str(exc)
    return False


def read_csv(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """``(header, records)``: :func:`read_csv_records` without the line numbers."""
    header, records = read_csv_records(path)
    return header, [r for _, r in records]


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
