"""The last training: when it was, and the profile of the catalogue it was trained on.

Read from ``trigger.state_file`` (written by :func:`record_training`, ``afmrl trigger --record``),
else from MLflow: the newest finished run tagged ``afmrl.stage`` = ``trigger.train_stage`` (or a
``trigger-record`` run) and its ``trigger/last_training.json`` artifact. A run without that artifact
still counts (its end time, no profile); an artifact that is there but unreadable, or a store that
cannot be queried, is a :class:`~afmrl.errors.TriggerError` with the cause, never a silent "no profile".
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from afmrl.atomic import write_json_atomic
from afmrl.config import Config, TrackingConfig
from afmrl.errors import TriggerError
from afmrl.orchestration.drift import profile_catalog

STATE_FORMAT = 1
STATE_ARTIFACT_DIR = "trigger"
STATE_ARTIFACT_NAME = "last_training.json"
RECORD_STAGE = "trigger-record"


@dataclass
class TrainingState:
    trained_at: datetime
    profile: dict[str, Any] | None = None
    source: str = ""
    catalog: str | None = None


def parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def state_document(
    trained_at: datetime, profile: dict[str, Any] | None, catalog: str | None
) -> dict[str, Any]:
    return {"format": STATE_FORMAT, "trained_at": iso(trained_at), "catalog": catalog, "profile": profile}


def parse_state(doc: Any, source: str) -> TrainingState:
    if not isinstance(doc, dict) or "trained_at" not in doc:
        raise TriggerError("not a training record (expected an object with trained_at)", file=source)
    try:
        when = parse_time(str(doc["trained_at"]))
    except ValueError as exc:
        raise TriggerError(
            f"trained_at is not an ISO 8601 time: {exc}", file=source, field="trained_at"
        ) from None
    return TrainingState(
        trained_at=when, profile=doc.get("profile"), source=source, catalog=doc.get("catalog")
    )


def read_state_file(path: str | Path) -> TrainingState | None:
    p = Path(path)
    if not p.exists():
        return None
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise TriggerError(f"not valid JSON: {exc}", file=str(p)) from exc
    return parse_state(doc, str(p))


def state_from_mlflow(tracking: TrackingConfig, train_stage: str) -> TrainingState | None:
    """The newest finished training (or trigger-record) run of the experiment, with its recorded profile."""
    if not tracking.enabled:
        return None
    uri = tracking.resolved_uri()
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).exists():
        return None  # no local store yet: nothing was ever tracked (and do not create one here)
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient
    from sqlalchemy.exc import SQLAlchemyError  # an SQL store's errors (a damaged mlflow.db) are not wrapped

    from afmrl.tracking.redact import scrub

    artifact = f"{STATE_ARTIFACT_DIR}/{STATE_ARTIFACT_NAME}"
    try:
        client = MlflowClient(tracking_uri=uri)
        exp = client.get_experiment_by_name(tracking.experiment)
        if exp is None:
            return None
        runs = []
        for stage in dict.fromkeys((train_stage, RECORD_STAGE)):
            runs += client.search_runs(
                [exp.experiment_id],
                filter_string=f"tags.`afmrl.stage` = '{stage}' and attributes.status = 'FINISHED'",
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
        if not runs:
            return None
        run = max(runs, key=lambda r: r.info.end_time or r.info.start_time)
        recorded = {f.path for f in client.list_artifacts(run.info.run_id, STATE_ARTIFACT_DIR)}
    except (MlflowException, SQLAlchemyError, OSError) as exc:  # requests' errors are OSErrors
        raise TriggerError(f"cannot read the last training from the MLflow store {scrub(uri)}: {scrub(exc)}",
                           field="tracking.uri") from exc  # fmt: skip
    ended = datetime.fromtimestamp((run.info.end_time or run.info.start_time) / 1000, tz=UTC)
    source = f"mlflow run {run.info.run_id}"
    if artifact not in recorded:  # a training run that recorded no profile: its time still counts
        return TrainingState(trained_at=ended, profile=None, source=source)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run.info.run_id, artifact, tmp)
            text = Path(local).read_text(encoding="utf-8")
        except (MlflowException, OSError, UnicodeDecodeError) as exc:
            raise TriggerError(f"cannot read its {artifact}: {scrub(exc)}", file=source) from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TriggerError(f"{artifact} is not valid JSON: {exc}", file=source) from exc
    return parse_state(doc, f"{source} ({artifact})")


def load_state(cfg: Config) -> TrainingState | None:
    """The last training: the state file if present, else MLflow."""
    return read_state_file(cfg.trigger.state_file) or state_from_mlflow(cfg.tracking, cfg.trigger.train_stage)


def record_training(
    cfg: Config,
    catalog_dir: str | Path | None = None,
    *,
    when: datetime | None = None,
    run: Any | None = None,
) -> Path:
    """Record a finished training: its time and the profile of the catalogue it was trained on.

    Writes ``trigger.state_file``; with ``run`` (an :class:`afmrl.tracking.runs.StageRun`) also
    logs it as the run's ``trigger/last_training.json`` artifact, where the MLflow fallback finds it.
    A training stage calls this at its end; ``afmrl trigger --record`` does it from the command line.
    """
    from afmrl.catalog.io import read_catalog

    tc = cfg.trigger
    catalog_dir = Path(catalog_dir or tc.catalog)
    listings = read_catalog(catalog_dir).listings
    doc = state_document(when or datetime.now(UTC), profile_catalog(listings, list(tc.drift_features), tc.drift_bins),
                         str(catalog_dir))  # fmt: skip
    path = Path(tc.state_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, doc, sort_keys=True)
    if run is not None:
        with tempfile.TemporaryDirectory() as d:
            art = Path(d) / STATE_ARTIFACT_NAME
            art.write_text(json.dumps(doc, sort_keys=True), encoding="utf-8")
            run.log_artifact(art, artifact_path=STATE_ARTIFACT_DIR)
    return path
