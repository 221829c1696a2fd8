"""Decide whether to retrain, and say why.

Three checks; any one that fires means retrain (``afmrl trigger``, params ``trigger.*``):

1. **Data changed** (``trigger.data_change``): ``dvc status`` of the pipeline (or of
   ``trigger.dvc_targets``), read by :mod:`afmrl.orchestration.dvc_status`.
2. **Catalogue drift** (``trigger.drift_threshold``): the Population Stability Index (PSI) between
   the catalogue the current model was trained on and the current catalogue, per feature
   (:mod:`afmrl.orchestration.drift`), and the largest of them compared with the threshold (the
   default is 0.2). The reference is the profile recorded with the last training;
   ``--reference CATALOG`` profiles a catalogue folder instead.
3. **Schedule** (``trigger.max_age_days``): the last training is older than this.

The last training (time + catalogue profile) comes from :mod:`afmrl.orchestration.state`. No record
at all means retrain (first training).

:func:`decide` is pure: evidence in, decision out. :func:`evaluate` gathers the evidence.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from afmrl.config import Config, TriggerConfig
from afmrl.errors import TriggerError
from afmrl.orchestration.drift import catalogue_drift, drift_against_profile
from afmrl.orchestration.dvc_status import DataStatus, dvc_data_status
from afmrl.orchestration.state import iso, load_state


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
        "last_trained": iso(ev.last_trained) if ev.last_trained else None,
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
        decided_at=iso(ev.now),
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
