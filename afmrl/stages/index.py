"""Index stage: embed the gallery listings with an encoder and stream them into Milvus.

``run(cfg, catalog_dir, encoder, out_dir)``: the encoder is a folder from ``afmrl train``, an
MLflow URI (``models:/afmrl-encoder@champion``, ``runs:/<id>/encoder``) or, for ``encoder.kind`` clip /
vlm2vec, a hub id. Listings (``index.splits``; empty: all) are embedded ``index.batch_size`` at a time
(``Encoder.encode_listings`` on the texts of ``afmrl.models.inputs``) and upserted, so memory does not
grow with the gallery. Before embedding a batch the stage asks the collection which listings it already
holds with the same content hash (listing fields + encoder fingerprint): a re-run embeds nothing new, a
killed build resumes where it stopped, a changed listing is re-embedded, and (``index.prune``) listings
that left the catalogue are deleted. The build ends by checking the count and marking the collection
complete (``afmrl.complete`` property); only complete collections get the serving alias.

Outputs: ``out_dir/index.json`` (backend, collection, encoder, count, dimension, seconds) and an MLflow
run ``index`` with the same figures.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from afmrl.atomic import write_json_atomic
from afmrl.catalog.io import read_catalog
from afmrl.catalog.schema import parse_json_object, to_json
from afmrl.config import Config
from afmrl.digest import digest_bytes
from afmrl.errors import DataError
from afmrl.models.encoders import load_encoder
from afmrl.models.encoders.dual import DualEncoder
from afmrl.models.encoders.ref import resolve
from afmrl.models.inputs import image_paths, listing_attributes, listing_texts
from afmrl.progress import progress
from afmrl.retrieval.milvus import (
    ID_MAX,
    SPLIT_MAX,
    TEXT_MAX,
    TITLE_MAX,
    IndexStoreError,
    MilvusIndex,
    collection_for,
    collection_for_encoder,
    redact_uri,
)
from afmrl.tracking.lock import holds_stores
from afmrl.tracking.runs import stage_run
from afmrl.tracking.store import preflight

SUMMARY_FILE = "index.json"


@dataclass
class IndexStageResult:
    backend: str
    collection: str
    encoder: str
    fingerprint: str
    dim: int
    count: int
    embedded: int
    unchanged: int
    deleted: int
    seconds: float
    index_type: str
    metric: str
    summary_path: Path | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["summary_path"] = str(self.summary_path) if self.summary_path else None
        return d


def gallery_rows(listings: pd.DataFrame, splits: list[str]) -> pd.DataFrame:
    rows = listings if not splits else listings[listings["split"].isin(splits)]
    rows = rows.reset_index(drop=True)
    if rows.empty:
        raise DataError(f"no listings to index in split(s) {splits or 'any'}", field="index.splits")
    dup = rows["listing_id"][rows["listing_id"].duplicated()]
    if len(dup):
        raise DataError("duplicate listing_id: the index is keyed by it (validate the catalogue first)",
                        record=str(dup.iloc[0]), field="listing_id")  # fmt: skip
    too_long = rows["listing_id"].map(lambda s: len(str(s).encode()) > ID_MAX)
    if too_long.any():
        raise DataError(f"listing_id longer than {ID_MAX} bytes", record=str(rows["listing_id"][too_long].iloc[0]),
                        field="listing_id")  # fmt: skip
    return rows


def _clip(value: Any, limit: int) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value).encode()[:limit].decode("utf-8", "ignore")


def _price(value: Any) -> float | None:
    if value is None or pd.isna(value):
        return None
    return float(value)


def content_hashes(batch: pd.DataFrame, texts: list[str], attrs: list[dict], fingerprint: str) -> list[str]:
    """What a stored vector was computed from (and what is stored beside it), with which encoder."""
    out = []
    for row, text, a in zip(batch.itertuples(index=False), texts, attrs, strict=True):
        key = json.dumps([fingerprint, text, row.image, row.product_id, row.category, row.title, row.split,
                          to_json(a), _price(row.price)], ensure_ascii=False, default=str)  # fmt: skip
        out.append(digest_bytes(key, algorithm="blake2b", size=16))
    return out


def listing_records(batch: pd.DataFrame, attrs: list[dict], hashes: list[str], vectors: np.ndarray) -> list[dict]:
    records = []
    for row, a, h, v in zip(batch.itertuples(index=False), attrs, hashes, vectors, strict=True):
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


def _prune(index: MilvusIndex, collection: str, keep: set[str]) -> int:
    stale: list[str] = []
    for page in index.iter_ids(collection):
        stale.extend(i for i in page if i not in keep)
    for i in range(0, len(stale), 1000):
        index.delete(collection, stale[i : i + 1000])
    return len(stale)


@holds_stores("index stage", tracking=False)  # the Milvus Lite file, before anything is read or written
def run(cfg: Config, catalog_dir: str | Path, encoder: str | Path, out_dir: str | Path, *,
        on_batch: Callable[[dict[str, int]], None] | None = None) -> IndexStageResult:  # fmt: skip
    """Build (or bring up to date) the collection of ``encoder`` from the catalogue's listings.

    The serving alias is not touched (``afmrl index alias``, or the publish stage after the gate).
    ``on_batch``: called after each batch is stored with ``{"done", "total", "embedded"}`` (progress
    hooks for orchestrators)."""
    preflight(cfg.tracking)  # an unusable tracking store fails here, before any output is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    icfg = cfg.index
    catalog = read_catalog(catalog_dir)
    rows = gallery_rows(catalog.listings, icfg.splits)
    ref = resolve(encoder, cfg.tracking, cfg.encoder)  # an MLflow URI: downloaded, fingerprinted
    try:
        model = load_encoder(ref, cfg.encoder)
    finally:
        ref.cleanup()
    enc = model.cfg if isinstance(model, DualEncoder) else cfg.encoder  # a dual encoder brings its text settings
    if enc.attributes_source == "file":  # read the extraction output once, not once per batch
        rows = rows.assign(attributes=[to_json(a) for a in listing_attributes(rows, enc)])
        enc = enc.model_copy(update={"attributes_source": "provided"})
    name = collection_for(cfg, ref.fingerprint)
    dim = int(model.dim)
    with stage_run(cfg.tracking, "index") as run_, MilvusIndex.from_config(icfg) as index:
        run_.log_config(cfg, ("index",), catalog=str(catalog_dir), encoder=ref.ref, collection=name,
                        backend=redact_uri(index.uri), index_type=index.index_type,  # resolved from "auto"
                        encoder_info={"fingerprint": ref.fingerprint, **ref.details})  # fmt: skip
        start = time.perf_counter()
        created = index.ensure_collection(name, dim)
        index.set_properties(name, {"afmrl.complete": "false", "afmrl.encoder": ref.ref,
                                    "afmrl.fingerprint": ref.fingerprint, "afmrl.dim": dim})  # fmt: skip
        embedded = unchanged = 0
        with progress(f"index: {name}", len(rows), unit="listing") as advance:
            for lo in range(0, len(rows), icfg.batch_size):
                batch = rows.iloc[lo : lo + icfg.batch_size]
                attrs = listing_attributes(batch, enc)
                texts = listing_texts(batch, attrs, enc)
                hashes = content_hashes(batch, texts, attrs, ref.fingerprint)
                have = index.content_hashes(name, batch["listing_id"].tolist())
                todo = [i for i, (lid, h) in enumerate(zip(batch["listing_id"], hashes, strict=True)) if have.get(lid) != h]
                if todo:
                    images = image_paths(catalog, batch["image"].iloc[todo])
                    vecs = np.asarray(model.encode_listings([texts[i] for i in todo], images), dtype=np.float32)
                    if vecs.shape != (len(todo), dim) or not np.isfinite(vecs).all():
                        raise IndexStoreError(f"the encoder returned {vecs.shape} (finite: {bool(np.isfinite(vecs).all())}) "
                                              f"for {len(todo)} listings of dimension {dim}")  # fmt: skip
                    sub = batch.iloc[todo]
                    index.upsert(name, listing_records(sub, [attrs[i] for i in todo], [hashes[i] for i in todo], vecs))
                embedded += len(todo)
                unchanged += len(batch) - len(todo)
                advance(len(batch))
                if on_batch:
                    on_batch({"done": lo + len(batch), "total": len(rows), "embedded": embedded})
        deleted = _prune(index, name, set(rows["listing_id"])) if icfg.prune else 0
        index.flush(name)
        count = index.count(name)
        if count != len(rows) and (icfg.prune or count < len(rows)):
            raise IndexStoreError(f"collection {name!r} holds {count} listings after the build, expected {len(rows)}")
        seconds = time.perf_counter() - start
        index.set_properties(name, {"afmrl.complete": "true", "afmrl.count": count, "afmrl.catalog": str(Path(catalog_dir).resolve()),
                                    "afmrl.built_at": datetime.now(UTC).isoformat(timespec="seconds")})  # fmt: skip
        result = IndexStageResult(
            backend=index.where, collection=name, encoder=ref.ref, fingerprint=ref.fingerprint, dim=dim, count=count,
            embedded=embedded, unchanged=unchanged, deleted=deleted, seconds=round(seconds, 3),
            index_type=index.index_type, metric=index.metric,
            details={"created": created, "catalog": str(catalog_dir), **ref.details},
        )  # fmt: skip
        summary = out / SUMMARY_FILE
        result.summary_path = summary
        write_json_atomic(summary, result.to_json())
        run_.log_metrics({"count": count, "dim": dim, "embedded": embedded, "unchanged": unchanged,
                          "deleted": deleted, "build_seconds": seconds,
                          "listings_per_s": len(rows) / seconds if seconds > 0 else 0.0})  # fmt: skip
        run_.log_artifact(summary)
    return result


@holds_stores("serving alias switch", tracking=False)
def switch_alias(cfg: Config, *, encoder: str | Path | None = None, collection: str | None = None,
                 alias: str | None = None, force: bool = False) -> dict[str, Any]:  # fmt: skip
    """Point the serving alias at the collection of ``encoder`` (or ``collection``); atomic in Milvus.

    Refuses a collection whose build did not finish (``force`` overrides). Logs nothing: see
    :func:`set_serving_alias` (by hand) and :mod:`afmrl.stages.publish` (after the gate)."""
    if collection is None:
        if encoder is None:
            raise IndexStoreError("give an encoder (folder or models:/...@champion) or a collection")
        collection = collection_for_encoder(cfg, encoder)
    alias = alias or cfg.index.alias
    with MilvusIndex.from_config(cfg.index) as index:
        if not index.has(collection):
            raise IndexStoreError(f"collection {collection!r} not found in {index.where}: run `afmrl index build` first")
        props = index.properties(collection)
        if props.get("afmrl.complete") != "true" and not force:
            raise IndexStoreError(f"collection {collection!r} is not a complete build (afmrl.complete="
                                  f"{props.get('afmrl.complete')}): re-run `afmrl index build` (it resumes)")  # fmt: skip
        previous = index.set_alias(alias, collection)
        return {"alias": alias, "collection": collection, "previous": previous, "count": index.count(collection),
                "encoder": props.get("afmrl.encoder"), "backend": index.where}  # fmt: skip


def set_serving_alias(cfg: Config, *, encoder: str | Path | None = None, collection: str | None = None,
                      alias: str | None = None, force: bool = False) -> dict[str, Any]:  # fmt: skip
    """:func:`switch_alias` by hand (``afmrl index alias``), logged as an MLflow run ``index-alias``."""
    info = switch_alias(cfg, encoder=encoder, collection=collection, alias=alias, force=force)
    with stage_run(cfg.tracking, "index-alias") as run_:
        run_.log_config(cfg, ("index",), **info)
    return info

