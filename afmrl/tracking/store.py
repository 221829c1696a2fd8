"""The tracking store: resolve ``tracking.uri``, check it, create it, and point MLflow at it.

The tracking URI comes from ``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else a local SQLite
store ``mlflow.db`` with artifacts under ``mlartifacts/``. Before a run starts, :func:`prepare_store`
checks an http(s) tracking server (``/health``, a few seconds) and fails with
:class:`TrackingUnavailable`; for a SQLite store it creates the tables under a file lock, so
processes that start at once on a fresh store do not race.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from afmrl.config import TrackingConfig
from afmrl.errors import AfmrlError
from afmrl.tracking.redact import remember, scrub

TIMEOUT_ENV = "AFMRL_TRACKING_TIMEOUT_S"


class TrackingUnavailable(AfmrlError):
    """The tracking server cannot be reached or refuses us: nothing was run."""


def _timeout() -> float:
    try:
        return float(os.environ.get(TIMEOUT_ENV, "5"))
    except ValueError:
        return 5.0


def check_reachable(uri: str) -> None:
    """Fail fast (a few seconds, no retries) when an http(s) tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    shown = scrub(uri)
    hint = ("start it (`afmrl ui` serves the local store; `mlflow server` a shared one), fix tracking.uri / "
            "MLFLOW_TRACKING_URI, or run with --set tracking.enabled=false")  # fmt: skip
    auth = None
    if os.environ.get("MLFLOW_TRACKING_USERNAME"):
        auth = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
    headers = {"Authorization": f"Bearer {os.environ['MLFLOW_TRACKING_TOKEN']}"} \
        if os.environ.get("MLFLOW_TRACKING_TOKEN") else {}  # fmt: skip
    try:
        resp = requests.get(uri.rstrip("/") + "/health", timeout=_timeout(), auth=auth, headers=headers)
    except requests.RequestException as exc:
        kind = type(exc).__name__
        raise TrackingUnavailable(f"MLflow tracking server {shown} is not reachable ({kind}); nothing was run: "
                                  f"{hint}", field="tracking.uri") from None  # fmt: skip
    if resp.status_code in (401, 403):
        raise TrackingUnavailable(f"MLflow tracking server {shown} refused the credentials (HTTP {resp.status_code}); "
                                  "set MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN", field="tracking.uri")
    if resp.status_code >= 500:
        raise TrackingUnavailable(f"MLflow tracking server {shown} is unhealthy (HTTP {resp.status_code}); nothing "
                                  f"was run: {hint}", field="tracking.uri")  # fmt: skip


def sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):].split("?", 1)[0])


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_ready: set[str] = set()


def _has_tables(db: Path) -> bool:
    if not db.exists() or db.stat().st_size == 0:
        return False
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as con:
            names = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
    except sqlite3.Error:
        return False
    return {"alembic_version", "experiments", "registered_models"} <= names


def prepare_store(cfg: TrackingConfig) -> str:
    """Resolve the URI and make it usable: reachability check (http) or table creation (SQLite)."""
    uri = cfg.resolved_uri()
    if scrub(uri) != uri:  # credentials in the URI: keep MLflow from printing run links with it
        from urllib.parse import urlsplit

        with contextlib.suppress(ValueError):
            remember(urlsplit(uri).password)
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    if uri in _ready:
        return uri
    check_reachable(uri)
    db = sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
        with _file_lock(db.with_name(db.name + ".lock")):
            if not _has_tables(db):
                from mlflow.tracking import MlflowClient

                client = MlflowClient(tracking_uri=uri, registry_uri=uri)
                client.search_experiments(max_results=1)  # creates the tracking tables
                client.search_registered_models(max_results=1)
    _ready.add(uri)
    return uri


def preflight(cfg: TrackingConfig) -> None:
    """Fail now (clear message, nothing run yet) if tracking is on and its store is unusable."""
    if cfg.enabled:
        prepare_store(cfg)


def _ensure_experiment(name: str, uri: str) -> str:
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if (db := sqlite_path(uri)) is not None:
        location = db.resolve().parent.joinpath("mlartifacts").as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except Exception:  # another process created it first
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


def connect(cfg: TrackingConfig) -> tuple[str, str]:
    """Point MLflow (tracking and registry) at the configured store; returns (uri, experiment id)."""
    import mlflow

    uri = prepare_store(cfg)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri, _ensure_experiment(cfg.experiment, uri)


def client_for(cfg: TrackingConfig) -> Any:
    """An ``MlflowClient`` on the configured store, registry included (the store prepared first)."""
    from mlflow.tracking import MlflowClient

    uri = prepare_store(cfg)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)
