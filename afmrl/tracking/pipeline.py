"""The pipeline's parent run: one MLflow run that every stage run of a pipeline is a child of.

:func:`pipeline_run` (a context manager, for KFP or a script) or :func:`start_pipeline_run` /
:func:`end_pipeline_run` (``afmrl run start|end``, around ``dvc repro``) make one parent run that
carries the flattened config, the input catalogue (``mlflow.data``) and provenance tags; every
:func:`~afmrl.tracking.runs.stage_run` started while ``AFMRL_PARENT_RUN_ID`` is set is its child.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afmrl.config import TrackingConfig
from afmrl.environment import temporary_env
from afmrl.errors import AfmrlError
from afmrl.tracking.lock import holds_stores, pipeline_lock
from afmrl.tracking.provenance import provenance_tags
from afmrl.tracking.redact import redact, scrub
from afmrl.tracking.runs import _MAX_TAG, PARENT_RUN_ENV, PIPELINE_ID_ENV, StageRun
from afmrl.tracking.store import connect

if TYPE_CHECKING:
    from afmrl.config import Config


def new_pipeline_run_id(name: str = "pipeline") -> str:
    return f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


@holds_stores("pipeline run (afmrl run start)")  # refused while another pipeline holds the local stores
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


def pipeline_metrics(report: str | Path | None, decision: str | Path | None,
                     gate: Iterable[str] = ()) -> dict[str, float]:  # fmt: skip
    """The figures a pipeline ends on, for its parent run: the gate metrics (``gate``, names of
    ``registry.gate``) and the loop's per-round figures from the evaluation report and ``promoted`` (0/1) from the decision, each where its
    file exists (a pipeline stopped early has neither). MLflow metric names have ``_at_`` for ``@``."""
    import json
    import math

    from afmrl.retrieval.report import round_figures

    figures: dict[str, float] = {}
    if report is not None and Path(report).is_file():
        doc = json.loads(Path(report).read_text())
        metrics = doc.get("metrics") or {}
        figures.update(round_figures(doc.get("rounds") or []))  # round<n>.<primary>, attribute F1, selected round
        for name in gate:
            value = metrics.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                figures[name.replace("@", "_at_")] = float(value)
    if decision is not None and Path(decision).is_file():
        doc = json.loads(Path(decision).read_text())
        if "promoted" in doc:
            figures["promoted"] = float(bool(doc["promoted"]))
    return figures


def end_pipeline_run(cfg: TrackingConfig, run_id: str, status: str | None = None,
                     metrics: Mapping[str, float] | None = None) -> dict[str, Any]:  # fmt: skip
    """Close the parent run: FAILED if ``status`` says so or any child stage failed, else FINISHED; log
    ``metrics`` (:func:`pipeline_metrics`) to it first. Returns ``{"run_id", "status", "stages": {name:
    status}}`` (also the tag ``afmrl.stages``) and ``"metrics"`` when some were logged."""
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    uri, _ = connect(cfg)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    run = client.get_run(run_id)
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'",
                                  max_results=1000, order_by=["attributes.start_time ASC"])  # fmt: skip
    stages = {c.info.run_name or c.info.run_id: c.info.status for c in children}
    final = (status or ("FAILED" if any(s in ("FAILED", "KILLED") for s in stages.values()) else "FINISHED")).upper()
    client.set_tag(run_id, "afmrl.stages", scrub(", ".join(f"{k}:{v}" for k, v in stages.items()))[:_MAX_TAG])
    now = int(time.time() * 1000)
    if metrics:
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    client.set_terminated(run_id, status=final, end_time=now)
    return {"run_id": run_id, "status": final, "stages": stages, **({"metrics": dict(metrics)} if metrics else {})}


@contextmanager
def pipeline_run(cfg: Config, name: str = "pipeline", catalog: str | Path | None = None,
                 pipeline_run_id: str | None = None) -> Iterator[str]:  # fmt: skip
    """``with pipeline_run(cfg, catalog=...) as run_id:`` every stage run inside is its child. The block
    holds the local stores' locks (:mod:`afmrl.tracking.lock`): a second pipeline on the same Milvus Lite
    file or SQLite store stops at once with a clear message; stages inside (and their child processes) go on."""
    with pipeline_lock(cfg, f"pipeline run {name!r}"):
        if not cfg.tracking.enabled:
            yield ""
            return
        pid = pipeline_run_id or os.environ.get(PIPELINE_ID_ENV) or new_pipeline_run_id(name)
        run_id = start_pipeline_run(cfg, name, catalog, pid)
        status = "FAILED"
        try:
            with temporary_env({PARENT_RUN_ENV: run_id, PIPELINE_ID_ENV: pid}):
                yield run_id
            status = None
        finally:
            end_pipeline_run(cfg.tracking, run_id, status)
