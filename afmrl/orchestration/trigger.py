"""Decide whether to retrain, and say why.

Three checks; any one that fires means retrain (``afmrl trigger``, params ``trigger.*``):

1. **Data changed** (``trigger.data_change``): ``dvc status`` of the pipeline (or of
   ``trigger.dvc_targets``). A stage whose dependencies, parameters or command differ from
   ``dvc.lock``, or a ``.dvc`` data pointer whose data differs from the recorded hash, is a change.
   Inputs that are merely absent locally (``deleted``, ``not in cache``: not pulled yet) and
   out-of-date *outputs* of pipeline stages are not: they say nothing about new data.
2. **Catalogue drift** (``trigger.drift_threshold``): the Population Stability Index (PSI) between
   the catalogue the current model was trained on and the current catalogue, per feature, and the
   largest of them compared with the threshold. For a feature binned into ``k`` bins with
   reference shares ``p_i`` and current shares ``q_i`` (each floored at ``1e-4``)::

       PSI = sum_i (q_i - p_i) * ln(q_i / p_i)

   Features (``trigger.drift_features``): ``category``, ``currency``, ``source`` and ``has_image``
   are categorical (one bin per value, a missing value is its own bin, a value unseen in the
   reference has reference share 0); ``title_length`` (characters) and ``price`` are numeric,
   binned at the reference's quantiles (``trigger.drift_bins``, tied edges merged) plus one bin for
   missing values. Quantile bins make PSI independent of units and of monotone transforms (raw or
   log price give the same value). It needs no embeddings, so it runs before any model does. Rule
   of thumb: < 0.1 stable, 0.1-0.25 a moderate shift, > 0.25 a major one; the default threshold is 0.2.
   The reference is a *profile* (bin edges + shares) recorded at training time, so the old
   catalogue itself need not be kept; ``--reference CATALOG`` profiles a catalogue folder instead.
3. **Schedule** (``trigger.max_age_days``): the last training is older than this.

The last training (time + catalogue profile) is read from ``trigger.state_file`` (written by
:func:`record_training`, ``afmrl trigger --record``), else from MLflow: the newest finished run
tagged ``afmrl.stage`` = ``trigger.train_stage`` (or a ``trigger-record`` run) and its
``trigger/last_training.json`` artifact. No record at all means retrain (first training).

:func:`decide` is pure: evidence in, decision out. :func:`evaluate` gathers the evidence.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from afmrl.config import Config, TrackingConfig, TriggerConfig
from afmrl.errors import AfmrlError

CATEGORICAL = ("category", "currency", "source", "has_image")
NUMERIC = ("title_length", "price")
MISSING = "<missing>"
EPS = 1e-4
STATE_FORMAT = 1
STATE_ARTIFACT_DIR = "trigger"
STATE_ARTIFACT_NAME = "last_training.json"
RECORD_STAGE = "trigger-record"


class TriggerError(AfmrlError):
    """A check could not run (e.g. ``dvc status`` failed, a state file is unreadable)."""


# --------------------------------------------------------------------------------------------
# Drift: population stability index over catalogue features
# --------------------------------------------------------------------------------------------


def feature_values(listings: pd.DataFrame, feature: str) -> pd.Series:
    """One feature per listing: strings (categorical, missing -> ``<missing>``) or floats (NaN = missing)."""
    n = len(listings)
    if feature in ("category", "currency", "source"):
        col = listings[feature] if feature in listings.columns else pd.Series([None] * n, dtype="object")
        return col.map(
            lambda v: MISSING if v is None or (isinstance(v, float) and math.isnan(v)) or v == "" else str(v)
        )
    if feature == "has_image":
        col = listings["image"] if "image" in listings.columns else pd.Series([None] * n, dtype="object")
        return col.map(lambda v: "yes" if isinstance(v, str) and v else "no")
    if feature == "title_length":
        return (
            listings["title"]
            .map(lambda v: float(len(v)) if isinstance(v, str) else math.nan)
            .astype("float64")
        )
    if feature == "price":
        price = pd.to_numeric(listings["price"], errors="coerce").astype("float64")
        return price.where(price >= 0)  # a negative price is not a price: count it as missing
    raise ValueError(f"unknown drift feature {feature!r}; known: {CATEGORICAL + NUMERIC}")


def _numeric_bins(values: pd.Series, edges: list[float]) -> np.ndarray:
    """Counts per bin: ``len(edges) + 1`` intervals, then one bin for missing values."""
    arr = values.to_numpy(dtype="float64")
    present = arr[~np.isnan(arr)]
    counts = np.bincount(np.searchsorted(np.asarray(edges, dtype="float64"), present, side="right"),
                         minlength=len(edges) + 1).astype("float64")  # fmt: skip
    return np.append(counts, float(np.isnan(arr).sum()))


def profile_feature(values: pd.Series, feature: str, bins: int) -> dict[str, Any]:
    """The reference side of PSI for one feature: bin edges (numeric) and shares."""
    n = max(len(values), 1)
    if feature in CATEGORICAL:
        counts = values.value_counts(dropna=False)
        return {"kind": "categorical", "shares": {str(k): float(c) / n for k, c in sorted(counts.items())}}
    present = values.dropna().to_numpy(dtype="float64")
    if len(present):
        qs = np.quantile(present, [i / bins for i in range(1, bins)])
        edges = sorted({float(q) for q in qs})
    else:
        edges = []
    counts = _numeric_bins(values, edges)
    return {"kind": "numeric", "edges": edges, "shares": (counts / n).tolist()}


def profile_catalog(listings: pd.DataFrame, features: list[str], bins: int = 10) -> dict[str, Any]:
    """Profile of a catalogue (what the trigger keeps of the catalogue a model was trained on)."""
    return {
        "rows": len(listings),
        "bins": bins,
        "features": {f: profile_feature(feature_values(listings, f), f, bins) for f in features},
    }


def psi(expected: np.ndarray | list[float], actual: np.ndarray | list[float], eps: float = EPS) -> float:
    """Population stability index of two share vectors over the same bins (shares floored at ``eps``)."""
    p = np.maximum(np.asarray(expected, dtype="float64"), eps)
    q = np.maximum(np.asarray(actual, dtype="float64"), eps)
    if p.shape != q.shape:
        raise ValueError(f"share vectors differ in length: {p.shape} vs {q.shape}")
    return float(np.sum((q - p) * np.log(q / p)))


def feature_psi(reference: dict[str, Any], values: pd.Series) -> float:
    """PSI of current ``values`` against one feature's reference profile."""
    n = max(len(values), 1)
    if reference["kind"] == "categorical":
        ref_shares: dict[str, float] = reference["shares"]
        counts = values.value_counts(dropna=False)
        cur_shares = {str(k): float(c) / n for k, c in counts.items()}
        keys = sorted(set(ref_shares) | set(cur_shares))
        return psi([ref_shares.get(k, 0.0) for k in keys], [cur_shares.get(k, 0.0) for k in keys])
    counts = _numeric_bins(values, reference["edges"])
    return psi(reference["shares"], counts / n)


