"""One MLflow run per stage (nested under the pipeline's parent run when one is active).

The tracking URI comes from ``tracking.uri``, else ``MLFLOW_TRACKING_URI``, else a local SQLite
store ``mlflow.db`` with artifacts under ``mlartifacts/``. ``tracking.enabled: false`` turns
logging off (for throwaway runs); the stage's outputs are the same either way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from afmrl.config import TrackingConfig

PARENT_RUN_ENV = "AFMRL_PARENT_RUN_ID"


class StageRun:
    """What a stage logs through; ``None`` run means tracking is disabled."""

    def __init__(self, run: Any | None) -> None:
        self.run = run
        self.run_id = run.info.run_id if run else None

    def log_params(self, params: dict[str, Any]) -> None:
        if self.run:
            import mlflow

            mlflow.log_params({k: ("" if v is None else str(v)[:6000]) for k, v in params.items()})

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if self.run:
            import mlflow

            mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if self.run:
            import mlflow

            mlflow.log_artifact(str(path), artifact_path=artifact_path)


def _ensure_experiment(name: str, uri: str) -> str:
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    if uri.startswith("sqlite:///"):
        location = Path(uri[len("sqlite:///"):]).resolve().parent.joinpath("mlartifacts").as_uri()
    try:
        return mlflow.create_experiment(name, artifact_location=location)
    except Exception:  # another process created it first
        exp = mlflow.get_experiment_by_name(name)
        if exp is None:
            raise
        return exp.experiment_id


@contextmanager
def stage_run(cfg: TrackingConfig, stage: str, tags: dict[str, str] | None = None) -> Iterator[StageRun]:
    if not cfg.enabled:
        yield StageRun(None)
        return
    import mlflow

    uri = cfg.resolved_uri()
    mlflow.set_tracking_uri(uri)
    experiment_id = _ensure_experiment(cfg.experiment, uri)
    parent = os.environ.get(PARENT_RUN_ENV)
    all_tags = {"afmrl.stage": stage, **(tags or {})}
    if parent:
        all_tags["mlflow.parentRunId"] = parent
    with mlflow.start_run(experiment_id=experiment_id, run_name=stage, tags=all_tags) as run:
        yield StageRun(run)
