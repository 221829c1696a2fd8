"""Promotion stage: register the candidate encoder, gate it against the champion, move the alias.

``run(cfg, encoder_dir, report_path, out_dir)``:

1. registers ``encoder_dir`` as a new version of ``registry.encoder_name`` (an MLflow pyfunc, see
   :mod:`afmrl.tracking.registry`), tagged with the report's gating metrics, and points the
   ``challenger`` alias at it;
2. reads the version the ``champion`` alias points at *now*, re-scores it with the same evaluation on
   the candidate's catalogue, split and queries, and applies the gate (:mod:`afmrl.tracking.promotion`):
   floors, max_regression, ``registry.gate_min_queries``, and a paired bootstrap 95% interval of
   candidate - champion per gate metric whose lower bound must exceed ``min_improvement`` for one;
3. writes ``OUT/decision.json`` (atomically, *before* any alias moves): ``{"promoted": bool,
   "version": N, "reasons": [...], "n_queries": Q, "intervals": {metric: [low, high]},
   "champion_before": M, ...}`` (the KFP pipeline branches on ``promoted``; DVC shows it as a metric);
4. on pass moves ``champion`` to the new version; on fail leaves it where it was. Either way the
   version is tagged with the decision, the reasons and the figures.

The report must be bound to the encoder: its ``candidate.digest`` is the encoder folder's content
digest, else the stage refuses it (DataError, exit 2) before registering anything.

A rejection is a normal outcome (exit code 0); errors (no report, no tracking) fail the stage.
:func:`promote_version` is the manual path (``afmrl promote --version N``).
"""

from __future__ import annotations

import getpass
import json
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from afmrl.atomic import write_json_atomic
from afmrl.config import Config
from afmrl.errors import ConfigError, DataError, read_json_file
from afmrl.tracking.datasets import catalog_digest
from afmrl.tracking.lock import holds_stores
from afmrl.tracking.promotion import METRICS_TAG, GateOutcome, evaluate_gate, paired_bootstrap
from afmrl.tracking.runs import PARENT_RUN_ENV, mlflow_key, stage_run

DECISION_FILE = "decision.json"


