"""One MLflow run per stage (:func:`stage_run`, :class:`StageRun`), nested under the pipeline's parent
run (:mod:`afmrl.tracking.pipeline`) when one is active.

``tracking.enabled: false`` turns logging off (for throwaway runs); the stage's outputs are the same
either way. The store is resolved and checked by :mod:`afmrl.tracking.store`. Every run is tagged
with the provenance tags of :mod:`afmrl.tracking.provenance` and ``afmrl.pipeline_run_id``;
catalogues are logged as datasets by :mod:`afmrl.tracking.datasets`. Parameters and tags go through
:mod:`afmrl.tracking.redact`.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afmrl.config import TrackingConfig
from afmrl.tracking.datasets import log_catalog_input
from afmrl.tracking.provenance import dvc_data_tags, provenance_tags
from afmrl.tracking.redact import flatten, redact, redact_tree, scrub
from afmrl.tracking.store import connect

if TYPE_CHECKING:
    from afmrl.config import Config

PARENT_RUN_ENV = "AFMRL_PARENT_RUN_ID"
PIPELINE_ID_ENV = "AFMRL_PIPELINE_RUN_ID"
_MAX_PARAM = 6000
_MAX_TAG = 8000
_TEXT_SUFFIXES = {".json", ".yaml", ".yml", ".md", ".txt", ".csv", ".log", ".toml", ".cfg", ".ini", ".html"}
_SCAN_LIMIT = 8 * 1024 * 1024  # logged text files up to this size are checked for secrets


def mlflow_key(key: str) -> str:
    """A name MLflow accepts: ``listing_R@1 -> listing_R_at_1``, other odd characters -> ``_``."""
    text = str(key).replace("@", "_at_")
    return "".join(c if c.isalnum() or c in "_-. :/" else "_" for c in text)[:250]


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

    def log_config(self, cfg: Config | Mapping[str, Any], sections: Sequence[str] | None = None,
                   **inputs: Any) -> None:  # fmt: skip
        """The one way a stage logs its parameters: the configuration ``sections`` (``None``: the whole
        tree) flattened to ``section.key`` params, plus the stage's ``inputs`` (paths, references,
        counts; a mapping becomes ``name.key``). Lists and mappings are logged as JSON, credentials
        masked (:func:`~afmrl.tracking.redact.redact`)."""
        if not self.run:
            return
        data = cfg if isinstance(cfg, Mapping) else cfg.to_dict()
        if sections is not None:
            data = {s: data[s] for s in sections}
        flat = {**flatten(data), **flatten(inputs)}
        self.log_params({k: json.dumps(v, default=str) if isinstance(v, list | tuple | Mapping) else v
                         for k, v in flat.items()})  # fmt: skip

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


