"""Read and write catalogues (``listings.parquet`` + ``catalog.json`` + images)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from afmrl.atomic import atomic_path, write_json_atomic
from afmrl.catalog.schema import FORMAT_VERSION, SCHEMA, conform
from afmrl.errors import DataError

LISTINGS_FILE = "listings.parquet"
MANIFEST_FILE = "catalog.json"


@dataclass
class Catalog:
    """A catalogue in memory: its listings and where its images live."""

    listings: pd.DataFrame
    image_root: Path
    meta: dict[str, Any] = field(default_factory=dict)

    def image_path(self, relative: str) -> Path:
        return self.image_root / relative

    def __len__(self) -> int:
        return len(self.listings)


def write_catalog(
    listings: pd.DataFrame,
    out_dir: str | Path,
    *,
    image_root: str | Path | None = None,
    meta: dict[str, Any] | None = None,
    file_name: str = LISTINGS_FILE,
) -> Path:
    """Write a conformed catalogue; returns the Parquet path.

    ``image_root``: None means the catalogue folder itself; a path is stored relative to the
    catalogue folder when it lies inside it, else absolute.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    df = conform(listings, file=str(out / file_name))
    table = pa.Table.from_pandas(df, schema=SCHEMA, preserve_index=False)
    target = out / file_name
    with atomic_path(target) as tmp:  # a crash or a full disk never leaves a half-written table behind
        pq.write_table(table, tmp)
    if file_name == LISTINGS_FILE:
        root = "." if image_root is None else _relative_or_absolute(Path(image_root), out)
        manifest = {"format_version": FORMAT_VERSION, "image_root": root, **(meta or {})}
        write_json_atomic(out / MANIFEST_FILE, manifest, sort_keys=True)
    return target


def _relative_or_absolute(root: Path, base: Path) -> str:
    root_abs, base_abs = root.resolve(), base.resolve()
    try:
        return root_abs.relative_to(base_abs).as_posix() or "."
    except ValueError:
        return str(root_abs)


def read_manifest(cat_dir: str | Path) -> dict[str, Any]:
    p = Path(cat_dir) / MANIFEST_FILE
    if not p.exists():
        return {"format_version": FORMAT_VERSION, "image_root": "."}
    try:
        manifest = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"not valid JSON: {exc}", file=str(p)) from exc
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise DataError(f"format_version {version!r} is not supported (expected {FORMAT_VERSION})", file=str(p))
    return manifest


def read_catalog(cat_dir: str | Path, *, file_name: str = LISTINGS_FILE) -> Catalog:
    """Read a catalogue folder (or a path to its ``listings.parquet``) with schema checks."""
    cat_dir = Path(cat_dir)
    if cat_dir.suffix == ".parquet":
        cat_dir, file_name = cat_dir.parent, cat_dir.name
    path = cat_dir / file_name
    if not path.exists():
        raise DataError("catalogue table not found (expected a folder with listings.parquet)", file=str(path))
    try:
        df = pq.read_table(path).to_pandas()
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"not a readable Parquet file: {exc}", file=str(path)) from exc
    df = conform(df, file=str(path))
    manifest = read_manifest(cat_dir)
    root = Path(manifest.get("image_root", "."))
    if not root.is_absolute():
        root = cat_dir / root
    meta = {k: v for k, v in manifest.items() if k not in ("format_version", "image_root")}
    return Catalog(listings=df, image_root=root, meta=meta)
