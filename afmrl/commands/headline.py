"""The headline figures DVC shows (``dvc metrics show``): a small ``metrics.json`` next to each stage's full
report. The full reports (every per-key attribute figure, every per-category recall) stay plain outputs
(dvc.yaml ``outs`` with ``cache: false``): pointed at them, ``dvc metrics show`` printed one row of more
than 300 columns. Each writer keeps at most ``MAX_FIGURES`` numbers, and writes them after the stage's own
outputs, from its report file, so the stages (shared with Kubeflow) are unchanged.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from afmrl.atomic import write_json_atomic

METRICS_FILE = "metrics.json"
MAX_FIGURES = 10
# the evaluation's primary figures (absent ones are left out: photo_to_catalogue only for catalogues with a gallery)
EVAL_HEADLINE = ("listing_R@1", "listing_mAP@10", "photo_to_catalogue_R@1")


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return value
    return None


def _keep(figures: dict[str, Any]) -> dict[str, float | int]:
    kept = {k: n for k, v in figures.items() if (n := _number(v)) is not None}
    assert len(kept) <= MAX_FIGURES, f"a headline is at most {MAX_FIGURES} figures: {sorted(kept)}"
    return kept


def validate_headline(report: dict[str, Any]) -> dict[str, float | int]:
    return _keep({k: report.get(k) for k in ("fail_share", "passed", "quarantined", "gate_passed")})


def extract_headline(report: dict[str, Any]) -> dict[str, float | int]:
    figures: dict[str, Any] = {"valid_json_rate": report.get("valid_json_rate")}
    for name, m in (report.get("metrics") or {}).items():  # attributes (merged), extracted (the model's own)
        if isinstance(m, dict):
            micro = m.get("micro")
            figures[f"{name}_micro_f1"] = micro.get("f1") if isinstance(micro, dict) else m.get("micro_f1")
    return _keep(figures)


def evaluate_headline(report: dict[str, Any]) -> dict[str, float | int]:
    metrics = report.get("metrics") or {}
    figures: dict[str, Any] = {k: metrics.get(k) for k in EVAL_HEADLINE}
    figures["n_queries"] = _n_queries(report)
    for r in report.get("rounds") or []:  # the loop: each round's primary metric, and the one selected
        if isinstance(r, dict) and isinstance(r.get("eval"), dict):
            figures[f"round{r.get('round')}_{r['eval'].get('metric')}"] = r["eval"].get("value")
            if r.get("selected"):
                figures["selected_round"] = r.get("round")
    return _keep(figures)


def _n_queries(report: dict[str, Any]) -> Any:
    queries = report.get("queries")
    return queries.get("n") if isinstance(queries, dict) else None


def promote_headline(decision: dict[str, Any], report: dict[str, Any] | None = None) -> dict[str, float | int]:
    """promoted (0/1), the candidate's version and the number of queries the gate decided on (from the report)."""
    return _keep({"promoted": bool(decision.get("promoted")), "version": decision.get("version"),
                  "n_queries": _n_queries(report or {})})


def write_headline(kind: str, source: str | Path) -> Path | None:
    """Write ``metrics.json`` next to ``source`` (a stage's report.json or decision.json) from it; None when
    the source is not there (nothing to sum up)."""
    src = Path(source)
    if not src.is_file():
        return None
    doc = json.loads(src.read_text())
    if kind == "promote":
        report = Path(doc.get("report") or "")
        figures = promote_headline(doc, json.loads(report.read_text()) if report.is_file() else None)
    else:
        figures = {"validate": validate_headline, "extract": extract_headline, "evaluate": evaluate_headline}[kind](doc)
    path = src.parent / METRICS_FILE
    write_json_atomic(path, figures, sort_keys=True)
    return path
