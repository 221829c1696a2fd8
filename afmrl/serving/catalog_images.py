"""Listing images for the page: listing id -> image file inside the catalogue's image root (path-safe).

The Milvus collection does not store image paths; the catalogue the index was built from does
(``listings.parquet`` + ``catalog.json``). The id -> path table is read once per catalogue folder, and
a path is served only when it resolves inside the image root (a ``..`` or a link out of it is refused).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow.parquet as pq

from afmrl.catalog.io import read_manifest
from afmrl.errors import DataError

_lock = threading.Lock()
_tables: dict[str, CatalogImages] = {}


class CatalogImages:
    """The image of each listing of one catalogue folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        listings = self.folder / "listings.parquet"
        if not listings.is_file():
            raise DataError("no listings.parquet: not a catalogue folder (serve.catalog / the index's catalogue)",
                            file=str(listings))  # fmt: skip
        manifest = read_manifest(self.folder)
        root = Path(manifest.get("image_root", "."))
        self.root = (root if root.is_absolute() else self.folder / root).resolve()
        table = pq.read_table(listings, columns=["listing_id", "image"]).to_pydict()
        self.images = {str(lid): img for lid, img in zip(table["listing_id"], table["image"], strict=True) if img}

    def has_image(self, listing_id: str) -> bool:
        return listing_id in self.images

    def path(self, listing_id: str) -> Path:
        """The image file of ``listing_id``; :class:`DataError` when it has none or it is outside the root."""
        rel = self.images.get(listing_id)
        if rel is None:
            raise DataError("no image for this listing in the catalogue", record=listing_id, field="image")
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root):
            raise DataError("image path escapes the catalogue's image root", record=listing_id, field="image")
        if not path.is_file():
            raise DataError("image file not found", record=listing_id, field="image")
        return path


def catalog_images(folder: str | Path | None) -> CatalogImages | None:
    """The (cached) table of a catalogue folder; None without a folder or when it is not a catalogue."""
    if not folder:
        return None
    key = str(Path(folder).resolve())
    with _lock:
        if key not in _tables:
            try:
                _tables[key] = CatalogImages(key)
            except (DataError, OSError):
                return None
        return _tables[key]
