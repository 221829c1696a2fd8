"""Atomic file writes: an output file appears whole or not at all.

:func:`atomic_path` gives a fresh temporary name in the target's folder (unique per process and call, so
two writers never share one; it keeps the target's suffix for writers that read the format from it).
When the block ends without an error the file is flushed to disk and renamed over the target
(``os.replace``, atomic on POSIX); otherwise it is removed and the target keeps its previous content.
An OS error on the way (a read-only folder, a full disk) is raised naming the target, not the
temporary. :func:`write_text_atomic` and :func:`write_json_atomic` are the common cases.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """``with atomic_path(out / "x.parquet") as tmp: write(tmp)``: ``x.parquet`` is replaced on success only."""
    target = Path(target)
    tmp = target.with_name(f".{target.stem}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{target.suffix}")
    try:
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies, as for any output
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)  # the data is on disk before the name points at it
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and exc.filename in (None, str(tmp), tmp):
            raise OSError(exc.errno, exc.strerror or str(exc), str(target)) from exc  # names the target
        raise


def write_text_atomic(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_json_atomic(path: str | Path, obj: Any, *, indent: int | None = 2, sort_keys: bool = False,
                      default: Any = None, ensure_ascii: bool = True) -> Path:  # fmt: skip
    """``obj`` as JSON (plus a final newline); a value that fails to serialise leaves the old file."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=indent, sort_keys=sort_keys, default=default, ensure_ascii=ensure_ascii)
        fh.write("\n")
    return path


def copy_folder_atomic(src: str | Path, dst: str | Path) -> Path:
    """A copy of the folder ``src`` at ``dst``, replacing what was there: whole or absent (copied under a
    temporary name beside ``dst``, then renamed)."""
    import shutil

    dst = Path(dst)
    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return dst
