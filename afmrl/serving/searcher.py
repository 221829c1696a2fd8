"""One query -> ranked candidates, timed: encode (the warm encoder), search (one Milvus call), the rest.

Kept lean for latency: one :class:`~afmrl.retrieval.milvus.MilvusIndex` client for the process, the
collection loaded once (at swap time), only the fields the page shows asked back (never the vector),
read consistency ``serve.consistency_level`` (the served collection is a complete build nobody writes
to, so ``Eventually`` skips the wait for a fresh timestamp), nothing tokenised but the query.

Concurrent text queries are batched without waiting: while one batch is encoded and searched, the
queries that arrive queue up, and the next batch takes them all (up to ``max_batch``) into one forward
pass and one Milvus call (Milvus Lite's per-call work, a pass over every stored row, is then paid once
per batch). A lone query is answered at once, alone.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from afmrl.config import Config
from afmrl.errors import DataError
from afmrl.retrieval.milvus import VECTOR_FIELD, Hit, IndexStoreError, MilvusIndex, literal_list, quote
from afmrl.serving.state import Served

SHOWN_FIELDS = ("listing_id", "product_id", "category", "title", "price", "attributes", "split")


@dataclass
class Timing:
    """Milliseconds spent per part of a request (``overhead_ms``: everything but encode and search)."""

    encode_ms: float = 0.0
    search_ms: float = 0.0
    compare_ms: float = 0.0
    total_ms: float = 0.0
    started: float = field(default_factory=time.perf_counter)

    def done(self) -> dict[str, float]:
        self.total_ms = (time.perf_counter() - self.started) * 1e3
        overhead = self.total_ms - self.encode_ms - self.search_ms
        return {"encode_ms": round(self.encode_ms, 3), "search_ms": round(self.search_ms, 3),
                "compare_ms": round(self.compare_ms, 3), "overhead_ms": round(overhead, 3),
                "total_ms": round(self.total_ms, 3)}  # fmt: skip


class Searcher:
    """Query encoding and the Milvus search for the served pair."""

    def __init__(self, cfg: Config, index: MilvusIndex, max_batch: int = 16) -> None:
        self.cfg = cfg
        self.index = index
        self.search_params = {"params": dict(index.search_params)}
        # torch runs one forward at a time well on few cores; concurrent forwards only fight for them
        self._encode_lock = threading.Lock()
        self.max_batch = max_batch
        self._queue: queue.Queue[_Job] | None = None
        self._batcher_lock = threading.Lock()

    # ------------------------------------------------------------------ encoding
    def encode(self, served: Served, text: str | None, image: Image.Image | None, timing: Timing) -> np.ndarray:
        start = time.perf_counter()
        with self._encode_lock:
            if image is not None and text:
                vec = served.encoder.encode_listings([text], [image])
            elif image is not None:
                vec = served.encoder.encode_images([image])
            else:
                vec = served.encoder.encode_texts([str(text)])
        timing.encode_ms += (time.perf_counter() - start) * 1e3
        vec = np.asarray(vec, dtype=np.float32)
        if vec.shape != (1, served.dim) or not np.isfinite(vec).all():
            raise IndexStoreError(f"the encoder returned {vec.shape} for one query (collection dimension {served.dim})")
        return vec

    def listing_vector(self, served: Served, listing_id: str, timing: Timing) -> tuple[np.ndarray, dict[str, Any]]:
        """A stored listing's vector and fields (404 when absent: :class:`DataError` with the record)."""
        start = time.perf_counter()
        rows = self.index.client.query(served.collection, filter=f"listing_id == {quote(listing_id)}",
                                       output_fields=[*SHOWN_FIELDS, VECTOR_FIELD],
                                       consistency_level=self.cfg.serve.consistency_level)  # fmt: skip
        timing.search_ms += (time.perf_counter() - start) * 1e3
        if not rows:
            raise DataError(f"listing {listing_id!r} is not in the served collection {served.collection!r}",
                            record=listing_id)  # fmt: skip
        row = dict(rows[0])
        vec = np.asarray(row.pop(VECTOR_FIELD), dtype=np.float32)[None, :]
        return vec, row

    # ------------------------------------------------------------------ search
    @staticmethod
    def expression(exclude: str | None = None, categories: list[str] | None = None) -> str:
        parts = []
        if exclude is not None:
            parts.append(f"listing_id != {quote(exclude)}")
        if categories:
            parts.append(f"category in {literal_list(categories)}")
        return " and ".join(parts)

    def search_many(self, served: Served, vectors: np.ndarray, k: int, expr: str = "") -> list[list[Hit]]:
        """One Milvus call for several query vectors (Milvus Lite's per-call work is shared by them)."""
        res = self.index.client.search(served.collection, data=[v.tolist() for v in vectors], limit=k, filter=expr,
                                       output_fields=list(SHOWN_FIELDS), anns_field=VECTOR_FIELD,
                                       search_params=self.search_params,
                                       consistency_level=self.cfg.serve.consistency_level)  # fmt: skip
        sign = -1.0 if self.index.metric_of(served.collection).upper() == "L2" else 1.0
        out = []
        for row in res or []:
            hits = []
            for h in row:
                entity = dict(h.get("entity") or {})
                hits.append(Hit(str(entity.get("listing_id", h.get("id"))), sign * float(h["distance"]), entity))
            out.append(hits)
        return out

    def search(self, served: Served, vec: np.ndarray, k: int, timing: Timing, *, exclude: str | None = None,
               categories: list[str] | None = None) -> list[Hit]:  # fmt: skip
        start = time.perf_counter()
        hits = self.search_many(served, vec[:1], k, self.expression(exclude, categories))
        timing.search_ms += (time.perf_counter() - start) * 1e3
        return hits[0] if hits else []

    # ------------------------------------------------------------------ concurrent text queries, batched
    def text_query(self, served: Served, text: str, k: int, categories: list[str], timing: Timing) -> list[Hit]:
        """A text query through the batcher: queries that arrive while one batch is being answered are
        encoded in one forward and searched in one Milvus call (a lone query goes alone, without waiting)."""
        job = _Job(served, text, k, self.expression(None, categories))
        self._batcher().put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        timing.encode_ms += job.encode_ms
        timing.search_ms += job.search_ms
        return job.hits

    def _batcher(self) -> queue.Queue[_Job]:
        with self._batcher_lock:
            if self._queue is None:
                self._queue = queue.Queue()
                threading.Thread(target=self._run_batches, name="afmrl-batcher", daemon=True).start()
            return self._queue

    def _run_batches(self) -> None:
        assert self._queue is not None
        while True:
            jobs = [self._queue.get()]
            while len(jobs) < self.max_batch:
                try:
                    jobs.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            groups: dict[tuple[int, int, str], list[_Job]] = {}
            for job in jobs:
                groups.setdefault((id(job.served), job.k, job.expr), []).append(job)
            for group in groups.values():
                self._answer(group)

    def _answer(self, group: list[_Job]) -> None:
        served = group[0].served
        try:
            start = time.perf_counter()
            with self._encode_lock:
                vecs = np.asarray(served.encoder.encode_texts([j.text for j in group]), dtype=np.float32)
            encode_ms = (time.perf_counter() - start) * 1e3
            if vecs.shape != (len(group), served.dim) or not np.isfinite(vecs).all():
                raise IndexStoreError(f"the encoder returned {vecs.shape} for {len(group)} queries "
                                      f"(collection dimension {served.dim})")  # fmt: skip
            start = time.perf_counter()
            rows = self.search_many(served, vecs, group[0].k, group[0].expr)
            search_ms = (time.perf_counter() - start) * 1e3
            for job, hits in zip(group, rows, strict=True):
                job.hits, job.encode_ms, job.search_ms = hits, encode_ms, search_ms
        except BaseException as exc:  # handed to each request: the batcher thread goes on
            for job in group:
                job.error = exc
        finally:
            for job in group:
                job.done.set()


@dataclass
class _Job:
    served: Served
    text: str
    k: int
    expr: str
    hits: list[Hit] = field(default_factory=list)
    encode_ms: float = 0.0
    search_ms: float = 0.0
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
