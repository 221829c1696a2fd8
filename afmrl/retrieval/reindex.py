"""What an index build must do: per-listing content digests, diffed against what a collection holds.

A listing's digest covers everything its stored vector and fields came from: the encoder fingerprint,
the text the encoder reads (title, serialised attributes, description), the image's bytes (not its
path: a photo replaced under the same name is re-embedded), and the stored product fields. The
collection keeps each listing's digest in its ``content_hash`` field, so one pass over the collection
(:func:`stored_digests`) and one over the catalogue tell which listings are new or changed (embed and
upsert), unchanged (nothing to do) and gone (delete): :func:`plan`. The same diff makes a killed build
resume where it stopped, since every stored batch is already up to date.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from afmrl.catalog.io import Catalog
from afmrl.catalog.schema import parse_json_object, to_json
from afmrl.config import EncoderConfig
from afmrl.digest import digest_bytes
from afmrl.errors import DataError
from afmrl.models.inputs import listing_attributes, listing_texts
from afmrl.retrieval.milvus import ID_MAX, SPLIT_MAX, TEXT_MAX, TITLE_MAX, MilvusIndex

DIGEST_BYTES = 16  # blake2b-128, 32 hex characters (the content_hash field holds up to 64)
_CHUNK = 1 << 20


def _clip(value: Any, limit: int) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value).encode()[:limit].decode("utf-8", "ignore")


def _price(value: Any) -> float | None:
    if value is None or pd.isna(value):
        return None
    return float(value)


def image_digest(catalog: Catalog, image: Any, record: str) -> str | None:
    """blake2b of an image file's bytes (None for a text-only listing); a missing file names the record."""
    if image is None or (isinstance(image, float) and math.isnan(image)):
        return None
    path = Path(catalog.image_root) / str(image)
    hasher = hashlib.blake2b(digest_size=DIGEST_BYTES)
    try:
        with path.open("rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                hasher.update(chunk)
    except OSError as exc:
        raise DataError(f"cannot read the image {path}: {exc.strerror or exc}", record=record, field="image") from None
    return hasher.hexdigest()


def listing_digests(catalog: Catalog, rows: pd.DataFrame, texts: Sequence[str], attrs: Sequence[dict],
                    fingerprint: str) -> list[str]:  # fmt: skip
    """The content digest of each row: encoder fingerprint, encoder text, image bytes, stored fields."""
    out = []
    for row, text, a in zip(rows.itertuples(index=False), texts, attrs, strict=True):
        img = image_digest(catalog, row.image, str(row.listing_id))
        key = json.dumps([fingerprint, text, img, row.product_id, row.category, row.title, row.split, to_json(a),
                          _price(row.price)], ensure_ascii=False, default=str)  # fmt: skip
        out.append(digest_bytes(key, algorithm="blake2b", size=DIGEST_BYTES))
    return out


def batch_inputs(catalog: Catalog, rows: pd.DataFrame, enc: EncoderConfig,
                 fingerprint: str) -> tuple[list[dict], list[str], list[str]]:  # fmt: skip
    """(attributes, encoder texts, digests) of ``rows``: what the encoder sees and what it is keyed by."""
    attrs = listing_attributes(rows, enc, catalog.listings)  # rules: the lexicon of the training listings
    texts = listing_texts(rows, attrs, enc)
    return attrs, texts, listing_digests(catalog, rows, texts, attrs, fingerprint)


def listing_records(rows: pd.DataFrame, attrs: Sequence[dict], digests: Sequence[str], vectors: np.ndarray) -> list[dict]:
    """Collection rows (the layout of :meth:`MilvusIndex._schema`) for listings and their vectors."""
    records = []
    for row, a, h, v in zip(rows.itertuples(index=False), attrs, digests, vectors, strict=True):
        provided = parse_json_object(row.attributes, record=row.listing_id)
        records.append({
            "listing_id": str(row.listing_id),
            "product_id": _clip(row.product_id, ID_MAX),
            "category": _clip(row.category, TEXT_MAX),
            "title": _clip(row.title, TITLE_MAX),
            "split": _clip(row.split, SPLIT_MAX),
            "attributes": {**provided, **a},
            "price": _price(row.price),
            "content_hash": h,
            "vector": np.asarray(v, dtype=np.float32),
        })  # fmt: skip
    return records


def stored_digests(index: MilvusIndex, collection: str, page: int = 10_000) -> dict[str, str]:
    """listing_id -> content digest of every listing the collection holds (one paged scan)."""
    out: dict[str, str] = {}
    for rows in index.iter_fields(collection, ("content_hash",), batch_size=page):
        for r in rows:
            out[r["listing_id"]] = r["content_hash"]
    return out


@dataclass
class ReindexPlan:
    """The diff of the catalogue against a collection: row positions to embed, ids to delete."""

    embed: list[int] = field(default_factory=list)  # positions in the catalogue rows: new or changed
    added: int = 0
    changed: int = 0
    unchanged: int = 0
    removed: list[str] = field(default_factory=list)  # ids the collection holds that the catalogue lacks

    def counts(self) -> dict[str, int]:
        return {"embed": len(self.embed), "added": self.added, "changed": self.changed, "unchanged": self.unchanged,
                "removed": len(self.removed)}  # fmt: skip


def plan(ids: Sequence[str], digests: Sequence[str], stored: dict[str, str]) -> ReindexPlan:
    """Which rows (``ids`` with their ``digests``) to embed and which stored ids to delete."""
    p = ReindexPlan()
    for i, (lid, h) in enumerate(zip(ids, digests, strict=True)):
        have = stored.get(lid)
        if have == h:
            p.unchanged += 1
            continue
        p.embed.append(i)
        if have is None:
            p.added += 1
        else:
            p.changed += 1
    keep = set(ids)
    p.removed = sorted(lid for lid in stored if lid not in keep)
    return p