def drift_against_profile(
    profile: dict[str, Any], listings: pd.DataFrame, features: list[str]
) -> dict[str, float]:
    """PSI per feature of a catalogue against a recorded profile (features the profile lacks are skipped)."""
    out: dict[str, float] = {}
    for f in features:
        ref = profile.get("features", {}).get(f)
        if ref is not None:
            out[f] = feature_psi(ref, feature_values(listings, f))
    return out


def catalogue_drift(
    reference: pd.DataFrame, current: pd.DataFrame, features: list[str], bins: int = 10
) -> dict[str, float]:
    """PSI per feature between two catalogues' listings (bins from the reference)."""
    return drift_against_profile(profile_catalog(reference, features, bins), current, features)


# --------------------------------------------------------------------------------------------
# Data changes: dvc status
# --------------------------------------------------------------------------------------------


@dataclass
class DataStatus:
    changes: list[str] = field(default_factory=list)  # each one is a reason to retrain
    missing: list[str] = field(default_factory=list)  # inputs absent locally (not pulled): no verdict


def parse_dvc_status(status: dict[str, Any]) -> DataStatus:
    """Turn ``dvc status --json`` (or ``Repo.status()``) into changes and missing inputs."""
    out = DataStatus()
    for name, items in sorted(status.items()):
        is_pointer = name.endswith(".dvc")
        for item in items:
            if isinstance(item, str):
                if item in ("changed command", "changed cmd"):
                    out.changes.append(f"{name}: command changed")
                continue  # "always changed" stages say nothing about data
            for kind, entries in item.items():
                if kind == "changed deps":
                    for path, state in sorted(entries.items()):
                        if isinstance(state, dict):  # a params file: {key: state}
                            out.changes.extend(
                                f"{name}: parameter {key} {s}" for key, s in sorted(state.items())
                            )
                        elif state in ("deleted", "not in cache"):
                            out.missing.append(f"{name}: input {path} {state}")
                        else:
                            out.changes.append(f"{name}: input {path} {state}")
                elif kind == "changed outs" and is_pointer:
                    for path, state in sorted(entries.items()):
                        if state in ("deleted", "not in cache"):
                            out.missing.append(f"{name}: data {path} {state}")
                        else:
                            out.changes.append(
                                f"{name}: data {path} {state} (not yet recorded with dvc add/commit)"
                            )
    return out


