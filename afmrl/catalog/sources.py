"""Where a catalogue's source lives: a local path or any fsspec URI (``s3://``, ``gs://``, ``memory://``...).

Importers read through these helpers, so a seller feed on object storage is read like a local file:

- :func:`is_uri` / :func:`local_path`: ``file://`` and plain paths are local, any other scheme is fsspec's;
- :func:`read_bytes`, :func:`exists`, :func:`is_dir`, :func:`join`, :func:`parent`: path operations
  for both kinds (a missing file is a :class:`~afmrl.errors.DataError` naming it);
- :func:`materialize`: a remote folder downloaded under a local folder (local paths as they are);
- :func:`redact_uri`: a URI without its credentials (``user:password@``, query string), for logs;
- :func:`source_digest`: the content digest of what ``data.*`` points at (a file, a folder, or the
  synthetic settings), the cache key of the ingest stage on Kubeflow.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from afmrl.config import DataConfig, SplitConfig, SynthConfig
from afmrl.digest import content_hash, digest_bytes, file_digest, folder_digest
from afmrl.errors import DataError

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")


def is_uri(path: str | Path) -> bool:
    """A URI fsspec opens (any ``scheme://`` other than ``file://``)."""
    text = str(path)
    return bool(_SCHEME.match(text)) and not text.startswith("file://")


def local_path(path: str | Path) -> Path | None:
    """The local path of a plain path or a ``file://`` URI; None for a remote URI."""
    text = str(path)
    if text.startswith("file://"):
        return Path(text[len("file://") :])
    return None if is_uri(text) else Path(text)


def redact_uri(path: str | Path) -> str:
    """``s3://key:secret@bucket/x?token=y`` -> ``s3://***@bucket/x``: no credentials in logs or reports."""
    text = str(path)
    if not is_uri(text):
        return text
    scheme, _, rest = text.partition("://")
    rest = rest.split("?", 1)[0].split("#", 1)[0]
    host, slash, tail = rest.partition("/")
    if "@" in host:
        host = "***@" + host.rsplit("@", 1)[1]
    return f"{scheme}://{host}{slash}{tail}"


def _fs(uri: str) -> tuple[Any, str]:
    import fsspec

    try:
        return fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as exc:  # an unknown scheme or its package (s3fs, gcsfs) missing
        raise DataError(f"cannot open {redact_uri(uri)}: {exc}".splitlines()[0], file=redact_uri(uri)) from None


def exists(path: str | Path) -> bool:
    local = local_path(path)
    if local is not None:
        return local.exists()
    fs, p = _fs(str(path))
    return bool(fs.exists(p))


def is_dir(path: str | Path) -> bool:
    local = local_path(path)
    if local is not None:
        return local.is_dir()
    fs, p = _fs(str(path))
    return bool(fs.isdir(p))


def read_bytes(path: str | Path) -> bytes:
    """The bytes of a local file or a URI; a missing or unreadable one is a DataError naming it."""
    local = local_path(path)
    try:
        if local is not None:
            return local.read_bytes()
        fs, p = _fs(str(path))
        with fs.open(p, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise DataError("file not found", file=redact_uri(path)) from None
    except IsADirectoryError:
        raise DataError("is a folder, not a file", file=redact_uri(path)) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc}".splitlines()[0], file=redact_uri(path)) from None


def join(base: str | Path, relative: str) -> str | Path:
    """``base/relative`` for a local folder (a Path) or a URI (a string)."""
    local = local_path(base)
    if local is not None:
        return local / relative
    return str(base).rstrip("/") + "/" + relative.lstrip("/")


def parent(path: str | Path) -> str | Path:
    """The folder holding ``path``."""
    local = local_path(path)
    if local is not None:
        return local.resolve().parent
    return str(path).rstrip("/").rsplit("/", 1)[0]


def name_of(path: str | Path) -> str:
    """The last part of a path or URI without its extension (``feeds/shop.csv`` -> ``shop``)."""
    return Path(str(path).rstrip("/").rsplit("/", 1)[-1]).stem


def materialize(path: str | Path, dest: str | Path) -> Path:
    """A local path to read ``path`` from: itself when local, else a copy downloaded under ``dest``."""
    local = local_path(path)
    if local is not None:
        if not local.exists():
            raise DataError("not found", file=str(local))
        return local
    fs, p = _fs(str(path))
    if not fs.exists(p):
        raise DataError("not found", file=redact_uri(path))
    target = Path(dest) / name_of(path) if fs.isdir(p) else Path(dest) / Path(p).name
    target.parent.mkdir(parents=True, exist_ok=True)
    fs.get(p.rstrip("/") + ("/" if fs.isdir(p) else ""), str(target), recursive=True)
    return target


def _remote_digest(uri: str) -> str:
    """Remote content by fsspec's ``ukey`` (size, ETag / checksum or modification time per file)."""
    fs, p = _fs(uri)
    if not fs.exists(p):
        raise DataError("not found", file=redact_uri(uri))
    if not fs.isdir(p):
        return digest_bytes("file\0", fs.ukey(p))
    root = p.rstrip("/")
    names = sorted(fs.find(root))
    return digest_bytes("folder\0", *(f"{n[len(root):]}\0{fs.ukey(n)}\0" for n in names))


def path_digest(path: str | Path) -> str:
    """The content digest of a file or folder, local (bytes) or remote (fsspec's per-file keys)."""
    local = local_path(path)
    if local is None:
        return _remote_digest(str(path))
    if local.is_dir():
        return folder_digest(local)
    if local.is_file():
        return file_digest(local)
    raise DataError("not found (data.path: a folder, a file or an fsspec URI)", file=str(local), field="data.path")


def source_digest(data: DataConfig, synth: SynthConfig, splits: SplitConfig) -> str:
    """What the ingest stage's output is a function of: the source's content (synthetic: the ``synth``
    settings) plus the format, the column mapping, the product cap and the split settings."""
    settings = {"format": data.format, "columns": data.columns.model_dump(mode="json"),
                "max_products": data.max_products, "splits": splits.model_dump(mode="json")}  # fmt: skip
    if data.format == "synthetic":
        return content_hash(settings, synth.model_dump(mode="json"))
    return content_hash(settings, path_digest(data.path))
