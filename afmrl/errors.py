"""Errors that name where the problem is: file, record and field."""

from __future__ import annotations


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
