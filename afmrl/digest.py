"""Content digests: the one place afmrl hashes things (bottom layer: imports nothing of afmrl).

- :func:`digest_bytes`: hex digest of byte/str chunks fed in order (sha256 unless told otherwise);
- :func:`content_hash`: sha256 of JSON-serialisable parts (bytes hashed first), e.g. cache keys;
- :func:`file_digest`: sha256 of one file's bytes, streamed;
- :func:`folder_digest`: sha256 of a folder's files (relative names, sizes, contents; files above
  64 MiB by their head and tail), optionally followed by ``extra`` settings.

The values are persisted (generation-cache keys, encoder fingerprints and so index collection
names, index content hashes, checkpoint fingerprints, MLflow dataset digests): a change to how any
of them is computed invalidates what was stored under the old values.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

BIG_FILE = 64 * 2**20  # folder_digest: files above this are hashed by size, head and tail
_CHUNK = 8 * 2**20


def digest_bytes(*chunks: bytes | str, algorithm: str = "sha256", size: int | None = None) -> str:
    """Hex digest of the chunks in order (``str`` as UTF-8); ``size``: blake2b's digest size in bytes."""
    h = hashlib.new(algorithm, digest_size=size) if size is not None else hashlib.new(algorithm)
    for c in chunks:
        h.update(c.encode("utf-8") if isinstance(c, str) else c)
    return h.hexdigest()


def content_hash(*parts: Any) -> str:
    """A stable sha256 of JSON-serialisable parts (``bytes`` parts are hashed first)."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, bytes | bytearray):
            h.update(b"b:" + hashlib.sha256(p).digest())
        else:
            h.update(json.dumps(p, sort_keys=True, ensure_ascii=False, default=str).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's whole content, read in chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _update_with_file(h: Any, path: Path) -> None:
    size = path.stat().st_size
    h.update(f"{size}\0".encode())
    with path.open("rb") as f:
        if size <= BIG_FILE:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                h.update(chunk)
        else:
            h.update(f.read(_CHUNK))
            f.seek(size - _CHUNK)
            h.update(f.read(_CHUNK))


def folder_digest(folder: str | Path, *, extra: Any = None) -> str:
    """sha256 hex of every file under ``folder`` (relative name, size, content; big files by head and
    tail), then of ``extra`` as sorted-key JSON when given (settings that change what the files mean)."""
    h = hashlib.sha256()
    root = Path(folder)
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        _update_with_file(h, p)
    if extra is not None:
        h.update(json.dumps(extra, sort_keys=True).encode())
    return h.hexdigest()