def dvc_data_status(repo_dir: str | Path = ".", targets: list[str] | None = None) -> DataStatus | None:
    """``dvc status`` through DVC's Python API; None when ``repo_dir`` is not a DVC repository."""
    from dvc.exceptions import DvcException, NotDvcRepoError
    from dvc.repo import Repo

    try:
        repo = Repo(str(repo_dir))
    except NotDvcRepoError:
        return None
    try:
        with repo:
            status = repo.status(targets=list(targets) if targets else None)
    except DvcException as exc:
        raise TriggerError(f"dvc status failed: {exc}", file=str(repo_dir)) from exc
    return parse_dvc_status(status)


# --------------------------------------------------------------------------------------------
# The last training: state file or MLflow
# --------------------------------------------------------------------------------------------


@dataclass
class TrainingState:
    trained_at: datetime
    profile: dict[str, Any] | None = None
    source: str = ""
    catalog: str | None = None


def _parse_time(text: str) -> datetime:
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def state_document(
    trained_at: datetime, profile: dict[str, Any] | None, catalog: str | None
) -> dict[str, Any]:
    return {"format": STATE_FORMAT, "trained_at": _iso(trained_at), "catalog": catalog, "profile": profile}


def parse_state(doc: Any, source: str) -> TrainingState:
    if not isinstance(doc, dict) or "trained_at" not in doc:
        raise TriggerError("not a training record (expected an object with trained_at)", file=source)
    try:
        when = _parse_time(str(doc["trained_at"]))
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
    from mlflow.tracking import MlflowClient

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
    ended = datetime.fromtimestamp((run.info.end_time or run.info.start_time) / 1000, tz=UTC)
    source = f"mlflow run {run.info.run_id}"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(
                run.info.run_id, f"{STATE_ARTIFACT_DIR}/{STATE_ARTIFACT_NAME}", tmp
            )
            state = parse_state(json.loads(Path(local).read_text(encoding="utf-8")), source)
        except Exception:  # a training run that recorded no profile: its time still counts
            return TrainingState(trained_at=ended, profile=None, source=source)
    return state


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
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    if run is not None:
        with tempfile.TemporaryDirectory() as d:
            art = Path(d) / STATE_ARTIFACT_NAME
            art.write_text(json.dumps(doc, sort_keys=True), encoding="utf-8")
            run.log_artifact(art, artifact_path=STATE_ARTIFACT_DIR)
    return path


# --------------------------------------------------------------------------------------------
# The decision
# --------------------------------------------------------------------------------------------


