"""One MLflow run per stage, nested under the pipeline's parent run when one is active.

The tracking URI comes from ``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else a local SQLite
store ``mlflow.db`` with artifacts under ``mlartifacts/``. ``tracking.enabled: false`` turns
logging off (for throwaway runs); the stage's outputs are the same either way.

Pipeline runs: :func:`pipeline_run` (a context manager, for KFP or a script) or
:func:`start_pipeline_run` / :func:`end_pipeline_run` (``afmrl run start|end``, around ``dvc repro``)
make one parent run that carries the flattened config, the input catalogue (``mlflow.data``) and
provenance tags; every :func:`stage_run` started while ``AFMRL_PARENT_RUN_ID`` is set is its child.

Every run is tagged with ``afmrl.git_commit`` (``AFMRL_GIT_COMMIT`` or ``git rev-parse HEAD``),
``afmrl.dvc_lock_md5`` (when a ``dvc.lock`` is found from the working directory up) and
``afmrl.pipeline_run_id``. Parameters and tags go through :mod:`afmrl.tracking.redact`.

Before a run starts, :func:`prepare_store` checks an http(s) tracking server (``/health``, a few
seconds) and fails with :class:`TrackingUnavailable`; for a SQLite store it creates the tables under
a file lock, so processes that start at once on a fresh store do not race.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afmrl.config import TrackingConfig
from afmrl.errors import AfmrlError
from afmrl.tracking.redact import redact, redact_tree, remember, scrub

if TYPE_CHECKING:
    from afmrl.config import Config

PARENT_RUN_ENV = "AFMRL_PARENT_RUN_ID"
PIPELINE_ID_ENV = "AFMRL_PIPELINE_RUN_ID"
GIT_COMMIT_ENV = "AFMRL_GIT_COMMIT"
TIMEOUT_ENV = "AFMRL_TRACKING_TIMEOUT_S"
_MAX_PARAM = 6000
_MAX_TAG = 8000
_TEXT_SUFFIXES = {".json", ".yaml", ".yml", ".md", ".txt", ".csv", ".log", ".toml", ".cfg", ".ini", ".html"}
_SCAN_LIMIT = 8 * 1024 * 1024  # logged text files up to this size are checked for secrets


def mlflow_key(key: str) -> str:
    """A name MLflow accepts: ``listing_R@1 -> listing_R_at_1``, other odd characters -> ``_``."""
    text = str(key).replace("@", "_at_")
    return "".join(c if c.isalnum() or c in "_-. :/" else "_" for c in text)[:250]


class TrackingUnavailable(AfmrlError):
    """The tracking server cannot be reached or refuses us: nothing was run."""


class StageRun:
    """What a stage logs through; ``None`` run means tracking is disabled."""

    def __init__(self, run: Any | None, client: Any | None = None) -> None:
        self.run = run
        self.run_id = run.info.run_id if run else None
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient()
        return self._client

    def log_params(self, params: dict[str, Any]) -> None:
        """Log parameters (nested dicts flattened to dotted keys); credentials are masked."""
        if self.run:
            from mlflow.entities import Param

            safe = redact(params)
            self.client.log_batch(self.run_id, params=[
                Param(mlflow_key(k), "" if v is None else str(v)[:_MAX_PARAM]) for k, v in safe.items()])  # fmt: skip

    def log_config(self, cfg: Config | Mapping[str, Any]) -> None:
        """The whole configuration tree as flattened ``section.key`` params (credentials masked)."""
        data = cfg if isinstance(cfg, Mapping) else cfg.to_dict()
        self.log_params({k: json.dumps(v) if isinstance(v, list | dict) else v for k, v in redact(data).items()})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.run and tags:
            from mlflow.entities import RunTag

            safe = redact(dict(tags))
            self.client.log_batch(self.run_id, tags=[RunTag(mlflow_key(k), scrub(v)[:_MAX_TAG]) for k, v in safe.items()])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.run:
            from mlflow.entities import Metric

            now = int(time.time() * 1000)
            self.client.log_batch(self.run_id, metrics=[
                Metric(mlflow_key(k), float(v), now, step or 0) for k, v in metrics.items()])  # fmt: skip

    def log_step(self, metrics: dict[str, Any], step: int) -> dict[str, float]:
        """Log the finite numeric entries of a trainer's log dict at ``step``; returns what was logged."""
        import math

        clean = {}
        for k, v in metrics.items():
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(float(v)):
                continue
            clean["".join(c if c.isalnum() or c in "_-./ " else "_" for c in str(k))] = float(v)
        if clean:
            self.log_metrics(clean, step=step)
        return clean

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Log a file; a text file that contains a known secret is logged as a scrubbed copy."""
        if not self.run:
            return
        path = Path(path)
        with tempfile.TemporaryDirectory(prefix="afmrl-artifact-") as tmp:
            self.client.log_artifact(self.run_id, str(_scrubbed_copy(path, Path(tmp))), artifact_path=artifact_path)

    def log_dict(self, data: Mapping[str, Any], name: str) -> None:
        """Log a JSON document (scrubbed) as an artifact called ``name``."""
        if self.run:
            text = json.dumps(redact_tree(dict(data)), indent=2, sort_keys=True, default=str)
            self.client.log_text(self.run_id, scrub(text), name)

    def log_catalog(self, catalog_dir: str | Path, context: str = "training", name: str | None = None) -> str | None:
        """Log a catalogue as an MLflow dataset input; returns its digest (also tagged)."""
        if not self.run:
            return None
        try:
            digest = log_catalog_input(self.client, self.run_id, catalog_dir, context, name)
        except Exception as exc:  # lineage is metadata: never fail a stage over it, but say so
            from afmrl.progress import console

            console.print(f"[yellow]warning[/]: catalogue {catalog_dir} not logged as a dataset: {scrub(exc)}",
                          highlight=False)  # fmt: skip
            return None
        self.set_tags({f"afmrl.data.{context}.digest": digest, **dvc_data_tags(catalog_dir, context)})
        return digest


def _scrubbed_copy(path: Path, tmp: Path) -> Path:
    if not path.is_file() or path.suffix.lower() not in _TEXT_SUFFIXES or path.stat().st_size > _SCAN_LIMIT:
        return path
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return path
    clean = scrub(text)
    if clean == text:
        return path
    copy = tmp / path.name
    copy.write_text(clean, encoding="utf-8")
    return copy


# ---- provenance ----------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _git_commit(cwd: str) -> str | None:
    git = shutil.which("git")
    if not git:
        return None
    try:
        out = subprocess.run([git, "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def git_commit() -> str | None:
    return os.environ.get(GIT_COMMIT_ENV) or _git_commit(os.getcwd())


def find_dvc_lock(start: str | Path | None = None) -> Path | None:
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.lock").is_file():
            return folder / "dvc.lock"
        if (folder / ".dvc").is_dir() or (folder / ".git").exists():
            return None
    return None


def _dvc_outs(lock: Path) -> dict[str, str]:
    import yaml

    try:
        doc = yaml.safe_load(lock.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    found: dict[str, str] = {}
    for stage in (doc.get("stages") or {}).values():
        for entry in (stage.get("outs") or []) + (stage.get("deps") or []):
            if isinstance(entry, dict) and entry.get("path") and entry.get("md5"):
                found.setdefault(str(entry["path"]).rstrip("/"), str(entry["md5"]))
    return found


def provenance_tags() -> dict[str, str]:
    tags: dict[str, str] = {}
    if commit := git_commit():
        tags["afmrl.git_commit"] = commit
    if lock := find_dvc_lock():
        tags["afmrl.dvc_lock_md5"] = hashlib.md5(lock.read_bytes()).hexdigest()
    return tags


def dvc_data_tags(catalog_dir: str | Path, context: str) -> dict[str, str]:
    """``afmrl.data.<context>.dvc_md5``: the hash dvc.lock records for the catalogue (folder or parquet)."""
    lock = find_dvc_lock()
    if lock is None:
        return {}
    outs = _dvc_outs(lock)
    folder = Path(catalog_dir).resolve()
    for candidate in (folder, folder / "listings.parquet"):
        rel = Path(os.path.relpath(candidate, lock.parent)).as_posix()
        if rel in outs:
            return {f"afmrl.data.{context}.dvc_md5": outs[rel], f"afmrl.data.{context}.dvc_path": rel}
    return {}


@functools.lru_cache(maxsize=32)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:32]


def catalog_digest(catalog_dir: str | Path) -> str:
    """sha256 (32 hex chars) of the catalogue's ``listings.parquet``: changes when any row does."""
    path = Path(catalog_dir) / "listings.parquet"
    st = path.stat()
    return _file_digest(str(path.resolve()), st.st_size, st.st_mtime_ns)