@dataclass
class PromotionDecision:
    promoted: bool
    model: str
    version: int
    reasons: list[str]
    champion_before: int | None
    champion_after: int | None
    decision: str  # promoted | rejected | manual
    checks: dict[str, Any] = field(default_factory=dict)
    n_queries: int | None = None
    intervals: dict[str, list[float]] = field(default_factory=dict)
    rows: dict[str, dict[str, float]] = field(default_factory=dict)  # gate metrics: candidate, champion (same queries)
    run_id: str | None = None
    report: str | None = None
    decided_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model}/{self.version}"

    def to_dict(self) -> dict[str, Any]:
        return {"promoted": self.promoted, "version": self.version, "reasons": self.reasons,
                "decision": self.decision, "model": self.model, "model_uri": self.model_uri,
                "champion_before": self.champion_before, "champion_after": self.champion_after,
                "checks": self.checks, "n_queries": self.n_queries, "intervals": self.intervals, "rows": self.rows, "run_id": self.run_id, "report": self.report,
                "decided_at": self.decided_at}  # fmt: skip

    def write(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        path = out / DECISION_FILE
        write_json_atomic(path, self.to_dict(), sort_keys=True)
        return path


def read_report(report_path: str | Path) -> dict[str, Any]:
    path = Path(report_path)
    report = read_json_file(str(path), "run `afmrl evaluate` first")
    if not isinstance(report, dict) or not isinstance(report.get("metrics"), dict):
        raise DataError("evaluation report has no 'metrics' object", file=str(path), field="metrics")
    return report


CRASH_AFTER_DECISION_ENV = "AFMRL_TEST_CRASH_AFTER_DECISION"  # tests only: die between decision.json and the alias


def _catalog_path(report: dict[str, Any]) -> str | None:
    catalog = report.get("catalog")
    return catalog.get("path") if isinstance(catalog, dict) else catalog


def check_binding(report: dict[str, Any], encoder_dir: str | Path, cfg: Config, report_path: str | Path) -> None:
    """The report must have evaluated this encoder (its content digest) and carry its queries."""
    from afmrl.models.encoders.ref import fingerprint

    where = str(report_path)
    candidate = report.get("candidate")
    if not isinstance(candidate, dict) or not candidate.get("digest"):
        raise DataError("the evaluation report does not say which encoder it evaluated (no candidate.digest): "
                        "re-run `afmrl evaluate`", file=where, field="candidate")  # fmt: skip
    actual = fingerprint(encoder_dir, cfg.encoder)
    if candidate["digest"] != actual:
        raise DataError(f"the report evaluated another encoder ({candidate.get('path')}, digest "
                        f"{str(candidate['digest'])[:12]}) than {encoder_dir} (digest {actual[:12]}): evaluate this "
                        "encoder first", file=where, field="candidate.digest")  # fmt: skip
    queries = report.get("queries")
    if not isinstance(queries, dict) or not isinstance(queries.get("n"), int):
        raise DataError("the evaluation report has no query count (queries.n): re-run `afmrl evaluate`",
                        file=where, field="queries")  # fmt: skip


def rescore_champion(cfg: Config, report: dict[str, Any], version: int, report_path: str | Path,
                     catalog_dir: str | Path | None = None) -> tuple[dict[str, float], dict[str, list[float]]]:  # fmt: skip
    """The champion scored by the same evaluation on the candidate's catalogue, split and queries:
    (its metrics, its per-query values of the gate metrics). ``catalog_dir``: that catalogue where the
    report's path is not readable (another machine, a Kubeflow pod); its digest must be the report's."""
    from afmrl.models.encoders import load_encoder
    from afmrl.stages.evaluate import evaluate, queries_of

    catalog = report.get("catalog") if isinstance(report.get("catalog"), dict) else {}
    path = str(catalog_dir) if catalog_dir is not None else catalog.get("path")
    if not path or not (Path(path) / "listings.parquet").is_file():
        raise DataError(f"the candidate's catalogue {path!r} is not there: the champion cannot be re-scored on it",
                        file=str(report_path), field="catalog.path")  # fmt: skip
    if catalog_digest(path) != catalog.get("digest"):
        raise DataError(f"{path} changed since the evaluation (catalogue digest differs): re-run `afmrl evaluate`",
                        file=str(report_path), field="catalog.digest")  # fmt: skip
    model = load_encoder(f"models:/{cfg.registry.encoder_name}/{version}", cfg.encoder, cfg.tracking)
    same_split = cfg.eval.model_copy(update={"split": report["split"]})
    ccfg = cfg.model_copy(update={"encoder": getattr(model, "cfg", cfg.encoder), "eval": same_split})
    result, _ = evaluate(ccfg, path, model, None)
    if queries_of(result) != {k: report["queries"].get(k) for k in ("n", "digest")}:
        raise DataError("the champion was scored on other queries than the candidate's report (query digest "
                        "differs): re-run `afmrl evaluate`", file=str(report_path), field="queries.digest")  # fmt: skip
    return dict(result.metrics), result.per_query.get("values", {})


def lineage_tags(report: dict[str, Any]) -> dict[str, str]:
    """Which round of the loop the candidate is, and which extractor produced the attributes it was trained
    on (``afmrl.extractor_version``: the registered extractor version, for round 2)."""
    rounds = report.get("rounds")
    selected = next((r for r in rounds if isinstance(r, dict) and r.get("selected")), None) if isinstance(
        rounds, list) else None  # fmt: skip
    if selected is None:
        return {}
    attributes = selected.get("attributes") if isinstance(selected.get("attributes"), dict) else {}
    tags = {"afmrl.round": str(selected.get("round")), "afmrl.attributes_source": str(attributes.get("source")),
            "afmrl.attributes_model": str(attributes.get("model"))[:500]}  # fmt: skip
    extractor = attributes.get("extractor") if isinstance(attributes.get("extractor"), dict) else {}
    registered = extractor.get("registered") if isinstance(extractor.get("registered"), dict) else None
    if registered:
        tags["afmrl.extractor"] = str(registered.get("name"))
        tags["afmrl.extractor_version"] = str(registered.get("version"))
    return tags


def _require_tracking(cfg: Config) -> None:
    if not cfg.tracking.enabled:
        raise ConfigError("promotion needs the MLflow registry: tracking.enabled is false", field="tracking.enabled")


def _client(cfg: Config) -> Any:
    from afmrl.tracking.store import client_for

    return client_for(cfg.tracking)


def _version_tags(outcome: GateOutcome, decision: str, champion: int | None) -> dict[str, str]:
    tags = {"afmrl.decision": decision, "afmrl.reasons": " | ".join(outcome.reasons)[:7900],
            "afmrl.compared_with": f"v{champion}" if champion is not None else "none"}  # fmt: skip
    for name, check in outcome.checks.items():
        if check.delta is not None:
            tags[mlflow_key(f"afmrl.delta.{name}")] = f"{check.delta:+.6f}"
    return tags


@holds_stores("promote stage", index=False)  # the SQLite registry: the gate reads, then moves, the champion
def run(cfg: Config, encoder_dir: str | Path, report_path: str | Path, out_dir: str | Path,
        catalog: str | Path | None = None) -> PromotionDecision:  # fmt: skip
    """Register, gate, move the alias on pass; writes ``OUT/decision.json`` and returns the decision.
    ``catalog``: the evaluated catalogue (the champion is re-scored on it), where the report's path is not
    readable here."""
    from afmrl.tracking.registry import get_alias_version, log_encoder

    catalog_dir = catalog

    _require_tracking(cfg)
    reg = cfg.registry
    report = read_report(report_path)
    check_binding(report, encoder_dir, cfg, report_path)  # before anything is registered
    n_queries = int(report["queries"]["n"])
    cand_values = (report.get("per_query") or {}).get("values", {})
    metrics = {k: v for k, v in report["metrics"].items() if isinstance(v, int | float)}
    gated = {m: metrics.get(m) for m in reg.gate}
    with stage_run(cfg.tracking, "promote") as run_:
        client = _client(cfg)
        run_.log_config(cfg, ("registry",), encoder=str(encoder_dir), report=str(report_path))
        run_.log_metrics({mlflow_key(k): float(v) for k, v in metrics.items() if math.isfinite(v)})
        run_.log_artifact(report_path, artifact_path="evaluation")
        recorded = json.dumps({k: v for k, v in metrics.items() if math.isfinite(v)}, sort_keys=True)
        if len(recorded) > 7500:  # tag values are capped: keep the gating metrics
            recorded = json.dumps({k: v for k, v in gated.items() if v is not None}, sort_keys=True)
        eval_tags = {METRICS_TAG: recorded,
                     "afmrl.eval_split": str(report.get("split", "")), "afmrl.eval_catalog": str(_catalog_path(report) or ""),
                     "afmrl.eval_queries": str(n_queries), "afmrl.promote_run_id": run_.run_id or ""}  # fmt: skip
        catalog = report.get("catalog")
        if isinstance(catalog, dict) and catalog.get("digest"):
            eval_tags["afmrl.eval_catalog_digest"] = str(catalog["digest"])
        eval_tags.update(lineage_tags(report))
        for name, value in gated.items():
            if value is not None:
                eval_tags[mlflow_key(f"metric.{name}")] = f"{float(value):.6f}"
        version = log_encoder(encoder_dir, reg.encoder_name, tags=eval_tags)
        number = int(version.version)
        client.set_registered_model_alias(reg.encoder_name, reg.challenger_alias, str(number))

        champion = get_alias_version(client, reg.encoder_name, reg.champion_alias)  # read now: manual moves count
        champion_no = int(champion.version) if champion is not None else None
        champ_metrics, intervals = None, None
        if champion is not None:  # re-scored here, on the candidate's queries: never another report's figures
            champ_metrics, champ_values = rescore_champion(cfg, report, champion_no, report_path, catalog_dir)
            intervals = {}
            for metric in reg.gate:
                cand_v, champ_v = cand_values.get(metric), champ_values.get(metric)
                if cand_v and champ_v and len(cand_v) == len(champ_v):
                    intervals[metric] = paired_bootstrap(cand_v, champ_v, reg.gate_bootstrap, seed=cfg.eval.seed)
        outcome = evaluate_gate(metrics, champ_metrics, reg.gate, champion_label=f"champion v{champion_no}",
                                intervals=intervals, n_queries=n_queries, min_queries=reg.gate_min_queries)  # fmt: skip
        decision = PromotionDecision(
            promoted=outcome.promoted, model=reg.encoder_name, version=number, reasons=outcome.reasons,
            champion_before=champion_no, champion_after=number if outcome.promoted else champion_no,
            decision="promoted" if outcome.promoted else "rejected", checks=outcome.checks_dict(),
            n_queries=n_queries, intervals={k: [lo, hi] for k, (lo, hi) in (intervals or {}).items()},
            rows={"candidate": {m: v for m, v in gated.items() if v is not None},
                  **({"champion": {m: champ_metrics.get(m) for m in reg.gate}} if champ_metrics else {})},
            run_id=run_.run_id, report=str(report_path),
        )  # fmt: skip
        path = decision.write(out_dir)  # the decision is on disk before the alias moves
        if os.environ.get(CRASH_AFTER_DECISION_ENV) == "1":
            os._exit(1)
        if outcome.promoted:
            client.set_registered_model_alias(reg.encoder_name, reg.champion_alias, str(number))
        for key, value in _version_tags(outcome, decision.decision, champion_no).items():
            client.set_model_version_tag(reg.encoder_name, str(number), key, value)
        verdict = "promoted to" if outcome.promoted else "not promoted to"
        client.update_model_version(reg.encoder_name, str(number), description=(
            f"{verdict} {reg.champion_alias} (compared with "
            f"{'v' + str(champion_no) if champion_no else 'the floors'}): " + "; ".join(outcome.reasons))[:5000])
        run_.set_tags({"afmrl.decision": decision.decision, "afmrl.model_version": str(number)})
        run_.log_metrics({"promoted": float(outcome.promoted), "model_version": float(number)})
        run_.log_artifact(path)
        if parent := os.environ.get(PARENT_RUN_ENV):
            for key, value in {"afmrl.promoted": str(outcome.promoted).lower(),
                               "afmrl.encoder_version": str(number)}.items():  # fmt: skip
                client.set_tag(parent, key, value)
    return decision


@holds_stores("promote --version", index=False)
def promote_version(cfg: Config, version: int, reason: str | None = None, model: str = "encoder",
                    out_dir: str | Path | None = None) -> PromotionDecision:  # fmt: skip
    """Point ``champion`` at ``version`` by hand (``afmrl promote --version N``); audited as a run."""
    from mlflow.exceptions import MlflowException

    from afmrl.tracking.registry import get_alias_version

    _require_tracking(cfg)
    reg = cfg.registry
    name = {"encoder": reg.encoder_name, "extractor": reg.extractor_name}.get(model)
    if name is None:
        raise ConfigError(f"--model {model!r}: choose encoder or extractor", field="--model")
    with stage_run(cfg.tracking, "promote-manual") as run_:
        client = _client(cfg)
        try:
            target = client.get_model_version(name, str(version))
        except MlflowException:
            raise DataError(f"{name} has no version {version}", field="--version") from None
        before = get_alias_version(client, name, reg.champion_alias)
        before_no = int(before.version) if before is not None else None
        client.set_registered_model_alias(name, reg.champion_alias, str(target.version))
        who = os.environ.get("USER") or getpass.getuser()
        reasons = [f"promoted by hand by {who}" + (f": {reason}" if reason else "")]
        for key, value in {"afmrl.decision": "manual", "afmrl.reasons": reasons[0],
                           "afmrl.compared_with": f"v{before_no}" if before_no is not None else "none"}.items():  # fmt: skip
            client.set_model_version_tag(name, str(version), key, value)
        decision = PromotionDecision(True, name, int(version), reasons, before_no, int(version), "manual",
                                     run_id=run_.run_id)  # fmt: skip
        run_.log_config(cfg, ("registry",), model=name, version=version, reason=reason or "")
        run_.set_tags({"afmrl.decision": "manual", "afmrl.model_version": str(version)})
        if out_dir is not None:
            run_.log_artifact(decision.write(out_dir))
    return decision
