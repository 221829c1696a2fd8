"""Ingest: the pipeline's input catalogue, whatever its format (``data.*`` in params.yaml).

:func:`ingest` writes one canonical catalogue folder (``listings.parquet`` + ``catalog.json``, and
images where they are copied) from ``data.format``:

- ``synthetic``: :func:`afmrl.catalog.synth.generate` (``synth.*``, ``splits.*``; ``data.path`` unused);
- ``catalogue``: a canonical catalogue folder, checked and re-written (images stay at its image root;
  a remote one is downloaded into ``source/`` first);
- ``grocery-store``, ``wdc-products``, ``offers``: the importers (offers with ``data.columns``).

``data.path`` may be an fsspec URI (:mod:`afmrl.catalog.sources`). ``data.max_products`` keeps the
listings of that many products (chosen by a seeded hash; an unlabeled listing is its own product),
for smoke runs. ``catalog.json`` records the format, the path (credentials redacted) and the source
digest (:func:`afmrl.catalog.sources.source_digest`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from afmrl.atomic import write_json_atomic
from afmrl.catalog import sources
from afmrl.catalog.importers import import_grocery_store, import_offers, import_wdc_products
from afmrl.catalog.io import LISTINGS_FILE, MANIFEST_FILE, read_catalog, write_catalog
from afmrl.catalog.synth import generate
from afmrl.config import DataConfig, SplitConfig, SynthConfig
from afmrl.digest import digest_bytes
from afmrl.errors import DataError

SOURCE_DIR = "source"  # where a remote folder (grocery-store, catalogue) is downloaded inside the output


def limit_products(listings: pd.DataFrame, max_products: int, seed: int = 0) -> pd.DataFrame:
    """The listings of ``max_products`` products, chosen by a seeded hash of the product id (stable
    when products are added); an unlabeled listing counts as a product of its own."""
    key = listings["product_id"].where(listings["product_id"].notna(), "listing:" + listings["listing_id"].astype(str))
    chosen = sorted(key.unique(), key=lambda k: digest_bytes(f"{seed}\0{k}"))[:max_products]
    return listings[key.isin(set(chosen))].reset_index(drop=True)


def _canonical(path: str, out: Path) -> Path:
    """A canonical catalogue folder (or its listings.parquet), checked and written to ``out``."""
    local = sources.materialize(path, out / SOURCE_DIR)
    if local.resolve() == out.resolve():
        raise DataError("data.path is the ingest stage's own output folder", file=str(local), field="data.path")
    catalog = read_catalog(local)
    meta = {**catalog.meta, "name": catalog.meta.get("name") or sources.name_of(path)}
    return write_catalog(catalog.listings, out, image_root=catalog.image_root, meta=meta)


def _import(data: DataConfig, synth: SynthConfig, splits: SplitConfig, out: Path) -> Path:
    if data.format == "synthetic":
        return generate(synth, splits, out)
    if data.format == "catalogue":
        return _canonical(data.path, out)
    if data.format == "grocery-store":
        return import_grocery_store(sources.materialize(data.path, out / SOURCE_DIR), out)
    if data.format == "wdc-products":
        return import_wdc_products(data.path, out, splits)
    if data.format == "offers":
        return import_offers(data.path, out, data.columns.mapping(), splits)
    raise DataError(f"unknown format {data.format!r}", field="data.format")  # the config refuses it first


def ingest(data: DataConfig, synth: SynthConfig, splits: SplitConfig, out_dir: str | Path,
           digest: str | None = None) -> Path:  # fmt: skip
    """Write the catalogue ``data`` describes to ``out_dir``; returns its listings.parquet.
    ``digest``: the source digest when already computed (else computed here)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    digest = digest or sources.source_digest(data, synth, splits)
    _import(data, synth, splits, out)
    if data.max_products is not None:
        catalog = read_catalog(out)
        limited = limit_products(catalog.listings, data.max_products, splits.seed)
        write_catalog(limited, out, image_root=catalog.image_root, meta=catalog.meta)
    manifest_path = out / MANIFEST_FILE
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    manifest.update({"format": data.format, "source_digest": digest,
                     "path": None if data.format == "synthetic" else sources.redact_uri(data.path)})  # fmt: skip
    write_json_atomic(manifest_path, manifest, sort_keys=True)
    return out / LISTINGS_FILE
