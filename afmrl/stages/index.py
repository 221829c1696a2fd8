"""Index stage: embed the gallery listings with an encoder and bring its Milvus collection up to date.

``run(cfg, catalog_dir, encoder, out_dir)``: the encoder is a folder from ``afmrl train``, an
MLflow URI (``models:/afmrl-encoder@champion``, ``runs:/<id>/encoder``) or, for ``encoder.kind`` clip /
vlm2vec, a hub id. Incremental by content (:mod:`afmrl.retrieval.reindex`): every listing
(``index.splits``; empty: all) gets a digest of what its vector and fields come from (encoder fingerprint,
encoder text, image bytes, stored fields); one scan of the collection reads the stored digests back,
and only new and changed listings are embedded and upserted, ``index.batch_size`` at a time (memory
does not grow with the gallery), while (``index.prune``) listings that left the catalogue are deleted.
A re-run embeds nothing, a killed build resumes where it stopped. ``index.workers`` > 1 embeds in that
many local processes (listings sharded by id, :mod:`afmrl.retrieval.shards`), each writing a vectors
file that this process then upserts. The build ends by checking the count and marking the collection
complete (``afmrl.complete`` property); only complete collections get the serving alias.

Two more modes, for Kubeflow's fan-out over shards: ``run(..., shard=i, shards=n)`` embeds shard ``i``
of ``n`` into ``out_dir/shard-<i>-of-<n>.npz`` and touches no index; ``run(..., vectors=[...])`` builds
from those files (listings they hold with a current digest are not embedded again).

Outputs: ``out_dir/index.json`` (backend, collection, encoder, count, dimension, what was embedded,
seconds) and an MLflow run ``index`` with the same figures.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from afmrl.atomic import write_json_atomic
from afmrl.catalog.io import read_catalog
from afmrl.catalog.schema import to_json
from afmrl.config import Config, EncoderConfig
from afmrl.errors import DataError
from afmrl.models.encoders import load_encoder
from afmrl.models.encoders.base import Encoder
from afmrl.models.encoders.dual import DualEncoder
from afmrl.models.encoders.ref import resolve
from afmrl.models.inputs import listing_attributes
from afmrl.progress import progress
from afmrl.retrieval.milvus import (
    ID_MAX,
    IndexStoreError,
    MilvusIndex,
    collection_for,
    collection_for_encoder,
    redact_uri,
)
from afmrl.retrieval.reindex import batch_inputs, listing_records, plan, stored_digests
from afmrl.retrieval.shards import (
    embed_batches,
    embed_in_processes,
    embed_to_file,
    read_vectors,
    shard_rows,
    vector_files,
)
from afmrl.retrieval.swap import rollback, swap_alias
from afmrl.tracking.lock import holds_stores
from afmrl.tracking.runs import stage_run
from afmrl.tracking.store import preflight

SUMMARY_FILE = "index.json"
SHARD_SUMMARY_FILE = "shard.json"


@dataclass
class IndexStageResult:
    backend: str
    collection: str
    encoder: str
    fingerprint: str
    dim: int
    count: int
    embedded: int  # listings this run encoded (here or in its worker processes)
    unchanged: int
    deleted: int
    seconds: float
    index_type: str
    metric: str
    added: int = 0
    changed: int = 0
    loaded: int = 0  # listings taken from vectors files (Kubeflow shards) instead of embedded here
    workers: int = 1
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


def _text_settings(model: Encoder, cfg: Config) -> EncoderConfig:
    return model.cfg if isinstance(model, DualEncoder) else cfg.encoder  # a dual encoder brings its text settings


def run(cfg: Config, catalog_dir: str | Path, encoder: str | Path, out_dir: str | Path, *,
        vectors: Sequence[str | Path] | None = None, shard: int | None = None, shards: int | None = None,
        on_batch: Callable[[dict[str, int]], None] | None = None) -> IndexStageResult | dict[str, Any]:  # fmt: skip
    """Build (or bring up to date) the collection of ``encoder`` from the catalogue's listings; with
    ``shard``/``shards``: only embed that shard into a vectors file in ``out_dir`` (see the module)."""
    if shard is not None or shards is not None:
        return embed_shard(cfg, catalog_dir, encoder, out_dir, shard=int(shard or 0), shards=int(shards or 1))
    return build(cfg, catalog_dir, encoder, out_dir, vectors=vectors, on_batch=on_batch)


def embed_shard(cfg: Config, catalog_dir: str | Path, encoder: str | Path, out_dir: str | Path, *, shard: int,
                shards: int) -> dict[str, Any]:  # fmt: skip
    """Embed shard ``shard`` of ``shards`` of the listings into ``out_dir/shard-<i>-of-<n>.npz`` (no index,
    no lock: shards run in parallel); ``out_dir/shard.json`` says what it holds."""
    start = time.perf_counter()
    catalog = read_catalog(catalog_dir)
    rows = shard_rows(gallery_rows(catalog.listings, cfg.index.splits), shard, shards)
    ref = resolve(encoder, cfg.tracking, cfg.encoder)
    try:
        model = load_encoder(ref, cfg.encoder)
    finally:
        ref.cleanup()
    out = Path(out_dir)
    target = out / f"shard-{shard}-of-{shards}.npz"
    with progress(f"index: embed shard {shard + 1}/{shards}", len(rows), unit="listing") as advance:
        path, n = embed_to_file(model, catalog, rows, _text_settings(model, cfg), ref.fingerprint,
                                cfg.index.batch_size, target, on_batch=advance)  # fmt: skip
    info = {"shard": shard, "shards": shards, "listings": n, "file": str(path), "fingerprint": ref.fingerprint,
            "dim": int(model.dim), "seconds": round(time.perf_counter() - start, 3)}  # fmt: skip
    write_json_atomic(out / SHARD_SUMMARY_FILE, info)
    return info


@holds_stores("index stage", tracking=False)  # the Milvus Lite file, before anything is read or written
def build(cfg: Config, catalog_dir: str | Path, encoder: str | Path, out_dir: str | Path, *,
          vectors: Sequence[str | Path] | None = None,
          on_batch: Callable[[dict[str, int]], None] | None = None) -> IndexStageResult:  # fmt: skip
    """The index build (see the module). The serving alias is not touched (``afmrl index alias``, or the
    publish stage after the gate). ``on_batch``: called after each batch is stored with ``{"done",
    "total", "embedded"}`` (``done``/``total``: listings to store; progress hooks for orchestrators)."""
    preflight(cfg.tracking)  # an unusable tracking store fails here, before any output is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    icfg = cfg.index
    catalog = read_catalog(catalog_dir)
    rows = gallery_rows(catalog.listings, icfg.splits)
    ref = resolve(encoder, cfg.tracking, cfg.encoder)  # an MLflow URI: downloaded, fingerprinted
    try:
        model = load_encoder(ref, cfg.encoder)
        return _build(cfg, catalog_dir, catalog, rows, ref, model, out, vectors, on_batch)
    finally:
        ref.cleanup()


def _build(cfg: Config, catalog_dir: str | Path, catalog: Any, rows: pd.DataFrame, ref: Any, model: Encoder, out: Path,
           vectors: Sequence[str | Path] | None,
           on_batch: Callable[[dict[str, int]], None] | None) -> IndexStageResult:  # fmt: skip
    icfg = cfg.index
    enc_text = _text_settings(model, cfg)  # what worker processes embed with (they read attributes themselves)
    enc = enc_text
    if enc.attributes_source == "file":  # read the extraction output once, not once per batch
        rows = rows.assign(attributes=[to_json(a) for a in listing_attributes(rows, enc, catalog.listings)])
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
        # 1. what to do: the catalogue's digests against the collection's
        digests: list[str] = []
        with progress(f"index: digests for {name}", len(rows), unit="listing") as advance:
            for lo in range(0, len(rows), icfg.batch_size):
                batch = rows.iloc[lo : lo + icfg.batch_size]
                digests.extend(batch_inputs(catalog, batch, enc, ref.fingerprint)[2])
                advance(len(batch))
        stored = {} if created else stored_digests(index, name)
        todo = plan(rows["listing_id"].astype(str).tolist(), digests, stored)
        plan_seconds = time.perf_counter() - start
        want = dict(zip(rows["listing_id"].astype(str).iloc[todo.embed], (digests[i] for i in todo.embed), strict=True))
        total = len(want)
        stats = {"done": 0, "embedded": 0, "loaded": 0}

        def store(batch: pd.DataFrame, attrs: list[dict], dig: list[str], vecs: Any, how: str) -> None:
            index.upsert(name, listing_records(batch, attrs, dig, vecs))
            for lid in batch["listing_id"].astype(str):
                want.pop(lid, None)
            stats["done"] += len(batch)
            stats[how] += len(batch)
            advance(len(batch))
            if on_batch:
                on_batch({"done": stats["done"], "total": total, "embedded": stats["embedded"]})

        def load_files(files: Sequence[Path], how: str) -> None:
            by_id = rows.set_index(rows["listing_id"].astype(str))
            for f in files:
                ids, dig, vecs = read_vectors(f)
                if vecs.shape[1:] != (dim,) and len(ids):
                    raise IndexStoreError(f"{f}: vectors of dimension {vecs.shape[1]}, the collection's is {dim}")
                keep = [i for i, (lid, d) in enumerate(zip(ids, dig, strict=True)) if want.get(lid) == d]
                for lo in range(0, len(keep), icfg.batch_size):
                    sel = keep[lo : lo + icfg.batch_size]
                    batch = by_id.loc[[ids[i] for i in sel]].reset_index(drop=True)
                    store(batch, listing_attributes(batch, enc, catalog.listings), [dig[i] for i in sel], vecs[sel], how)

        # 2. embed (or load) and upsert the new and changed listings
        with progress(f"index: {name}", total, unit="listing") as advance:
            if vectors:
                load_files(vector_files(vectors), "loaded")
            workers = icfg.workers if len(want) >= 2 * icfg.batch_size else 1
            if workers > 1:
                with tempfile.TemporaryDirectory(prefix="afmrl-shards-", dir=out) as tmp:
                    files = embed_in_processes(catalog_dir, list(want), ref.path, enc_text, ref.fingerprint,
                                               icfg.batch_size, workers, tmp)  # fmt: skip
                    load_files([f for f, _ in files], "embedded")
            if want:
                left = rows[rows["listing_id"].astype(str).isin(want.keys())]
                for batch, attrs, dig, vecs in embed_batches(model, catalog, left, enc, ref.fingerprint, icfg.batch_size):
                    store(batch, attrs, dig, vecs, "embedded")
        # 3. delete the listings that left the catalogue
        deleted = 0
        if icfg.prune:
            for i in range(0, len(todo.removed), 1000):
                deleted += index.delete(name, todo.removed[i : i + 1000])
        index.flush(name)
        count = index.count(name)
        if count != len(rows) and (icfg.prune or count < len(rows)):
            raise IndexStoreError(f"collection {name!r} holds {count} listings after the build, expected {len(rows)}")
        seconds = time.perf_counter() - start
        index.set_properties(name, {"afmrl.complete": "true", "afmrl.count": count, "afmrl.catalog": str(Path(catalog_dir).resolve()),
                                    "afmrl.built_at": datetime.now(UTC).isoformat(timespec="microseconds")})  # fmt: skip
        result = IndexStageResult(
            backend=index.where, collection=name, encoder=ref.ref, fingerprint=ref.fingerprint, dim=dim, count=count,
            embedded=stats["embedded"], unchanged=todo.unchanged, deleted=deleted, seconds=round(seconds, 3),
            index_type=index.index_type, metric=index.metric, added=todo.added, changed=todo.changed,
            loaded=stats["loaded"], workers=workers,
            details={"created": created, "catalog": str(catalog_dir), "plan_seconds": round(plan_seconds, 3), **ref.details},
        )  # fmt: skip
        summary = out / SUMMARY_FILE
        result.summary_path = summary
        write_json_atomic(summary, result.to_json())
        run_.log_metrics({"count": count, "dim": dim, "embedded": result.embedded, "unchanged": result.unchanged,
                          "added": result.added, "changed": result.changed, "loaded": result.loaded,
                          "deleted": deleted, "build_seconds": seconds,
                          "listings_per_s": len(rows) / seconds if seconds > 0 else 0.0})  # fmt: skip
        run_.log_artifact(summary)
    return result


@holds_stores("serving alias switch", tracking=False)
def switch_alias(cfg: Config, *, encoder: str | Path | None = None, collection: str | None = None,
                 alias: str | None = None, force: bool = False) -> dict[str, Any]:  # fmt: skip
    """Point the serving alias at the collection of ``encoder`` (or ``collection``) with one Milvus call,
    after checking it (complete, its recorded count, recall@10 of ``index.check_sample`` queries against
    exact search: :func:`afmrl.retrieval.swap.check_collection`; ``force`` skips the checks but never
    serves an unknown collection); keeps the previous target for ``afmrl index rollback`` and drops
    collections beyond ``index.keep``. Logs nothing: see :func:`set_serving_alias` (by hand) and
    :mod:`afmrl.stages.publish` (after the gate)."""
    if collection is None:
        if encoder is None:
            raise IndexStoreError("give an encoder (folder or models:/...@champion) or a collection")
        collection = collection_for_encoder(cfg, encoder)
    icfg = cfg.index
    alias = alias or icfg.alias
    with MilvusIndex.from_config(icfg) as index:
        if not index.has(collection):
            raise IndexStoreError(f"collection {collection!r} not found in {index.where}: run `afmrl index build` first")
        outcome = swap_alias(index, alias, collection, prefix=icfg.collection_prefix, keep=icfg.keep,
                             sample=icfg.check_sample, min_recall=icfg.check_min_recall, check=not force)  # fmt: skip
        props = index.properties(collection)
        return {**outcome, "count": index.count(collection), "encoder": props.get("afmrl.encoder"),
                "backend": index.where}  # fmt: skip


@holds_stores("serving alias rollback", tracking=False)
def rollback_alias(cfg: Config, *, alias: str | None = None) -> dict[str, Any]:
    """Point the serving alias back at the collection it served before the last swap (``afmrl index rollback``)."""
    with MilvusIndex.from_config(cfg.index) as index:
        outcome = rollback(index, alias or cfg.index.alias)
        return {**outcome, "count": index.count(outcome["collection"]), "backend": index.where}


def set_serving_alias(cfg: Config, *, encoder: str | Path | None = None, collection: str | None = None,
                      alias: str | None = None, force: bool = False) -> dict[str, Any]:  # fmt: skip
    """:func:`switch_alias` by hand (``afmrl index alias``), logged as an MLflow run ``index-alias``."""
    info = switch_alias(cfg, encoder=encoder, collection=collection, alias=alias, force=force)
    with stage_run(cfg.tracking, "index-alias") as run_:
        run_.log_config(cfg, ("index",), **info)
    return info

