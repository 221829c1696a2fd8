"""Generic offers importer: any CSV with a header, mapped with ``--columns id=...,title=...``.

Mapping keys: ``id`` (default: ``<source>-<line>``, the physical line the record starts on, the
header being line 1), ``title`` (required), ``product``, ``category``, ``brand``, ``description``,
``price``, ``currency``, ``image``. A mapped brand becomes a provided attribute; any other
``attr.<name>=<column>`` key adds a provided attribute too. The CSV may be a local file or any
fsspec URI. ``image``: a path relative to the CSV's folder, an absolute path or a URI; each image
is copied into the catalogue's ``images/`` folder (so the catalogue travels whole, e.g. as a
Kubeflow artifact); one that cannot be read is recorded as an import issue of its record and field
(the validation gate quarantines the row). Without an image column listings are text-only. A file
that cannot be read as intended (no records, a quote never closed, rows merged by a stray quote) is
a DataError naming the file and line, and nothing is written.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd

from afmrl.atomic import atomic_path
from afmrl.catalog import sources
from afmrl.catalog.importers.text import clean_text, join_issues, parse_price, read_csv_records
from afmrl.catalog.io import write_catalog
from afmrl.catalog.schema import to_json
from afmrl.catalog.splits import assign_splits
from afmrl.config import SplitConfig
from afmrl.digest import digest_bytes
from afmrl.errors import DataError
from afmrl.progress import progress

KEYS = ("id", "title", "product", "category", "brand", "description", "price", "currency", "image")
IMAGES_DIR = "images"


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


def copy_image(ref: str, csv_folder: str | Path, out_dir: Path, copied: dict[str, str]) -> str:
    """Copy the image ``ref`` (relative to ``csv_folder``, absolute, or a URI) to ``out_dir/images/``;
    returns its path relative to ``out_dir``. ``copied``: source -> copy, so a shared image is copied once.
    A missing or unreadable image raises DataError (the caller records it as an import issue)."""
    local = sources.local_path(ref)  # a plain path or file://; None for a URI
    src = ref if local is None or local.is_absolute() else sources.join(csv_folder, ref)
    key = str(src)
    if key not in copied:
        data = sources.read_bytes(src)
        suffix = Path(key.split("?", 1)[0]).suffix.lower()
        relative = f"{IMAGES_DIR}/{digest_bytes(data)[:20]}{suffix if len(suffix) <= 5 else ''}"
        target = out_dir / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp:
                Path(tmp).write_bytes(data)
        copied[key] = relative
    return copied[key]


def import_offers(src: str | Path, out_dir: str | Path, mapping: dict[str, str], split_cfg: SplitConfig,
                  source: str | None = None) -> Path:  # fmt: skip
    """Import the CSV ``src`` (a path or an fsspec URI) into a catalogue at ``out_dir``."""
    header, records = read_csv_records(src)
    missing = [c for c in mapping.values() if c not in header]
    if missing:
        raise DataError(f"mapped column(s) {missing} not in the header {header}", file=sources.redact_uri(src),
                        field=missing[0])  # fmt: skip
    source = source or sources.name_of(src)
    out = Path(out_dir)
    csv_folder = sources.parent(src)
    copied: dict[str, str] = {}
    rows = []
    with progress("offers", len(records), "records") as advance:
        for n, r in records:  # n: the physical line the record starts on
            issues: list[str] = []
            cell = partial(_cell, r, mapping, issues)
            attrs = {k[5:]: v for k, v in ((k, cell(k)) for k in mapping if k.startswith("attr.")) if v}
            if brand := cell("brand"):
                attrs["brand"] = brand
            image = None
            if ref := cell("image"):
                try:
                    image = copy_image(ref, csv_folder, out, copied)
                except DataError as exc:
                    issues.append(f"image (column {mapping['image']}): {exc.message} ({sources.redact_uri(ref)})")
            rows.append({
                "listing_id": cell("id") or f"{source}-{n}",
                "product_id": cell("product"),
                "title": cell("title"),
                "description": cell("description"),
                "image": image,
                "category": cell("category"),
                "price": parse_price(r.get(mapping["price"]), issues) if "price" in mapping else None,
                "currency": (cell("currency") or "").upper() or None,
                "source": source,
                "attributes": to_json(attrs),
                "reference_attributes": to_json(attrs),
                "import_issues": join_issues(issues),
                "split": None,
            })  # fmt: skip
            advance(1)
    listings = assign_splits(pd.DataFrame(rows), split_cfg)
    local = sources.local_path(src)
    origin = str(local.resolve()) if local is not None else sources.redact_uri(src)
    return write_catalog(listings, out, meta={"name": source, "source": origin})
