"""Sharded embedding: split the listings to embed over workers, each writing a vectors file; one loader
upserts them.

- A listing's shard is a stable hash of its id (:func:`shard_of`), so a shard keeps its listings when
  the catalogue grows and every listing is in exactly one shard.
- A vectors file (``.npz``: ``ids``, ``digests``, ``vectors``; :func:`write_vectors` / :func:`read_vectors`)
  is what an embedding worker hands to the loader: a local worker process (``index.workers``) or a
  Kubeflow ``embed`` task (one per shard, fanned out with ``dsl.ParallelFor``).
- :func:`embed_in_processes` runs ``workers`` local processes (spawned: each loads the encoder itself
  and uses its share of the CPU threads) over the given rows and returns their files.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd

from afmrl.catalog.io import Catalog, read_catalog
from afmrl.config import EncoderConfig
from afmrl.errors import DataError
from afmrl.models.encoders.base import Encoder
from afmrl.models.inputs import image_paths
from afmrl.retrieval.reindex import batch_inputs

VECTORS_SUFFIX = ".npz"


def shard_of(listing_id: str, shards: int) -> int:
    """The shard (0 .. shards-1) of a listing: a stable hash of its id."""
    return int.from_bytes(hashlib.blake2b(str(listing_id).encode(), digest_size=8).digest(), "big") % shards


def shard_list(shards: int) -> list[int]:
    """The shard numbers of a fan-out over ``shards`` shards (Kubeflow's ParallelFor items)."""
    if int(shards) < 1:
        raise DataError(f"shards must be at least 1, got {shards}", field="shards")
    return list(range(int(shards)))


def shard_rows(rows: pd.DataFrame, shard: int, shards: int) -> pd.DataFrame:
    """The rows of one shard (``shard`` of ``shards``)."""
    if shards < 1 or not 0 <= shard < shards:
        raise DataError(f"shard {shard} of {shards}: need 0 <= shard < shards and shards >= 1", field="shard")
    keep = [shard_of(lid, shards) == shard for lid in rows["listing_id"]]
    return rows[keep].reset_index(drop=True)


def write_vectors(path: str | Path, ids: Sequence[str], digests: Sequence[str], vectors: np.ndarray) -> Path:
    """One vectors file, written whole or not at all (temporary name, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{VECTORS_SUFFIX}")
    np.savez(tmp, ids=np.asarray(list(ids), dtype=str), digests=np.asarray(list(digests), dtype=str),
             vectors=np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1))  # fmt: skip
    os.replace(tmp, path)
    return path


def read_vectors(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    """(ids, digests, vectors) of a vectors file."""
    with np.load(path, allow_pickle=False) as z:
        return z["ids"].tolist(), z["digests"].tolist(), np.asarray(z["vectors"], dtype=np.float32)


def vector_files(paths: Sequence[str | Path]) -> list[Path]:
    """The vectors files given as files or folders holding them (a Kubeflow artifact is a folder)."""
    out: list[Path] = []
    for p in map(Path, paths):
        out.extend(sorted(p.glob(f"*{VECTORS_SUFFIX}")) if p.is_dir() else [p])
    return out


def embed_batches(model: Encoder, catalog: Catalog, rows: pd.DataFrame, enc: EncoderConfig, fingerprint: str,
                  batch_size: int) -> Iterator[tuple[pd.DataFrame, list[dict], list[str], np.ndarray]]:  # fmt: skip
    """(rows, attributes, digests, vectors) per batch of ``rows``, embedded with ``model``."""
    dim = int(model.dim)
    for lo in range(0, len(rows), batch_size):
        batch = rows.iloc[lo : lo + batch_size]
        attrs, texts, digests = batch_inputs(catalog, batch, enc, fingerprint)
        vecs = np.asarray(model.encode_listings(texts, image_paths(catalog, batch["image"])), dtype=np.float32)
        if vecs.shape != (len(batch), dim) or not np.isfinite(vecs).all():
            raise DataError(f"the encoder returned {vecs.shape} (finite: {bool(np.isfinite(vecs).all())}) for "
                            f"{len(batch)} listings of dimension {dim}", record=str(batch['listing_id'].iloc[0]))  # fmt: skip
        yield batch, attrs, digests, vecs


def embed_to_file(model: Encoder, catalog: Catalog, rows: pd.DataFrame, enc: EncoderConfig, fingerprint: str,
                  batch_size: int, out_file: str | Path,
                  on_batch: Callable[[int], None] | None = None) -> tuple[Path, int]:  # fmt: skip
    """Embed ``rows`` into one vectors file; returns (file, listings embedded)."""
    ids: list[str] = []
    digests: list[str] = []
    parts: list[np.ndarray] = []
    for batch, _, d, vecs in embed_batches(model, catalog, rows, enc, fingerprint, batch_size):
        ids.extend(batch["listing_id"].astype(str))
        digests.extend(d)
        parts.append(vecs)
        if on_batch:
            on_batch(len(batch))
    vectors = np.concatenate(parts) if parts else np.zeros((0, int(model.dim)), np.float32)
    return write_vectors(out_file, ids, digests, vectors), len(ids)


def _worker(catalog_dir: str, ids: list[str], encoder_path: str, enc: EncoderConfig, fingerprint: str,
            batch_size: int, out_file: str, threads: int) -> tuple[str, int]:  # fmt: skip
    """One local embedding process: its own encoder, ``threads`` torch threads, one vectors file."""
    import torch

    from afmrl.models.encoders import load_encoder

    torch.set_num_threads(max(1, threads))
    catalog = read_catalog(catalog_dir)
    rows = catalog.listings[catalog.listings["listing_id"].isin(set(ids))].reset_index(drop=True)
    model = load_encoder(encoder_path, enc)
    path, n = embed_to_file(model, catalog, rows, enc, fingerprint, batch_size, out_file)
    return str(path), n


def embed_in_processes(catalog_dir: str | Path, ids: Sequence[str], encoder_path: str, enc: EncoderConfig,
                       fingerprint: str, batch_size: int, workers: int, out_dir: str | Path,
                       on_done: Callable[[int], None] | None = None) -> list[tuple[Path, int]]:  # fmt: skip
    """Embed the listings ``ids`` of the catalogue in ``workers`` spawned processes (listings sharded by
    :func:`shard_of`), each writing ``out_dir/shard-<i>-of-<n>.npz``; returns (file, count) per shard.
    ``enc``: the text settings the stage embeds with (a dual encoder's own)."""
    out_dir = Path(out_dir)
    by_shard: list[list[str]] = [[] for _ in range(workers)]
    for lid in ids:
        by_shard[shard_of(lid, workers)].append(str(lid))
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")  # no forked torch / gRPC state
    results: list[tuple[Path, int]] = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(_worker, str(catalog_dir), shard_ids, encoder_path, enc, fingerprint, batch_size,
                               str(out_dir / f"shard-{i}-of-{workers}{VECTORS_SUFFIX}"), threads)
                   for i, shard_ids in enumerate(by_shard) if shard_ids]  # fmt: skip
        for fut in as_completed(futures):
            path, n = fut.result()
            results.append((Path(path), n))
            if on_done:
                on_done(n)
    return sorted(results)