def log_catalog_input(client: Any, run_id: str, catalog_dir: str | Path, context: str,
                      name: str | None = None) -> str:  # fmt: skip
    import mlflow.data
    import pandas as pd
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    folder = Path(catalog_dir)
    digest = catalog_digest(folder)
    frame = pd.read_parquet(folder / "listings.parquet")
    with warnings.catch_warnings():  # "source can be interpreted in multiple ways": both are local files
        warnings.simplefilter("ignore", UserWarning)
        dataset = mlflow.data.from_pandas(frame, source=str((folder / "listings.parquet").resolve()),
                                          name=name or folder.resolve().name, digest=digest)  # fmt: skip
    client.log_inputs(run_id, datasets=[
        DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])])  # fmt: skip
    return digest


# ---- the store -----------------------------------------------------------------------------


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


def _pipeline_tags() -> dict[str, str]:
    tags: dict[str, str] = {}
    parent = os.environ.get(PARENT_RUN_ENV)
    pipeline_id = os.environ.get(PIPELINE_ID_ENV) or parent
    if pipeline_id:
        tags["afmrl.pipeline_run_id"] = pipeline_id
    return tags


def _scrub_run_tags(client: Any, run: Any) -> None:
    """MLflow's own tags (source name, git repo URL) may carry credentials: scrub them in place."""
    for key, value in run.data.tags.items():
        clean = scrub(value)
        if clean != value:
            client.set_tag(run.info.run_id, key, clean)


