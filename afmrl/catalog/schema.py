"""Catalogue schema: one row per listing.

| column                | type            | meaning                                                            |
|-----------------------|-----------------|--------------------------------------------------------------------|
| listing_id            | string, unique  | the listing (offer, photo, catalogue entry)                        |
| product_id            | string or null  | identical-product group; null for unlabeled data                   |
| title                 | string or null  | listing title (required unless a bare photo: image, no description)|
| description           | string or null  | free text                                                          |
| image                 | string or null  | image path relative to the catalogue's image root (POSIX, no '..') |
| category              | string or null  | product category                                                   |
| price                 | float or null   | price in `currency`                                                |
| currency              | string or null  | ISO 4217 code                                                      |
| source                | string          | where the listing came from (importer or seller feed name)         |
| attributes            | string (JSON)   | provided attributes, a JSON object (seller-given or from the data) |
| reference_attributes  | string (JSON)   | ground truth for attribute evaluation only, never used to train    |
| split                 | string or null  | train / val / test, gallery (reference listings for every split),  |
|                       |                 | or unused (held out of training and evaluation: product-disjoint)  |
| import_issues         | string or null  | problems the importer found (e.g. undecodable bytes), for the gate |

The table is ``listings.parquet`` in the catalogue folder; ``catalog.json`` beside it records the
format version and the image root (default ``.``, i.e. the catalogue folder itself; an importer
that leaves images where they are records their folder instead of copying them).
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pyarrow as pa

from afmrl.errors import DataError

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test", "gallery", "unused")

SCHEMA = pa.schema(
    [
        ("listing_id", pa.string()),
        ("product_id", pa.string()),
        ("title", pa.string()),
        ("description", pa.string()),
        ("image", pa.string()),
        ("category", pa.string()),
        ("price", pa.float64()),
        ("currency", pa.string()),
        ("source", pa.string()),
        ("attributes", pa.string()),
        ("reference_attributes", pa.string()),
        ("split", pa.string()),
        ("import_issues", pa.string()),
    ]
)
COLUMNS = tuple(SCHEMA.names)
REQUIRED = ("listing_id", "title", "source")
JSON_COLUMNS = ("attributes", "reference_attributes")


def to_json(obj: dict[str, Any] | None) -> str:
    """Serialise an attribute dict deterministically (sorted keys, no ASCII escaping)."""
    return json.dumps(obj or {}, sort_keys=True, ensure_ascii=False)


def parse_json_object(text: Any, *, record: Any = None, field: str = "attributes") -> dict[str, Any]:
    """Parse a JSON-object cell; empty/null means {}."""
    if text is None or (isinstance(text, float) and pd.isna(text)) or text == "":
        return {}
    try:
        value = json.loads(text)
    except RecursionError:
        raise DataError("not valid JSON: nested too deeply", record=record, field=field) from None
    except (TypeError, ValueError) as exc:  # JSONDecodeError, or an integer too long to convert
        raise DataError(f"not valid JSON: {exc}", record=record, field=field) from exc
    if not isinstance(value, dict):
        raise DataError(f"must be a JSON object, got {type(value).__name__}", record=record, field=field)
    return value


def conform(df: pd.DataFrame, *, file: str | None = None) -> pd.DataFrame:
    """Check columns and types and return a frame with exactly the schema's columns, in order.

    Missing optional columns are added as nulls; unknown columns are an error (so a typo in an
    importer does not silently drop data); values that cannot be cast name their record and field.
    """
    unknown = [c for c in df.columns if c not in COLUMNS]
    if unknown:
        raise DataError(f"unknown column(s) {unknown}; the catalogue columns are {list(COLUMNS)}", file=file)
    missing_required = [c for c in REQUIRED if c not in df.columns]
    if missing_required:
        raise DataError(f"missing required column(s) {missing_required}", file=file, field=missing_required[0])
    out = pd.DataFrame(index=range(len(df)))
    for name in COLUMNS:
        if name not in df.columns:
            out[name] = pd.Series([None] * len(df), dtype="object")
            continue
        col = df[name].reset_index(drop=True)
        if name == "price":
            try:
                out[name] = pd.to_numeric(col, errors="raise").astype("float64")
            except (ValueError, TypeError):
                bad = pd.to_numeric(col, errors="coerce").isna() & col.notna()
                i = int(bad.idxmax())
                raise DataError(
                    f"price {col[i]!r} is not a number", file=file, record=_record_id(df, i), field="price"
                ) from None
        else:
            values = []
            for i, v in enumerate(col):
                if v is None or (isinstance(v, float) and pd.isna(v)) or v is pd.NA:
                    values.append(None)
                elif isinstance(v, str):
                    values.append(v)
                elif name in JSON_COLUMNS and isinstance(v, dict):
                    values.append(to_json(v))
                elif isinstance(v, int | float) and name in ("listing_id", "product_id"):
                    values.append(str(v))
                else:
                    raise DataError(
                        f"expected text, got {type(v).__name__}", file=file, record=_record_id(df, i), field=name
                    )
            out[name] = pd.Series(values, dtype="object")
    for name in JSON_COLUMNS:
        out[name] = out[name].where(out[name].notna(), "{}")
    return out


def _record_id(df: pd.DataFrame, i: int) -> str:
    if "listing_id" in df.columns:
        v = df["listing_id"].iloc[i]
        if v is not None and not (isinstance(v, float) and pd.isna(v)):
            return str(v)
    return f"row {i}"
