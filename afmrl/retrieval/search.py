"""Identical-product search through the Milvus index: by listing id, image file or text.

The collection searched is, in order: ``collection`` (a name or alias), the collection of ``encoder``,
else the serving alias (``index.alias``). A listing id query uses the listing's stored vector (no
encoder needed) and never returns the listing itself; image and text queries are embedded with the
encoder the collection was built with (recorded in its ``afmrl.encoder`` property) unless ``encoder``
is given. Scalar filters: categories, a price range, splits; listings without a price never pass a
price filter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from afmrl.config import Config
from afmrl.errors import ConfigError, DataError
from afmrl.retrieval.milvus import (
    PRODUCT_FIELDS,
    Hit,
    IndexStoreError,
    MilvusIndex,
    collection_for_encoder,
    literal_list,
    quote,
)


@dataclass
class SearchFilters:
    categories: Sequence[str] = ()
    min_price: float | None = None
    max_price: float | None = None
    splits: Sequence[str] = ()
    exclude_ids: Sequence[str] = ()

    def expression(self) -> str:
        """A Milvus boolean expression ('' for no filter)."""
        if self.min_price is not None and self.max_price is not None and self.min_price > self.max_price:
            raise ConfigError(f"min price {self.min_price} is above max price {self.max_price}", field="price")
        parts = []
        if self.categories:
            parts.append(f"category in {literal_list(self.categories)}")
        if self.min_price is not None:
            parts.append(f"price >= {float(self.min_price)!r}")
        if self.max_price is not None:
            parts.append(f"price <= {float(self.max_price)!r}")
        if self.splits:
            parts.append(f"split in {literal_list(self.splits)}")
        if len(self.exclude_ids) == 1:
            parts.append(f"listing_id != {quote(self.exclude_ids[0])}")
        elif self.exclude_ids:
            parts.append(f"listing_id not in {literal_list(self.exclude_ids)}")
        return " and ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"categories": list(self.categories), "min_price": self.min_price, "max_price": self.max_price,
                "splits": list(self.splits)}  # fmt: skip


@dataclass
class SearchResult:
    collection: str
    query: dict[str, Any]
    filters: dict[str, Any]
    expression: str
    top_k: int
    hits: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"collection": self.collection, "query": self.query, "filters": self.filters,
                "expression": self.expression, "top_k": self.top_k, "hits": self.hits}  # fmt: skip


def hit_json(rank: int, hit: Hit) -> dict[str, Any]:
    fields = {k: hit.fields.get(k) for k in PRODUCT_FIELDS if k != "listing_id"}
    return {"rank": rank, "listing_id": hit.listing_id, "score": round(hit.score, 6), **fields}


def search_vectors(index: MilvusIndex, collection: str, vectors: np.ndarray, top_k: int,
                   filters: SearchFilters | None = None) -> list[list[dict[str, Any]]]:  # fmt: skip
    """Top-k candidates with scores and product fields for each query vector."""
    expr = (filters or SearchFilters()).expression()
    hits = index.search(collection, vectors, top_k, expr, fields=PRODUCT_FIELDS)
    return [[hit_json(r, h) for r, h in enumerate(row, 1)] for row in hits]


def query_vector(index: MilvusIndex, collection: str, cfg: Config, *, listing_id: str | None, image: str | Path | None,
                 text: str | None, encoder: str | Path | None) -> np.ndarray:  # fmt: skip
    if sum(x is not None for x in (listing_id, image, text)) != 1:
        raise ConfigError("give exactly one query: a listing id, an image file or a text", field="query")
    if listing_id is not None:
        found = index.vectors(collection, [listing_id])
        if listing_id not in found:
            raise DataError(f"listing {listing_id!r} is not in collection {collection!r}", record=listing_id)
        return found[listing_id][None, :]
    from afmrl.models.encoders import load_encoder

    ref = encoder or index.properties(collection).get("afmrl.encoder")
    if not ref:
        raise ConfigError(f"collection {collection!r} does not record its encoder: pass --encoder", field="encoder")
    model = load_encoder(ref, cfg.encoder, cfg.tracking)
    if image is not None:
        if not Path(image).is_file():
            raise DataError("image file not found", file=str(image))
        vec = model.encode_images([str(image)])
    else:
        vec = model.encode_texts([str(text)])
    dim = index.dimension(collection)
    if vec.shape[1] != dim:
        raise IndexStoreError(f"encoder {ref} gives {vec.shape[1]}-dimensional vectors, collection {collection!r} "
                              f"holds {dim}")  # fmt: skip
    return np.asarray(vec, dtype=np.float32)


def find_identical(cfg: Config, *, listing_id: str | None = None, image: str | Path | None = None,
                   text: str | None = None, collection: str | None = None, encoder: str | Path | None = None,
                   top_k: int | None = None, filters: SearchFilters | None = None,
                   index: MilvusIndex | None = None) -> SearchResult:  # fmt: skip
    """Identical-product candidates for one query (JSON-able through ``to_json``)."""
    filters = filters or SearchFilters()
    if listing_id is not None:
        filters = SearchFilters(filters.categories, filters.min_price, filters.max_price, filters.splits,
                                [*filters.exclude_ids, listing_id])  # fmt: skip
    k = top_k or cfg.index.top_k
    own = index is None
    index = index or MilvusIndex.from_config(cfg.index)
    try:
        if collection is None and encoder is not None:
            collection = collection_for_encoder(cfg, encoder)
        target = index.resolve(collection or cfg.index.alias)
        vec = query_vector(index, target, cfg, listing_id=listing_id, image=image, text=text, encoder=encoder)
        hits = search_vectors(index, target, vec, k, filters)[0]
    finally:
        if own:
            index.close()
    query = {"listing_id": listing_id} if listing_id is not None else {"image": str(image)} if image else {"text": text}
    return SearchResult(target, query, filters.to_json(), filters.expression(), k, hits)
