"""Errors that name where the problem is: file, record and field."""

from __future__ import annotations

import errno
from typing import Any


class AfmrlError(Exception):
    """A user-facing error. The CLI prints it without a traceback and exits non-zero."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        record: str | int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.record = record
        self.field = field

    def __str__(self) -> str:
        where = []
        if self.file is not None:
            where.append(f"file {self.file}")
        if self.record is not None:
            where.append(f"record {self.record}")
        if self.field is not None:
            where.append(f"field {self.field}")
        return f"{', '.join(where)}: {self.message}" if where else self.message


class ConfigError(AfmrlError):
    """Unknown or ill-typed configuration key."""


class DataError(AfmrlError):
    """Input data that cannot be read or does not follow the catalogue format."""


class ValidationFailed(AfmrlError):
    """The validation gate rejected more rows than the configured threshold."""


class TriggerError(AfmrlError):
    """A retrain-trigger check could not run (e.g. ``dvc status`` failed, a state file is unreadable)."""


def read_json_file(path: str, missing: str, error: type[AfmrlError] | None = None) -> Any:
    """The JSON document in ``path``; a missing file raises ``error`` (DataError by default) with the
    hint ``missing`` (e.g. "run `afmrl promote` first"), invalid JSON one that names the file."""
    import json
    from pathlib import Path

    error = error or DataError
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"not found ({missing})", file=str(path)) from None
    except json.JSONDecodeError as exc:
        raise error(f"not valid JSON: {exc}", file=str(path)) from None



# OS errors about the machine rather than the code: the CLI shows them as one line (path + reason)
_DISK_HINTS = {
    "ENOSPC": "the disk is full: free some space or write elsewhere",
    "EDQUOT": "over the disk quota: free some space or write elsewhere",
    "EROFS": "the file system is read-only: choose another output folder",
    "EACCES": "no permission: check the folder's permissions or choose another output folder",
    "EPERM": "not permitted: check the folder's permissions or choose another output folder",
    "EIO": "the disk reported an I/O error",
}
DISK_ERRNOS = frozenset(getattr(errno, name) for name in _DISK_HINTS if hasattr(errno, name))


def is_environment_error(exc: OSError) -> bool:
    """An OS error naming a path, or a disk error (full, read-only, no permission): the user's to fix."""
    return exc.filename is not None or exc.errno in DISK_ERRNOS


def describe_os_error(exc: OSError) -> str:
    """``PATH: reason (hint)``: what the CLI prints for an OS error instead of a traceback."""
    where = ""
    if exc.filename is not None:
        where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 is not None else "") + ": "
    hint = _DISK_HINTS.get(errno.errorcode.get(exc.errno, "") if isinstance(exc.errno, int) else "")
    return f"{where}{exc.strerror or exc}" + (f" ({hint})" if hint else "")
