"""Errors that name where the problem is: file, record and field."""

from __future__ import annotations

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