@contextmanager
def stage_run(cfg: TrackingConfig, stage: str, tags: dict[str, str] | None = None,
              config: Config | None = None) -> Iterator[StageRun]:  # fmt: skip
    """A run for one stage (a child of ``AFMRL_PARENT_RUN_ID`` when set); ``config`` logs the tree."""
    if not cfg.enabled:
        yield StageRun(None)
        return
    import mlflow
    from mlflow.tracking import MlflowClient

    uri, experiment_id = connect(cfg)
    parent = os.environ.get(PARENT_RUN_ENV)
    all_tags = {"afmrl.stage": stage, **provenance_tags(), **_pipeline_tags(), **(tags or {})}
    nested = mlflow.active_run() is not None
    if parent and not nested:
        all_tags["mlflow.parentRunId"] = parent
    all_tags = {k: scrub(v) for k, v in redact(all_tags).items()}
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    with mlflow.start_run(experiment_id=experiment_id, run_name=stage, tags=all_tags, nested=nested) as run:
        _scrub_run_tags(client, client.get_run(run.info.run_id))
        stage_run_ = StageRun(run, client)
        if config is not None:
            stage_run_.log_config(config)
        yield stage_run_


# ---- the pipeline's parent run -------------------------------------------------------------


def new_pipeline_run_id(name: str = "pipeline") -> str:
    return f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


def start_pipeline_run(cfg: Config, name: str = "pipeline", catalog: str | Path | None = None,
                       pipeline_run_id: str | None = None, tags: Mapping[str, str] | None = None) -> str:  # fmt: skip
    """Create the parent run (left RUNNING for stages in other processes); returns its run id.

    Stages join it through ``AFMRL_PARENT_RUN_ID`` (and ``AFMRL_PIPELINE_RUN_ID``). Logged: the
    flattened config, the input catalogue as a dataset (context ``pipeline``), provenance tags."""
    from mlflow.tracking import MlflowClient

    if not cfg.tracking.enabled:
        raise AfmrlError("tracking.enabled is false: there is no MLflow run to start", field="tracking.enabled")
    uri, experiment_id = connect(cfg.tracking)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    pid = pipeline_run_id or os.environ.get(PIPELINE_ID_ENV) or new_pipeline_run_id(name)
    all_tags = {"afmrl.stage": "pipeline", "afmrl.pipeline_run_id": pid, **provenance_tags(), **(tags or {})}
    run = client.create_run(experiment_id, run_name=name,
                            tags={k: scrub(v) for k, v in redact(all_tags).items()})  # fmt: skip
    parent = StageRun(run, client)
    parent.log_config(cfg)
    if catalog is not None:
        parent.log_catalog(catalog, context="pipeline")
    return run.info.run_id


def end_pipeline_run(cfg: TrackingConfig, run_id: str, status: str | None = None) -> dict[str, Any]:
    """Close the parent run: FAILED if ``status`` says so or any child stage failed, else FINISHED.
    Returns ``{"run_id", "status", "stages": {name: status}}`` (also the tag ``afmrl.stages``)."""
    from mlflow.tracking import MlflowClient

    uri, _ = connect(cfg)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(run_id)
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'",
                                  max_results=1000, order_by=["attributes.start_time ASC"])  # fmt: skip
    stages = {c.info.run_name or c.info.run_id: c.info.status for c in children}
    final = (status or ("FAILED" if any(s in ("FAILED", "KILLED") for s in stages.values()) else "FINISHED")).upper()
    client.set_tag(run_id, "afmrl.stages", scrub(", ".join(f"{k}:{v}" for k, v in stages.items()))[:_MAX_TAG])
    client.set_terminated(run_id, status=final, end_time=int(time.time() * 1000))
    return {"run_id": run_id, "status": final, "stages": stages}


@contextmanager
def pipeline_run(cfg: Config, name: str = "pipeline", catalog: str | Path | None = None,
                 pipeline_run_id: str | None = None) -> Iterator[str]:  # fmt: skip
    """``with pipeline_run(cfg, catalog=...) as run_id:`` every stage run inside is its child."""
    if not cfg.tracking.enabled:
        yield ""
        return
    pid = pipeline_run_id or os.environ.get(PIPELINE_ID_ENV) or new_pipeline_run_id(name)
    run_id = start_pipeline_run(cfg, name, catalog, pid)
    saved = {k: os.environ.get(k) for k in (PARENT_RUN_ENV, PIPELINE_ID_ENV)}
    os.environ[PARENT_RUN_ENV] = run_id
    os.environ[PIPELINE_ID_ENV] = pid
    status = "FAILED"
    try:
        yield run_id
        status = None
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        end_pipeline_run(cfg.tracking, run_id, status)
