"""Generic offers importer: any CSV with a header, mapped with ``--columns id=...,title=...``.

Mapping keys: ``id`` (default: ``<source>-<line>``, the physical line the record starts on, the
header being line 1), ``title`` (required), ``product``, ``category``, ``brand``, ``description``,
``price``, ``currency``. Listings are text-only. A mapped brand becomes a provided attribute; any
other ``attr.<name>=<column>`` key adds a provided attribute too. A file that cannot be read as
intended (no records, a quote never closed, rows merged by a stray quote) is a DataError naming
the file and line, and nothing is written.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd

from afmrl.catalog.importers.text import clean_text, join_issues, parse_price, read_csv_records
from afmrl.catalog.io import write_catalog
from afmrl.catalog.schema import to_json
from afmrl.catalog.splits import assign_splits
from afmrl.config import SplitConfig
from afmrl.errors import DataError

KEYS = ("id", "title", "product", "category", "brand", "description", "price", "currency")


def parse_column_mapping(spec: str) -> dict[str, str]:
    """``"id=offer_id,title=name"`` -> ``{"id": "offer_id", "title": "name"}``."""
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, sep, column = part.partition("=")
        key, column = key.strip(), column.strip()
        if not sep or not column:
            raise DataError(f"column mapping entry {part!r} is not key=column", field="--columns")
        if key not in KEYS and not key.startswith("attr."):
            raise DataError(f"unknown mapping key {key!r}; use one of {list(KEYS)} or attr.<name>", field="--columns")
        mapping[key] = column
    if "title" not in mapping:
        raise DataError("the column mapping needs title=<column>", field="--columns")
    return mapping


def _cell(row: dict[str, str], mapping: dict[str, str], issues: list[str], key: str) -> str | None:
    if key not in mapping:
        return None
    return clean_text(row.get(mapping[key]), f"{key} (column {mapping[key]})", issues)


def import_offers(src: str | Path, out_dir: str | Path, mapping: dict[str, str], split_cfg: SplitConfig,
                  source: str | None = None) -> Path:  # fmt: skip
    src = Path(src)
    header, records = read_csv_records(src)
    missing = [c for c in mapping.values() if c not in header]
    if missing:
        raise DataError(f"mapped column(s) {missing} not in the header {header}", file=str(src), field=missing[0])
    source = source or src.stem
    rows = []
    for n, r in records:  # n: the physical line the record starts on
        issues: list[str] = []
        cell = partial(_cell, r, mapping, issues)
        attrs = {k[5:]: v for k, v in ((k, cell(k)) for k in mapping if k.startswith("attr.")) if v}
        if brand := cell("brand"):
            attrs["brand"] = brand
        rows.append({
            "listing_id": cell("id") or f"{source}-{n}",
            "product_id": cell("product"),
            "title": cell("title"),
            "description": cell("description"),
            "category": cell("category"),
            "price": parse_price(r.get(mapping["price"]), issues) if "price" in mapping else None,
            "currency": (cell("currency") or "").upper() or None,
            "source": source,
            "attributes": to_json(attrs),
            "reference_attributes": to_json(attrs),
            "import_issues": join_issues(issues),
            "split": None,
        })  # fmt: skip
    listings = assign_splits(pd.DataFrame(rows), split_cfg)
    return write_catalog(listings, out_dir, meta={"name": source, "source": str(src.resolve())})
