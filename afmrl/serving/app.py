"""The HTTP API and the pages (FastAPI). :func:`create_app` builds it around a :class:`ServingState`.

- ``POST /search``: a photo upload and/or a text (multipart form ``image``, ``text``, ``k``,
  ``category``; or JSON ``{"text", "k", "categories"}``) -> candidates with scores, product fields, image
  URLs and the key attributes that agree / differ with the query, and the time split
  (``timing``: encode_ms, search_ms, overhead_ms);
- ``GET /listings/{id}/similar?k=``: the same for a listing in the index (never itself);
- ``GET /listings/{id}``: one listing's fields; ``GET /images/{id}``: its image (from the catalogue);
- ``GET /health``: what is served (collection, encoder, registry version), pending moves;
- ``GET /metrics``: Prometheus; ``GET /``: the search page; ``GET /dedup``: the duplicate review page
  (``GET /api/dedup`` its data).

Bad requests get a 4xx and one message (``{"detail": ...}``): 400 an empty or malformed query, 404 an
unknown listing, 413 a body over ``serve.max_upload_mb``, 415 an upload that is not an image, 422 a bad
parameter; 503 while nothing can be served. No request can stop the service: anything unexpected is
a 500 with its message, and the process goes on.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image, UnidentifiedImageError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from afmrl.attributes.extractors.rules import RuleExtractor
from afmrl.config import Config
from afmrl.errors import AfmrlError, DataError
from afmrl.retrieval.milvus import Hit, IndexStoreError
from afmrl.serving.catalog_images import catalog_images
from afmrl.serving.compare import (
    as_attributes,
    catalog_extractor,
    compare,
    extractor_for,
    key_attributes,
    query_attributes,
)
from afmrl.serving.dedup import load_dedup
from afmrl.serving.metrics import ServiceMetrics
from afmrl.serving.searcher import Searcher, Timing
from afmrl.serving.state import NotReady, Served, ServingState, catalog_root

STATIC = Path(__file__).with_name("static")
log = logging.getLogger("afmrl.serving")


class BodyTooLarge(Exception):
    """The request body passed ``serve.max_upload_mb``."""


class BodyLimit:
    """ASGI middleware: refuse a body over ``limit`` bytes, by its Content-Length at once, or while it
    streams (chunked uploads), before the form parser buffers it."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await _too_large(self.limit)(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge()
            return message

        await self.app(scope, limited, send)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"request body over the limit of {limit / 2**20:g} MiB (serve.max_upload_mb)"},
                        status_code=413)  # fmt: skip


def _k(value: Any, cfg: Config) -> int:
    if value in (None, ""):
        return cfg.serve.top_k
    try:
        k = int(value)
    except (TypeError, ValueError):
        raise HTTPException(422, f"k must be a whole number, got {str(value)[:40]!r}") from None
    if not 1 <= k <= cfg.serve.max_top_k:
        raise HTTPException(422, f"k must be between 1 and {cfg.serve.max_top_k} (serve.max_top_k), got {k}")
    return k


def _image(data: bytes, name: str) -> Image.Image:
    if not data:
        raise HTTPException(400, f"the uploaded file {name!r} is empty")
    try:
        with Image.open(io.BytesIO(data)) as probe:
            probe.verify()  # a truncated or corrupt file fails here
        img = Image.open(io.BytesIO(data))
        img.load()
        return img.convert("RGB")
    except Image.DecompressionBombError as exc:
        raise HTTPException(413, f"the uploaded image {name!r} is too large to decode: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise HTTPException(415, f"the uploaded file {name!r} is not an image PIL can read "
                                 f"({type(exc).__name__}: {str(exc)[:120]})") from None  # fmt: skip


