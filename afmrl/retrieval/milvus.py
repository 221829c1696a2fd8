"""The Milvus index of listing embeddings, over ``pymilvus.MilvusClient``.

Backends, by ``index.uri`` (else MILVUS_URI, else ``outputs/milvus.db``):
- a path ending in ``.db``: Milvus Lite, embedded in this process (a local folder: WAL + Parquet
  segments + FAISS indexes). One process per ``.db``: Lite holds a file lock until the process exits, so
  a second process gets :class:`IndexLockedError`; use a Milvus server for concurrent access.
- ``http(s)://host:19530``: Milvus standalone / distributed or Zilliz Cloud; the token comes from
  ``index.token`` or MILVUS_TOKEN and never appears in messages or logs (URIs are shown redacted).
  Anything else (``root:pw@host:19530``, no scheme) is a clear :class:`ConfigError` (:func:`check_uri`).
pymilvus reads MILVUS_URI when it is imported (and fails on a Lite path): :func:`import_pymilvus` is
the one way afmrl imports it, with MILVUS_URI set aside; afmrl resolves the URI itself.

One collection per encoder version (``<prefix>_<version or encoder fingerprint>``), fields:
listing_id (VARCHAR primary key), product_id, category, title, split, attributes (JSON), price
(DOUBLE, null when unknown), content_hash (what was embedded, with which encoder), vector.
Writes are upserts (a re-run adds no duplicates); the build keeps its progress in the collection itself
(primary keys and content hashes), so an interrupted build resumes where it stopped. A serving alias
(Milvus ``create_alias`` / ``alter_alias``, supported by Milvus Lite 3 as well) names the champion's
collection and is switched atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from afmrl.config import Config, IndexConfig, is_lite_uri
from afmrl.environment import temporary_env
from afmrl.errors import AfmrlError, ConfigError

MAX_TOP_K = 16384  # Milvus's limit on limit (+ offset)
ID_MAX, TEXT_MAX, TITLE_MAX, SPLIT_MAX, HASH_MAX = 512, 512, 4096, 32, 64
PRODUCT_FIELDS = ("listing_id", "product_id", "category", "title", "price", "attributes", "split")
REQUIRED_FIELDS = (*PRODUCT_FIELDS, "content_hash", "vector")
VECTOR_FIELD = "vector"
BUILD_PARAMS: dict[str, dict[str, int | float]] = {
    "FLAT": {}, "IVF_FLAT": {"nlist": 1024}, "IVF_SQ8": {"nlist": 1024}, "HNSW": {"M": 16, "efConstruction": 200},
    "AUTOINDEX": {},
}  # fmt: skip
SEARCH_PARAMS: dict[str, dict[str, int | float]] = {
    "FLAT": {}, "IVF_FLAT": {"nprobe": 32}, "IVF_SQ8": {"nprobe": 32}, "HNSW": {"ef": 64}, "AUTOINDEX": {},
}  # fmt: skip
LITE_LOGGER = "milvus_lite.server_manager"


class IndexStoreError(AfmrlError):
    """The vector store cannot do what was asked (connection, schema, missing collection)."""


class IndexLockedError(IndexStoreError):
    """A Milvus Lite file is open in another process."""


class DimensionMismatchError(IndexStoreError):
    """The encoder's dimension differs from the existing collection's."""


def is_lite(uri: str) -> bool:
    return is_lite_uri(uri)


SERVER_SCHEMES = ("http", "https", "tcp")  # what pymilvus accepts besides unix: sockets and Lite's .db paths
_SECRET_QUERY = re.compile(r"([?&;](?:token|password|passwd|secret|api_?key|key)=)[^&;#]*", re.IGNORECASE)


def redact_uri(uri: str) -> str:
    """The URI without its credentials (``https://user:***@host:19530``), with or without a scheme
    (``root:***@host:19530``); ``token=`` / ``password=`` query values become ``***`` as well."""
    text = str(uri)
    if is_lite(text):
        return text
    scheme, sep, rest = text.partition("://")
    prefix = scheme + sep if sep else ""
    rest = rest if sep else text
    cut = min([i for i in (rest.find("?"), rest.find("#")) if i >= 0] or [len(rest)])
    head, tail = rest[:cut], rest[cut:]
    if "@" in head:  # the last @ ends the user info (a password may hold @, / or :)
        userinfo, host = head.rsplit("@", 1)
        user, colon, _ = userinfo.partition(":")
        head = (f"{user}:***" if colon and user else "***") + "@" + host
    return prefix + head + _SECRET_QUERY.sub(r"\1***", tail)


def check_uri(uri: str) -> str:
    """``uri`` when pymilvus can use it (a Lite path ending in .db, http(s)://, tcp://, unix:); otherwise a
    :class:`ConfigError` that shows the URI redacted (a ``user:password@host`` without a scheme included)."""
    text = str(uri).strip()
    if is_lite(text) or text.startswith("unix:"):
        return text
    scheme, sep, rest = text.partition("://")
    if sep and scheme.lower() in SERVER_SCHEMES and rest.split("/", 1)[0].rpartition("@")[2]:
        return text
    raise ConfigError(
        f"{redact_uri(text)!r} (from index.uri or MILVUS_URI) is not a Milvus URI: a server is "
        "http://HOST:19530 (or https://, tcp://; credentials in MILVUS_TOKEN, or USER:PASSWORD@ after the "
        "scheme), Milvus Lite is a path ending in .db (e.g. outputs/milvus.db)",
        field="index.uri",
    )


def _without_secrets(text: str, uri: str, token: str | None) -> str:
    """``text`` (a pymilvus message) with the URI redacted and its password and the token masked."""
    out = str(text).replace(uri, redact_uri(uri))
    head = uri.partition("://")[2] or uri
    userinfo = head.split("?", 1)[0].rpartition("@")[0]
    for secret in (token, userinfo.partition(":")[2] or userinfo):
        if secret:
            out = out.replace(secret, "***")
    return out


# pymilvus reads MILVUS_URI (legacy: MILVUS_DEFAULT_CONNECTION) once, when it is imported, and fails the
# import on anything but a server URI (a Lite path, a URI without a scheme), printing it whole, password
# included. afmrl resolves the URI itself (index.uri, else MILVUS_URI: IndexConfig.resolved_uri), so these
# are set aside while pymilvus is imported (and restored: child processes still see them).
_PYMILVUS_ENV = ("MILVUS_URI", "MILVUS_DEFAULT_CONNECTION")
_import_lock = threading.Lock()
# gRPC's C core (pymilvus's transport, and the Milvus Lite server milvus_lite starts as a child process)
# logs every connection closed by the server ("GOAWAY received", "Socket closed") at its default
# verbosity; it reads these once, when it is first loaded, so they are set before pymilvus is imported
# (setdefault: a user's own GRPC_VERBOSITY=DEBUG still wins). What is left on stderr is milvus_lite's
# own server log lines (not ours to configure).
_GRPC_QUIET = {"GRPC_VERBOSITY": "ERROR", "GLOG_minloglevel": "2"}


def import_pymilvus():
    """The ``pymilvus`` module, imported without it seeing MILVUS_URI: every use of pymilvus in afmrl
    goes through here (tests/retrieval/test_milvus_env.py checks that no other module imports it)."""
    if "pymilvus" not in sys.modules:
        for key, value in _GRPC_QUIET.items():
            os.environ.setdefault(key, value)
        # empty, not absent: pymilvus's load_dotenv() must not fill them from a .env
        with _import_lock, temporary_env(dict.fromkeys(_PYMILVUS_ENV, "")):
            import pymilvus as module  # noqa: F401
    import pymilvus as module

    return module


def quote(value: Any) -> str:
    """A Milvus string literal (double quotes, backslash escapes)."""
    return json.dumps(str(value), ensure_ascii=False)


def literal_list(values: Sequence[Any]) -> str:
    return "[" + ", ".join(quote(v) for v in values) + "]"


def collection_name(prefix: str, version: str) -> str:
    """``<prefix>_<version>`` with anything but letters, digits and _ replaced (Milvus naming rules)."""
    name = f"{prefix}_{re.sub(r'[^A-Za-z0-9_]', '_', str(version))}"
    return name[:255]


def collection_for(cfg: Config, fingerprint: str) -> str:
    """The collection of an encoder with this fingerprint (``index.version`` overrides it)."""
    return collection_name(cfg.index.collection_prefix, cfg.index.version or fingerprint[:12])


def collection_for_encoder(cfg: Config, encoder: str | Path) -> str:
    """The collection an encoder's embeddings live in (downloads an MLflow URI to fingerprint it)."""
    if cfg.index.version:
        return collection_name(cfg.index.collection_prefix, cfg.index.version)
    from afmrl.models.encoders.ref import resolve

    ref = resolve(encoder, cfg.tracking, cfg.encoder)
    ref.cleanup()
    return collection_for(cfg, ref.fingerprint)


@dataclass
class Hit:
    listing_id: str
    score: float  # similarity: larger is closer (IP / COSINE as returned, L2 negated)
    fields: dict[str, Any]


# ---------------------------------------------------------------------------- Milvus Lite processes
_lite_users: dict[str, int] = {}
_lite_lock = threading.Lock()


class _CaptureLiteErrors(logging.Handler):
    """Milvus Lite logs why it could not open a .db (and pymilvus then raises a generic error): keep the
    logged exception, and keep its traceback off the console while we turn it into one clear message."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.error: BaseException | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.error = record.exc_info[1]

    @contextlib.contextmanager
    def installed(self) -> Iterator[_CaptureLiteErrors]:
        logger = logging.getLogger(LITE_LOGGER)
        propagate = logger.propagate
        logger.addHandler(self)
        logger.propagate = False
        try:
            yield self
        finally:
            logger.removeHandler(self)
            logger.propagate = propagate


def _lock_held_elsewhere(lock_file: Path) -> bool:
    """Probe Lite's advisory lock (flock) without keeping it."""
    if not lock_file.is_file():
        return False
    with lock_file.open("rb") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return False


def _locked_error(path: Path) -> IndexLockedError:
    return IndexLockedError(
        "this Milvus Lite database is open in another process (Milvus Lite allows one process per .db and holds "
        "its lock until that process exits). Stop the other process, or for concurrent access (serving while "
        "building, several workers) run Milvus standalone and set index.uri / MILVUS_URI to http://HOST:19530",
        file=str(path),
    )


_quiet = threading.local()


class _QuietFilter(logging.Filter):
    """Drops pymilvus's own error log (a traceback per failed call) while afmrl turns that error into one
    message, and Lite's harmless query-iterator timestamp warning."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(_quiet, "depth", 0):
            return False
        return "failed to get mvccTs" not in record.getMessage()


class _LiteUnimplementedFilter(logging.Filter):
    """Milvus Lite's in-process gRPC server logs a traceback for RPCs it does not implement (AllocTimestamp,
    which pymilvus's query iterator tries first and then does without)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, NotImplementedError) and "Method not implemented" in record.getMessage())


_QUIET = _QuietFilter()
for _name in ("pymilvus.decorators", "pymilvus.client.iterator.query_iterator"):
    logging.getLogger(_name).addFilter(_QUIET)
logging.getLogger("grpc._server").addFilter(_LiteUnimplementedFilter())


@contextlib.contextmanager
def _milvus_errors(what: str) -> Iterator[None]:
    """pymilvus errors (bad filter, server gone) as one line naming the operation."""
    MilvusException = import_pymilvus().exceptions.MilvusException  # noqa: N806

    _quiet.depth = getattr(_quiet, "depth", 0) + 1
    try:
        yield
    except MilvusException as exc:
        raise IndexStoreError(f"{what}: {exc.message}") from None
    finally:
        _quiet.depth -= 1


# ---------------------------------------------------------------------------- the index
class MilvusIndex:
    """A connection plus the collection layout afmrl uses. Use as a context manager (or ``close()``)."""

    def __init__(self, uri: str, token: str | None = None, *, index_type: str = "auto", metric: str = "IP",
                 params: dict[str, Any] | None = None, search_params: dict[str, Any] | None = None) -> None:  # fmt: skip
        self.uri = check_uri(uri)
        self.lite = is_lite(self.uri)
        self.index_type = (("FLAT" if self.lite else "HNSW") if index_type == "auto" else index_type).upper()
        self.metric = metric.upper()
        self.params = dict(params) if params else dict(BUILD_PARAMS.get(self.index_type, {}))
        self.search_params = dict(search_params) if search_params else dict(SEARCH_PARAMS.get(self.index_type, {}))
        self._loaded: set[str] = set()
        self._metrics: dict[str, str] = {}
        self._lite_path: str | None = None
        self.client = self._connect(token)

    @classmethod
    def from_config(cls, cfg: IndexConfig) -> MilvusIndex:
        return cls(cfg.resolved_uri(), cfg.resolved_token(), index_type=cfg.index_type, metric=cfg.metric,
                   params=cfg.params, search_params=cfg.search_params)  # fmt: skip

    @property
    def where(self) -> str:
        """The backend, printable (no secrets)."""
        return f"Milvus Lite {self.uri}" if self.lite else f"Milvus {redact_uri(self.uri)}"

    # ------------------------------------------------------------------ connection
    def _connect(self, token: str | None):
        pm = import_pymilvus()
        MilvusClient, MilvusException = pm.MilvusClient, pm.exceptions.MilvusException  # noqa: N806

        if not self.lite:
            try:
                return MilvusClient(uri=self.uri, token=token or "")
            except MilvusException as exc:
                raise IndexStoreError(f"cannot connect to Milvus at {redact_uri(self.uri)}: "
                                      f"{_without_secrets(exc.message, self.uri, token)}") from None  # fmt: skip
        path = Path(self.uri).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        with _lite_lock, _CaptureLiteErrors().installed() as captured:
            try:
                client = MilvusClient(uri=str(path))
            except MilvusException as exc:
                cause = captured.error
                locked = type(cause).__name__ == "DataDirLockedError"
                if locked or (cause is None and _lock_held_elsewhere(path / "LOCK")):
                    raise _locked_error(path) from cause
                reason = f"{type(cause).__name__}: {cause}" if cause is not None else exc.message
                raise IndexStoreError(f"cannot open Milvus Lite: {reason}", file=str(path)) from cause
            _lite_users[str(path)] = _lite_users.get(str(path), 0) + 1
        self._lite_path = str(path)
        return client

    def close(self) -> None:
        """Close the client; the last afmrl user of a Lite file in this process also stops its server (and
        releases the file lock, so another process can open it)."""
        if self.client is None:
            return
        with contextlib.suppress(Exception):
            self.client.close()
        self.client = None
        if self._lite_path:
            with _lite_lock:
                n = _lite_users.get(self._lite_path, 1) - 1
                if n <= 0:
                    _lite_users.pop(self._lite_path, None)
                    from milvus_lite.server_manager import server_manager_instance

                    server_manager_instance.release_server(self._lite_path)
                else:
                    _lite_users[self._lite_path] = n

    def __enter__(self) -> MilvusIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ collections
    def has(self, name: str) -> bool:
        return bool(self.client.has_collection(name))

    def collections(self, prefix: str = "") -> list[str]:
        return sorted(c for c in self.client.list_collections() if c.startswith(prefix))

    def describe(self, name: str) -> dict[str, Any]:
        with _milvus_errors(f"cannot describe collection {name!r} in {self.where}"):
            return self.client.describe_collection(name)

    def dimension(self, name: str) -> int:
        for f in self.describe(name)["fields"]:
            if f["name"] == VECTOR_FIELD:
                return int(f["params"]["dim"])
        raise IndexStoreError(f"collection {name!r} has no {VECTOR_FIELD!r} field: not an afmrl index")

    def _schema(self, dim: int):
        pm = import_pymilvus()
        DataType, MilvusClient = pm.DataType, pm.MilvusClient  # noqa: N806

        s = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        s.add_field("listing_id", DataType.VARCHAR, is_primary=True, max_length=ID_MAX)
        s.add_field("product_id", DataType.VARCHAR, max_length=ID_MAX, nullable=True)
        s.add_field("category", DataType.VARCHAR, max_length=TEXT_MAX, nullable=True)
        s.add_field("title", DataType.VARCHAR, max_length=TITLE_MAX, nullable=True)
        s.add_field("split", DataType.VARCHAR, max_length=SPLIT_MAX, nullable=True)
        s.add_field("attributes", DataType.JSON, nullable=True)
        s.add_field("price", DataType.DOUBLE, nullable=True)
        s.add_field("content_hash", DataType.VARCHAR, max_length=HASH_MAX)
        s.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dim)
        return s

    def _index_params(self):
        ip = self.client.prepare_index_params()
        ip.add_index(VECTOR_FIELD, index_type=self.index_type, metric_type=self.metric, params=self.params)
        if not self.lite and self.server_version() >= (2, 4):  # scalar indexes for the filters (Lite scans)
            for name in ("category", "split", "price"):
                ip.add_index(name, index_type="INVERTED")
        return ip

    def server_version(self) -> tuple[int, int]:
        """(major, minor) of the Milvus server ((99, 0) when it does not say): INVERTED scalar indexes need 2.4."""
        with contextlib.suppress(Exception):
            found = re.search(r"(\d+)\.(\d+)", str(self.client.get_server_version()))
            if found:
                return int(found.group(1)), int(found.group(2))
        return (99, 0)

    def ensure_collection(self, name: str, dim: int) -> bool:
        """Create the collection (True) or check an existing one (False): its dimension must be ``dim``."""
        if self.has(name):
            existing = self.dimension(name)
            if existing != dim:
                raise DimensionMismatchError(
                    f"collection {name!r} holds {existing}-dimensional vectors but the encoder produces {dim}: "
                    "index this encoder under another version (index.version) or drop the collection"
                )
            fields = {f["name"] for f in self.describe(name)["fields"]}
            missing = [f for f in REQUIRED_FIELDS if f not in fields]
            if missing:
                raise IndexStoreError(f"collection {name!r} lacks field(s) {missing}: not an afmrl index of this "
                                      "layout; build under another version or drop it")  # fmt: skip
            self.load(name)
            return False
        with _milvus_errors(f"cannot create collection {name!r} in {self.where}"):
            self.client.create_collection(name, schema=self._schema(dim), index_params=self._index_params())
        self.load(name)
        return True

    def load(self, name: str) -> None:
        """Make a collection searchable (a reopened Lite database starts with its collections released)."""
        if name not in self._loaded:
            with _milvus_errors(f"cannot load collection {name!r}"):
                self.client.load_collection(name)
            self._loaded.add(name)

    def drop(self, name: str) -> None:
        self.client.drop_collection(name)
        self._loaded.discard(name)

    def count(self, name: str) -> int:
        return self.count_where(name, "")

    def count_where(self, name: str, expr: str) -> int:
        self.load(name)
        with _milvus_errors(f"cannot count {name!r} where {expr!r}"):
            rows = self.client.query(name, filter=expr, output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def properties(self, name: str) -> dict[str, str]:
        return dict(self.describe(name).get("properties") or {})

    def set_properties(self, name: str, props: dict[str, Any]) -> None:
        with _milvus_errors(f"cannot set properties of {name!r}"):
            self.client.alter_collection_properties(name, properties={k: str(v) for k, v in props.items()})

    # ------------------------------------------------------------------ data
    def upsert(self, name: str, records: list[dict[str, Any]]) -> int:
        if not records:
            return 0
        with _milvus_errors(f"cannot upsert into {name!r}"):
            return int(self.client.upsert(name, records)["upsert_count"])

    def delete(self, name: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        with _milvus_errors(f"cannot delete from {name!r}"):  # pymilvus's ids= does not escape quotes
            self.client.delete(name, filter=f"listing_id in {literal_list(ids)}")
        return len(ids)

    def flush(self, name: str) -> None:
        self.client.flush(name)

    def get(self, name: str, ids: Sequence[str], fields: Sequence[str] = PRODUCT_FIELDS) -> dict[str, dict[str, Any]]:
        """Records by primary key (missing ids are absent)."""
        if not ids:
            return {}
        self.load(name)
        out_fields = list(dict.fromkeys(["listing_id", *fields]))
        with _milvus_errors(f"cannot read from {name!r}"):  # pymilvus's get() does not escape quotes
            rows = self.client.query(name, filter=f"listing_id in {literal_list(ids)}", output_fields=out_fields)
        return {r["listing_id"]: dict(r) for r in rows}

    def content_hashes(self, name: str, ids: Sequence[str]) -> dict[str, str]:
        return {k: v["content_hash"] for k, v in self.get(name, ids, ("content_hash",)).items()}

    def vectors(self, name: str, ids: Sequence[str]) -> dict[str, np.ndarray]:
        return {k: np.asarray(v[VECTOR_FIELD], dtype=np.float32) for k, v in self.get(name, ids, (VECTOR_FIELD,)).items()}

    def iter_ids(self, name: str, batch_size: int = 5000) -> Iterator[list[str]]:
        """Every primary key, in pages (memory bounded by the page)."""
        for page in self.iter_fields(name, (), batch_size):
            yield [r["listing_id"] for r in page]

    def iter_fields(self, name: str, fields: Sequence[str], batch_size: int = 5000) -> Iterator[list[dict[str, Any]]]:
        """Every row's listing_id and ``fields``, in pages (memory bounded by the page)."""
        self.load(name)
        out_fields = list(dict.fromkeys(["listing_id", *fields]))
        with _milvus_errors(f"cannot scan {name!r}"):
            it = self.client.query_iterator(name, batch_size=batch_size, filter="", output_fields=out_fields)
        try:
            while page := it.next():
                yield [dict(r) for r in page]
        finally:
            it.close()

    # ------------------------------------------------------------------ search
    def metric_of(self, name: str) -> str:
        if name not in self._metrics:
            self._metrics[name] = str(self.client.describe_index(name, VECTOR_FIELD).get("metric_type", self.metric))
        return self._metrics[name]

    def search(self, name: str, vectors: np.ndarray, limit: int, expr: str = "",
               fields: Sequence[str] = ("listing_id",)) -> list[list[Hit]]:  # fmt: skip
        """Top-``limit`` hits per query vector (rows of ``vectors``), best first."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if len(vectors) == 0:
            return []
        limit = max(1, min(int(limit), MAX_TOP_K))
        self.load(name)
        metric = self.metric_of(name).upper()
        params = dict(self.search_params)
        if "ef" in params:  # HNSW needs ef >= limit
            params["ef"] = max(int(params["ef"]), limit)
        out_fields = list(dict.fromkeys(["listing_id", *fields]))
        with _milvus_errors(f"cannot search {name!r}" + (f" with filter {expr!r}" if expr else "")):
            res = self.client.search(name, data=list(vectors), limit=limit, filter=expr, output_fields=out_fields,
                                     anns_field=VECTOR_FIELD, search_params={"params": params})  # fmt: skip
        sign = -1.0 if metric == "L2" else 1.0
        hits = []
        for row in res:
            out = []
            for h in row:
                entity = dict(h.get("entity") or {})
                lid = entity.get("listing_id", h.get("listing_id", h.get("id")))
                out.append(Hit(str(lid), sign * float(h["distance"]), entity))
            hits.append(out)
        return hits

    # ------------------------------------------------------------------ serving alias
    def alias_target(self, alias: str) -> str | None:
        with _milvus_errors(f"cannot read alias {alias!r} in {self.where}"):
            listed = self.client.list_aliases()
            if alias not in (listed.get("aliases") if isinstance(listed, dict) else listed or []):
                return None
            return self.client.describe_alias(alias)["collection_name"]

    def set_alias(self, alias: str, collection: str) -> str | None:
        """Point ``alias`` at ``collection`` in one step (create or alter); returns the previous target."""
        if not self.has(collection):
            raise IndexStoreError(f"collection {collection!r} not found in {self.where}: build it first")
        previous = self.alias_target(alias)
        with _milvus_errors(f"cannot point alias {alias!r} at {collection!r}"):
            if previous is None:
                self.client.create_alias(collection, alias)
            elif previous != collection:
                self.client.alter_alias(collection, alias)
        return previous

    def resolve(self, name: str) -> str:
        """A collection name, or the collection an alias points at."""
        target = self.alias_target(name)
        if target is not None:
            return target
        if self.has(name):
            return name
        raise IndexStoreError(f"no collection or alias named {name!r} in {self.where}")
