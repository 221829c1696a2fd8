"""What the service serves: one encoder and the collection built with it, swapped as one.

The pair is found, loaded and checked off the request path, then swapped in under a lock in one
assignment, so a request sees either the old pair or the new one, never an encoder with another
encoder's collection; until the new pair is loaded the old one keeps answering.

Which pair:

- ``serve.encoder`` null (the default): the registry's champion (``models:/<registry.encoder_name>@
  <registry.champion_alias>``), followed every ``serve.follow_interval_s`` seconds. Its collection is
  ``<index.collection_prefix>_<fingerprint>`` (what the index stage built for it).
  - **Milvus Lite**: one process holds the ``.db`` file, and while the service runs that process is the
    service. So the service moves the serving alias itself: when the champion moves (``afmrl promote``,
    a rollback in the MLflow UI) it loads the new version, checks its collection is a complete build in
    the file, points ``index.alias`` at it (atomically) and swaps. It holds the afmrl lock of the Lite file
    for its lifetime, so a pipeline stage that would write the file (index, publish) stops at once with a
    message naming the service instead of failing inside Milvus.
  - **a Milvus server**: publish moves the alias, and the service follows the alias: when the alias's
    target changes it loads the encoder whose fingerprint the collection records (the champion's when
    they agree, else the collection's ``afmrl.encoder``), then swaps.
- ``serve.encoder`` a folder or a pinned URI: that encoder and its collection, never moved.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afmrl.config import Config
from afmrl.errors import ConfigError
from afmrl.models.encoders import Encoder, load_encoder
from afmrl.models.encoders.ref import EncoderRef, resolve
from afmrl.retrieval.milvus import IndexStoreError, MilvusIndex, collection_for

log = logging.getLogger("afmrl.serving")


class NotReady(IndexStoreError):
    """Nothing can be served yet (no champion, no complete collection for it)."""


@dataclass(frozen=True)
class Served:
    """One consistent (encoder, collection) pair and where it came from."""

    encoder: Encoder
    collection: str
    fingerprint: str
    dim: int
    encoder_ref: str
    version: str | None = None  # the registry version, when it came from the registry
    catalog: str | None = None  # the catalogue the collection was built from (listing images)
    loaded_at: float = field(default_factory=time.time)

    def describe(self) -> dict[str, Any]:
        return {"collection": self.collection, "encoder": self.encoder_ref, "version": self.version,
                "fingerprint": self.fingerprint[:12], "dim": self.dim, "catalog": self.catalog,
                "loaded_at": round(self.loaded_at, 3)}  # fmt: skip


def alias_uri(cfg: Config) -> str:
    return f"models:/{cfg.registry.encoder_name}@{cfg.registry.champion_alias}"


def _registry_alias(uri: str) -> tuple[str, str] | None:
    """``(name, alias)`` of ``models:/name@alias``; None for anything else."""
    if not uri.startswith("models:/") or "@" not in uri:
        return None
    name, alias = uri[len("models:/") :].split("@", 1)
    return name.strip("/"), alias


class ServingState:
    """The served pair, the Milvus client (one per process) and the follower thread."""

    def __init__(self, cfg: Config, *, index: MilvusIndex | None = None) -> None:
        self.cfg = cfg
        self.encoder_uri = cfg.serve.encoder or alias_uri(cfg)
        self.follows_registry = _registry_alias(self.encoder_uri) is not None and cfg.tracking.enabled
        self._own_index = index is None
        self._lock_cm: contextlib.AbstractContextManager[Any] | None = None
        self.index = index or self._open_index()
        self._swap_lock = threading.Lock()
        self._current: Served | None = None
        self._encoders: dict[str, Encoder] = {}  # fingerprint -> loaded encoder (the current and the last one)
        self._fingerprints: dict[str, str] = {}  # registry version -> fingerprint
        self.pending: str | None = None  # why a move seen in the registry / alias is not served yet
        self.last_check: float | None = None
        self.swaps = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def _open_index(self) -> MilvusIndex:
        if self.cfg.index.lite_path() is not None:  # stages that write the Lite file stop with a clear message
            from afmrl.tracking.lock import pipeline_lock

            self._lock_cm = pipeline_lock(self.cfg, "afmrl serve (the search service)", index=True, tracking=False)
            self._lock_cm.__enter__()
        try:
            return MilvusIndex.from_config(self.cfg.index)
        except BaseException:
            self._release_lock()
            raise

    def _release_lock(self) -> None:
        if self._lock_cm is not None:
            cm, self._lock_cm = self._lock_cm, None
            cm.__exit__(None, None, None)

    def start(self) -> Served:
        """Load the first pair (errors here stop the service: nothing to serve) and start following."""
        self.refresh()
        if self._current is None:
            raise NotReady(self.pending or "nothing to serve")
        interval = self.cfg.serve.follow_interval_s
        if interval > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._follow, args=(interval,), name="afmrl-follow", daemon=True)
            self._thread.start()
        return self._current

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        if self._own_index:
            self.index.close()
        self._release_lock()

    def _follow(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.refresh()
            except Exception as exc:  # a registry or Milvus hiccup: keep serving, say so in /health
                self.pending = f"check failed: {type(exc).__name__}: {exc}"
                log.warning("afmrl serve: %s", self.pending)

    # ------------------------------------------------------------------ the served pair
    @property
    def current(self) -> Served:
        served = self._current
        if served is None:
            raise NotReady(self.pending or "the service has not loaded an encoder yet")
        return served

    @property
    def lite(self) -> bool:
        return self.index.lite

    def refresh(self) -> bool:
        """One check: load and swap in a new pair if the champion / alias moved. True when it swapped."""
        self.last_check = time.time()
        if not self.follows_registry:
            return self._refresh_pinned()
        name, alias = _registry_alias(self.encoder_uri)  # type: ignore[misc]
        version = self._champion_version(name, alias)
        if self.lite:
            return self._refresh_lite(name, version)
        return self._refresh_server(name, version)

    def _champion_version(self, name: str, alias: str) -> str | None:
        import mlflow
        from mlflow import MlflowClient

        from afmrl.tracking.registry import get_alias_version

        uri = self.cfg.tracking.resolved_uri()
        mlflow.set_tracking_uri(uri)  # the registry too: the version's download (models:/name/N) reads it
        mlflow.set_registry_uri(uri)
        mv = get_alias_version(MlflowClient(tracking_uri=uri, registry_uri=uri), name, alias)
        return None if mv is None else str(mv.version)

    def _refresh_pinned(self) -> bool:
        if self._current is not None:
            return False
        ref = resolve(self.encoder_uri, self.cfg.tracking, self.cfg.encoder)
        return self._swap_to(ref, collection_for(self.cfg, ref.fingerprint), version=None, move_alias=self.lite)

    def _refresh_lite(self, name: str, version: str | None) -> bool:
        cur = self._current
        if version is None:
            if cur is None:
                self.pending = f"no version of {name!r} has alias {self.encoder_uri.split('@', 1)[1]!r} yet: run the " \
                               "pipeline (README, first command) or `afmrl promote` first"  # fmt: skip
            return False
        if cur is not None and cur.version == version:
            return False
        ref = resolve(f"models:/{name}/{version}", self.cfg.tracking, self.cfg.encoder)
        return self._swap_to(ref, collection_for(self.cfg, ref.fingerprint), version=version, move_alias=True)

    def _refresh_server(self, name: str, version: str | None) -> bool:
        cur = self._current
        target = self.index.alias_target(self.cfg.index.alias)
        if target is None:
            if cur is None and version is not None:  # no alias yet: serve the champion's collection
                ref = resolve(f"models:/{name}/{version}", self.cfg.tracking, self.cfg.encoder)
                return self._swap_to(ref, collection_for(self.cfg, ref.fingerprint), version=version, move_alias=False)
            if cur is None:
                self.pending = f"alias {self.cfg.index.alias!r} points nowhere and {name!r} has no champion"
            return False
        if cur is not None and cur.collection == target:
            return False
        wanted = self.index.properties(target).get("afmrl.fingerprint", "")
        ref: EncoderRef | None = None
        if version is not None:
            fp = self._fingerprints.get(version)
            if fp is None or fp == wanted:
                ref = resolve(f"models:/{name}/{version}", self.cfg.tracking, self.cfg.encoder)
                self._fingerprints[version] = ref.fingerprint
                if ref.fingerprint != wanted:
                    ref.cleanup()
                    ref = None
        if ref is None:  # the alias moved to a collection that is not the champion's: its own encoder
            recorded = self.index.properties(target).get("afmrl.encoder", "")
            if not recorded or _registry_alias(recorded):
                self.pending = f"alias {self.cfg.index.alias!r} -> {target!r}, whose encoder is not known"
                return False
            ref = resolve(recorded, self.cfg.tracking, self.cfg.encoder)
            version = None
        return self._swap_to(ref, target, version=version, move_alias=False)

    def _swap_to(self, ref: EncoderRef, collection: str, *, version: str | None, move_alias: bool) -> bool:
        """Check ``collection``, load ``ref``'s encoder (outside the lock), move the alias, swap."""
        try:
            if not self.index.has(collection):
                self.pending = (f"collection {collection!r} of encoder {ref.ref}"
                                f"{f' (version {version})' if version else ''} is not in {self.index.where}: "
                                "build it with `afmrl index build` (a Lite file: stop the service first)")  # fmt: skip
                return False
            props = self.index.properties(collection)
            if props.get("afmrl.complete") != "true":
                self.pending = f"collection {collection!r} is not a complete build: re-run `afmrl index build`"
                return False
            encoder = self._encoders.get(ref.fingerprint)
            if encoder is None:
                encoder = load_encoder(ref, self.cfg.encoder, self.cfg.tracking)
            dim = self.index.dimension(collection)
            if int(encoder.dim) != dim:
                raise ConfigError(f"encoder {ref.ref} gives {encoder.dim}-dimensional vectors, collection "
                                  f"{collection!r} holds {dim}", field="serve.encoder")  # fmt: skip
            self.index.load(collection)
        finally:
            ref.cleanup()
        self._warm(encoder)
        if move_alias:
            self.index.set_alias(self.cfg.index.alias, collection)
        served = Served(encoder, collection, ref.fingerprint, dim, ref.ref, version, props.get("afmrl.catalog"))
        with self._swap_lock:
            previous, self._current = self._current, served
            self._encoders = {ref.fingerprint: encoder}
            if previous is not None and previous.fingerprint != ref.fingerprint:
                self._encoders[previous.fingerprint] = previous.encoder  # a rollback needs no reload
            self.pending = None
            self.swaps += previous is not None
        log.info("afmrl serve: serving %s (encoder %s, version %s)", collection, ref.ref, version)
        return True

    @staticmethod
    def _warm(encoder: Encoder) -> None:
        """One query through the text tower before the pair goes live (first calls allocate)."""
        with contextlib.suppress(Exception):
            encoder.encode_texts(["warm up"])


def catalog_root(state: ServingState, served: Served) -> Path | None:
    """The catalogue folder listing images are read from (``serve.catalog``, else the index's record)."""
    folder = state.cfg.serve.catalog or served.catalog
    return Path(folder) if folder else None