def create_app(cfg: Config, state: ServingState | None = None) -> FastAPI:
    """The service. With ``state`` None it opens the index and loads the champion at startup (and closes
    them at shutdown); a given ``state`` must be started already and is left open."""
    metrics = ServiceMetrics()
    holder: dict[str, Any] = {"state": state}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        own = holder["state"] is None
        if own:
            st = ServingState(cfg)
            try:
                await run_in_threadpool(st.start)
            except BaseException:
                st.close()
                raise
            holder["state"] = st
        holder["searcher"] = Searcher(cfg, holder["state"].index)
        try:
            yield
        finally:
            if own:
                holder["state"].close()

    app = FastAPI(title="afmrl search", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.add_middleware(BodyLimit, limit=int(cfg.serve.max_upload_mb * 2**20))
    app.state.metrics = metrics
    app.state.holder = holder

    def st() -> ServingState:
        return holder["state"]

    # ------------------------------------------------------------------ errors: 4xx/5xx, never a crash
    @app.exception_handler(BodyTooLarge)
    async def _body(_: Request, __: BodyTooLarge) -> JSONResponse:
        return _too_large(int(cfg.serve.max_upload_mb * 2**20))

    @app.exception_handler(NotReady)
    async def _not_ready(_: Request, exc: NotReady) -> JSONResponse:
        return JSONResponse({"detail": f"not ready: {exc}"}, status_code=503)

    @app.exception_handler(DataError)
    async def _data(_: Request, exc: DataError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(AfmrlError)
    async def _afmrl(_: Request, exc: AfmrlError) -> JSONResponse:
        status = 503 if isinstance(exc, IndexStoreError) else 400
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("afmrl serve: request failed")
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {str(exc)[:300]}"}, status_code=500)

    @app.middleware("http")
    async def _observe(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        start = time.perf_counter()
        route = request.url.path
        for prefix in ("/listings/", "/images/", "/static/"):
            if route.startswith(prefix):
                route = prefix + "{id}" + ("/similar" if route.endswith("/similar") else "")
                break
        try:
            response = await call_next(request)
        except BodyTooLarge:
            response = _too_large(int(cfg.serve.max_upload_mb * 2**20))
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - start)
        return response

    # ------------------------------------------------------------------ results
    def _hit_json(rank: int, hit: Hit, served: Served, query_attrs: dict[str, Any],
                  extractor: RuleExtractor) -> dict[str, Any]:  # fmt: skip
        f = hit.fields
        attrs = key_attributes(extractor, f.get("title"), as_attributes(f.get("attributes")))
        images = catalog_images(catalog_root(st(), served))
        return {"rank": rank, "listing_id": hit.listing_id, "score": round(hit.score, 6),
                "product_id": f.get("product_id"), "category": f.get("category"), "title": f.get("title"),
                "price": f.get("price"), "split": f.get("split"), "attributes": attrs,
                "image_url": f"/images/{hit.listing_id}" if images and images.has_image(hit.listing_id) else None,
                "compare": compare(query_attrs, attrs)}  # fmt: skip

    def _answer(served: Served, hits: list[Hit], query: dict[str, Any], query_attrs: dict[str, Any] | None,
                timing: Timing, text: str | None, kind: str) -> dict[str, Any]:  # fmt: skip
        start = time.perf_counter()
        stated = [as_attributes(h.fields.get("attributes")) for h in hits]
        extractor = extractor_for(stated, catalog_extractor(catalog_root(st(), served)))
        if query_attrs is None:
            query_attrs = query_attributes(text, stated, extractor)
        results = [_hit_json(r, h, served, query_attrs, extractor) for r, h in enumerate(hits, 1)]
        timing.compare_ms = (time.perf_counter() - start) * 1e3
        times = timing.done()
        metrics.encode.labels(kind).observe(times["encode_ms"] / 1e3)
        metrics.search.observe(times["search_ms"] / 1e3)
        return {"query": {**query, "attributes": query_attrs}, "collection": served.collection,
                "version": served.version, "k": len(results), "results": results, "timing": times}  # fmt: skip

    def _search(text: str | None, image: Image.Image | None, k: int, categories: list[str]) -> dict[str, Any]:
        served = st().current  # one pair for the whole request, whatever swaps meanwhile
        searcher: Searcher = holder["searcher"]
        timing = Timing()
        if image is None:
            hits = searcher.text_query(served, str(text), k, categories, timing)
        else:
            vec = searcher.encode(served, text, image, timing)
            hits = searcher.search(served, vec, k, timing, categories=categories)
        kind = "text+image" if (text and image is not None) else "image" if image is not None else "text"
        query = {"text": text, "image": image is not None, "categories": categories}
        return _answer(served, hits, query, None, timing, text, kind)

    # ------------------------------------------------------------------ API
    @app.post("/search")
    async def search(request: Request) -> JSONResponse:
        ctype = request.headers.get("content-type", "")
        text: str | None = None
        image: Image.Image | None = None
        k_raw: Any = None
        categories: list[str] = []
        if ctype.startswith("application/json"):
            try:
                body = await request.json()
            except ValueError as exc:
                raise HTTPException(400, f"the body is not valid JSON: {exc}") from None
            if not isinstance(body, dict):
                raise HTTPException(400, "the JSON body must be an object: {\"text\": ..., \"k\": ...}")
            text, k_raw = body.get("text"), body.get("k")
            cats = body.get("categories") or []
            if not isinstance(cats, list) or not all(isinstance(c, str) for c in cats):
                raise HTTPException(422, "categories must be a list of strings")
            categories = cats
            if text is not None and not isinstance(text, str):
                raise HTTPException(422, "text must be a string")
        elif ctype.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
            try:
                form = await request.form(max_files=1, max_fields=20)
            except HTTPException:
                raise
            except BodyTooLarge:
                raise
            except Exception as exc:
                raise HTTPException(400, f"the form cannot be read: {exc}") from None
            raw_text = form.get("text")
            text = raw_text if isinstance(raw_text, str) else None
            k_raw = form.get("k")
            categories = [c for c in form.getlist("category") if isinstance(c, str) and c]
            upload = form.get("image")
            if isinstance(upload, UploadFile):
                data = await upload.read()
                if data or upload.filename:
                    image = await run_in_threadpool(_image, data, upload.filename or "image")
            elif upload not in (None, ""):
                raise HTTPException(415, "image must be an uploaded file (multipart form field 'image')")
        else:
            raise HTTPException(415, "send a multipart form (text, image, k) or JSON ({\"text\": ..., \"k\": ...})")
        text = text.strip() if text else None
        if not text and image is None:
            raise HTTPException(400, "empty query: give a text, a photo, or both")
        if text and len(text) > cfg.serve.max_query_chars:
            raise HTTPException(413, f"text query of {len(text)} characters is over serve.max_query_chars "
                                     f"({cfg.serve.max_query_chars})")  # fmt: skip
        k = _k(k_raw, cfg)
        return JSONResponse(await run_in_threadpool(_search, text, image, k, categories))

    @app.get("/listings/{listing_id}/similar")
    def similar(listing_id: str, k: str | None = None) -> dict[str, Any]:
        kk = _k(k, cfg)
        served = st().current
        searcher: Searcher = holder["searcher"]
        timing = Timing()
        vec, row = searcher.listing_vector(served, listing_id, timing)
        hits = searcher.search(served, vec, kk, timing, exclude=listing_id)
        attrs = key_attributes(extractor_for([], catalog_extractor(catalog_root(st(), served))), row.get("title"),
                               as_attributes(row.get("attributes")))  # fmt: skip
        query = {"listing_id": listing_id, "title": row.get("title"), "category": row.get("category"),
                 "price": row.get("price"), "product_id": row.get("product_id"),
                 "image_url": f"/images/{listing_id}" if _has_image(served, listing_id) else None}  # fmt: skip
        return _answer(served, hits, query, attrs, timing, None, "listing")

    def _has_image(served: Served, listing_id: str) -> bool:
        images = catalog_images(catalog_root(st(), served))
        return bool(images and images.has_image(listing_id))

    @app.get("/listings/{listing_id}")
    def listing(listing_id: str) -> dict[str, Any]:
        served = st().current
        _, row = holder["searcher"].listing_vector(served, listing_id, Timing())
        row["attributes"] = as_attributes(row.get("attributes"))
        row["image_url"] = f"/images/{listing_id}" if _has_image(served, listing_id) else None
        return row

    @app.get("/images/{listing_id}")
    def image(listing_id: str) -> FileResponse:
        served = st().current
        images = catalog_images(catalog_root(st(), served))
        if images is None:
            raise HTTPException(404, "no catalogue folder to read images from (serve.catalog)")
        return FileResponse(images.path(listing_id), headers={"Cache-Control": "max-age=3600"})

    @app.get("/health")
    def health() -> JSONResponse:
        s = st()
        served = s._current if s is not None else None
        body = {"status": "ok" if served else "starting", "backend": s.index.where if s else None,
                "alias": cfg.index.alias, "follows": s.encoder_uri if s else None,
                "serving": served.describe() if served else None, "pending": s.pending if s else None,
                "swaps": s.swaps if s else 0, "last_check": s.last_check if s else None}  # fmt: skip
        if served is not None:
            metrics.swaps.set(s.swaps)
            metrics.version.set(float(served.version) if (served.version or "").isdigit() else 0.0)
        return JSONResponse(body, status_code=200 if served else 503)

    @app.get("/metrics")
    def prometheus() -> Response:
        s = st()
        if s is not None and s._current is not None:
            metrics.swaps.set(s.swaps)
            v = s._current.version or ""
            metrics.version.set(float(v) if v.isdigit() else 0.0)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/dedup")
    def dedup() -> dict[str, Any]:
        return load_dedup(cfg.serve.dedup)

    # ------------------------------------------------------------------ pages
    @app.get("/")
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/dedup")
    def dedup_page() -> FileResponse:
        return FileResponse(STATIC / "dedup.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
