"""WDC Products (Web Data Commons): ``tableA.csv`` offers grouped by ``cluster_id``.

Listings are text-only; product_id = cluster_id; the offer's brand (where given) is a provided
and reference attribute; prices are parsed as feeds write them; splits are drawn by product.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from afmrl.catalog import sources
from afmrl.catalog.importers.text import clean_text, join_issues, parse_price, read_csv_records
from afmrl.catalog.io import write_catalog
from afmrl.catalog.schema import to_json
from afmrl.catalog.splits import assign_splits
from afmrl.config import SplitConfig
from afmrl.errors import DataError

COLUMNS = ("id", "brand", "title", "description", "price", "pricecurrency", "cluster_id")


def import_wdc_products(src: str | Path, out_dir: str | Path, split_cfg: SplitConfig) -> Path:
    """Import ``src`` (the folder holding tableA.csv or the CSV itself; a path or an fsspec URI)."""
    table = sources.join(src, "tableA.csv") if sources.is_dir(src) else src
    header, records = read_csv_records(table)
    shown = sources.redact_uri(table)
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise DataError(f"missing column(s) {missing}", file=shown, field=missing[0])
    rows = []
    for n, r in records:  # n: the physical line the record starts on
        issues: list[str] = []
        offer_id = clean_text(r["id"], "id", issues)
        if not offer_id:
            raise DataError("empty offer id", file=shown, record=f"line {n}", field="id")
        brand = clean_text(r["brand"], "brand", issues)
        attrs = to_json({"brand": brand} if brand else {})
        rows.append({
            "listing_id": f"wdc-{offer_id}",
            "product_id": clean_text(r["cluster_id"], "cluster_id", issues),
            "title": clean_text(r["title"], "title", issues),
            "description": clean_text(r["description"], "description", issues),
            "price": parse_price(r["price"], issues),
            "currency": (clean_text(r["pricecurrency"], "pricecurrency", issues) or "").upper() or None,
            "source": "wdc-products",
            "attributes": attrs,
            "reference_attributes": attrs,
            "import_issues": join_issues(issues),
        })  # fmt: skip
    listings = assign_splits(pd.DataFrame(rows).assign(split=None), split_cfg)
    local = sources.local_path(table)
    origin = str(local.resolve()) if local is not None else shown
    return write_catalog(listings, out_dir, meta={"name": "wdc-products", "source": origin})