@dataclass
class Evidence:
    """What the checks found. ``None`` means the check did not run (the reason is in ``notes``)."""

    now: datetime
    data: DataStatus | None = None
    drift: dict[str, float] | None = None
    last_trained: datetime | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Decision:
    retrain: bool
    reasons: list[str]
    triggers: list[str]  # machine-readable kinds: forced, first, data, drift, schedule
    checks: dict[str, Any]
    notes: list[str]
    decided_at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def decide(cfg: TriggerConfig, ev: Evidence, *, force: bool = False) -> Decision:
    """Pure: retrain if forced, never trained, data changed, drift above threshold, or too old."""
    reasons: list[str] = []
    triggers: list[str] = []
    if force:
        triggers.append("forced")
        reasons.append("forced (--force / workflow_dispatch)")
    if ev.last_trained is None:
        triggers.append("first")
        reasons.append("no previous training recorded")

    data_check: dict[str, Any] = {"checked": cfg.data_change and ev.data is not None}
    if cfg.data_change and ev.data is not None:
        data_check |= {"changes": ev.data.changes, "missing": ev.data.missing}
        if ev.data.changes:
            triggers.append("data")
            shown = "; ".join(ev.data.changes[:5]) + (
                f"; ... ({len(ev.data.changes)} in all)" if len(ev.data.changes) > 5 else ""
            )
            reasons.append(f"inputs changed (dvc status): {shown}")

    drift_check: dict[str, Any] = {"checked": cfg.drift_threshold is not None and ev.drift is not None,
                                   "threshold": cfg.drift_threshold, "statistic": "psi"}  # fmt: skip
    if cfg.drift_threshold is not None and ev.drift is not None:
        finite = {k: v for k, v in ev.drift.items() if math.isfinite(v)}
        worst = max(finite, key=finite.__getitem__) if finite else None
        drift_check |= {"psi": {k: round(v, 6) for k, v in ev.drift.items()}, "max_feature": worst,
                        "max_psi": round(finite[worst], 6) if worst else None}  # fmt: skip
        over = sorted((k for k, v in finite.items() if v > cfg.drift_threshold), key=lambda k: -finite[k])
        if over:
            triggers.append("drift")
            shown = ", ".join(f"{k} {finite[k]:.3f}" for k in over)
            reasons.append(f"catalogue drift: PSI above {cfg.drift_threshold:g} for {shown}")

    age_days = None
    if ev.last_trained is not None:
        age_days = (ev.now - ev.last_trained).total_seconds() / 86400.0
    schedule_check: dict[str, Any] = {
        "checked": cfg.max_age_days is not None and age_days is not None,
        "last_trained": _iso(ev.last_trained) if ev.last_trained else None,
        "age_days": round(age_days, 4) if age_days is not None else None,
        "max_age_days": cfg.max_age_days,
    }
    if cfg.max_age_days is not None and age_days is not None and age_days > cfg.max_age_days:
        triggers.append("schedule")
        reasons.append(f"schedule: last training {age_days:.1f} days ago, more than {cfg.max_age_days:g}")

    return Decision(
        retrain=bool(triggers),
        reasons=reasons,
        triggers=triggers,
        checks={"forced": force, "data": data_check, "drift": drift_check, "schedule": schedule_check},
        notes=list(ev.notes),
        decided_at=_iso(ev.now),
    )


def evaluate(
    cfg: Config,
    *,
    repo_dir: str | Path = ".",
    catalog: str | Path | None = None,
    reference: str | Path | None = None,
    force: bool = False,
    now: datetime | None = None,
) -> Decision:
    """Gather the evidence (dvc status, drift against the recorded profile, last training) and decide."""
    from afmrl.catalog.io import read_catalog

    tc = cfg.trigger
    ev = Evidence(now=now or datetime.now(UTC))
    state = load_state(cfg)
    if state is not None:
        ev.last_trained = state.trained_at
        ev.notes.append(f"last training from {state.source}")

    if tc.data_change:
        ev.data = dvc_data_status(repo_dir, tc.dvc_targets)
        if ev.data is None:
            ev.notes.append(f"data check skipped: {repo_dir} is not a DVC repository")
        elif ev.data.missing:
            ev.notes.append(
                f"{len(ev.data.missing)} input(s) not available locally (run `dvc pull`): no verdict on them"
            )

    if tc.drift_threshold is not None:
        features = list(tc.drift_features)
        current_dir = Path(catalog or tc.catalog)
        if not (current_dir / "listings.parquet").exists() and current_dir.suffix != ".parquet":
            ev.notes.append(f"drift check skipped: current catalogue {current_dir} not found")
        else:
            current = read_catalog(current_dir).listings
            if reference is not None:
                ref_listings = read_catalog(reference).listings
                ev.drift = catalogue_drift(ref_listings, current, features, tc.drift_bins)
                ev.notes.append(f"drift reference: catalogue {reference}")
            elif state is not None and state.profile:
                try:
                    ev.drift = drift_against_profile(state.profile, current, features)
                except (KeyError, TypeError, ValueError) as exc:
                    raise TriggerError(f"malformed catalogue profile: {exc!r}", file=state.source) from exc
                ev.notes.append(f"drift reference: profile recorded with the last training ({state.source})")
                if unprofiled := [f for f in features if f not in ev.drift]:
                    ev.notes.append(f"not in the recorded profile, not compared: {', '.join(unprofiled)}")
            else:
                ev.notes.append(
                    "drift check skipped: no profile of the trained-on catalogue (record one with --record)"
                )
    return decide(tc, ev, force=force)
