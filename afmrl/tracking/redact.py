"""Keep credentials out of MLflow and out of the console.

Two layers:

- **by key**: a parameter, tag or config entry whose key looks like a credential (a word such as
  ``token``, ``secret``, ``password``, ``key``, ``credentials``, ``auth``, or a word ending in one of
  the first four: ``access_token``, ``AWS_SECRET_ACCESS_KEY``, ``milvus.token``, ``apiKey``) keeps
  its key and gets the value ``***``. ``max_tokens`` or ``attributes.keys`` are not credentials
  (plural words are not matched).
- **by value**: every value seen under such a key (in the environment, or passed through
  :func:`redact`) is remembered, and :func:`scrub` replaces it wherever it appears in other text
  (a URI, an error message, a logged file). ``user:password@`` in URLs is always replaced.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

MASK = "***"
_SECRET_WORDS = {"token", "secret", "password", "passwd", "key", "apikey", "credential", "credentials", "auth",
                 "authorization", "passphrase", "privatekey", "sas"}  # fmt: skip
_SECRET_SUFFIXES = ("token", "secret", "password", "passwd", "key", "credential")
_NOT_SECRET_ENV = {"PWD", "OLDPWD", "HOME", "PATH", "SSH_AUTH_SOCK", "GPG_AGENT_INFO"}
_MIN_SECRET_LEN = 6  # shorter values ("1", "true") would scrub innocent text
_URL_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/@\s:]*(?::[^/@\s]*)?)@")
_remembered: set[str] = set()


def _words(key: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)
    return [w for w in re.split(r"[^a-z0-9]+", spaced.lower()) if w]


def is_secret_key(key: str) -> bool:
    """True for keys that name a credential: ``milvus.token``, ``AWS_SECRET_ACCESS_KEY``, ``s3.key``."""
    return any(w in _SECRET_WORDS or w.endswith(_SECRET_SUFFIXES) for w in _words(str(key)))


def remember(value: Any) -> None:
    """Treat ``value`` as a secret from now on (scrubbed from every later text in this process)."""
    text = "" if value is None else str(value)
    if len(text) >= _MIN_SECRET_LEN and text.lower() not in {"true", "false", "none", "null"}:
        _remembered.add(text)


def secret_values() -> list[str]:
    """Known secret values, longest first: env variables with credential names, plus remembered ones."""
    values = set(_remembered)
    # list(os.environ) snapshots the names: another thread (MLflow's telemetry) may remove a variable
    # while we read, which made os.environ.items() raise KeyError
    for name in list(os.environ):
        value = os.environ.get(name)
        if value is None:
            continue
        if name not in _NOT_SECRET_ENV and is_secret_key(name) and len(value) >= _MIN_SECRET_LEN:
            if value.lower() not in {"true", "false", "none", "null"}:
                values.add(value)
    values.update(_env_uri_passwords())
    return sorted(values, key=len, reverse=True)


_URI_ENV = ("MILVUS_URI", "MILVUS_DEFAULT_CONNECTION", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def _env_uri_passwords() -> set[str]:
    """The passwords of ``user:password@`` in the store URIs of the environment, with or without a
    scheme (``root:secret@host:19530`` is what a user may well write in MILVUS_URI)."""
    found = set()
    for name in _URI_ENV:
        uri = os.environ.get(name) or ""
        userinfo = (uri.partition("://")[2] or uri).split("?", 1)[0].rpartition("@")[0]
        password = userinfo.partition(":")[2]
        if len(password) >= _MIN_SECRET_LEN:
            found.add(password)
    return found


def scrub(text: Any) -> str:
    """``text`` with every known secret value and every URL ``user:password@`` replaced by ``***``."""
    out = "" if text is None else str(text)
    for value in secret_values():
        if value in out:
            out = out.replace(value, MASK)
    return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", out)


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": [1, 2]} -> {"a.b": 1, "c": [1, 2]}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def redact(params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a flat mapping safe to log: credential keys masked (their values remembered), other
    string values scrubbed. Nested mappings are flattened first."""
    flat = flatten(params)
    for key, value in flat.items():
        if is_secret_key(key) and value not in (None, ""):
            remember(value)
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if is_secret_key(key) and value not in (None, ""):
            out[key] = MASK
        elif isinstance(value, str | list | tuple | dict):
            out[key] = scrub(value)
        else:
            out[key] = value
    return out


def redact_tree(data: Any) -> Any:
    """A copy of a nested document (dicts, lists, scalars) with credential keys masked and text scrubbed."""
    if isinstance(data, Mapping):
        out = {}
        for key, value in data.items():
            if is_secret_key(str(key)) and value not in (None, "") and not isinstance(value, Mapping):
                remember(value)
                out[key] = MASK
            else:
                out[key] = redact_tree(value)
        return out
    if isinstance(data, list | tuple):
        return [redact_tree(v) for v in data]
    if isinstance(data, str):
        return scrub(data)
    return data
