"""Publish stage: after the gate, point the serving alias at the promoted encoder's collection.

``run(cfg, decision_path, encoder, out_dir)``: when the promote stage's ``decision.json`` says
``promoted``, the Milvus alias ``index.alias`` switches (atomically) to the collection the index stage
built for ``encoder``; otherwise it stays where it is. Either way ``OUT/publish.json`` records the
outcome and an MLflow run ``publish`` logs it (the DVC and CI twin of Kubeflow's ``dsl.If``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from afmrl.atomic import write_json_atomic
from afmrl.config import Config
from afmrl.errors import read_json_file
from afmrl.stages.index import switch_alias
from afmrl.tracking.lock import holds_stores
from afmrl.tracking.runs import stage_run

OUTCOME_FILE = "publish.json"


@holds_stores("publish stage", tracking=False)  # the Milvus Lite file
def run(cfg: Config, decision_path: str | Path, encoder: str | Path, out_dir: str | Path) -> dict[str, Any]:
    path = Path(decision_path)
    if path.is_dir():
        path = path / "decision.json"
    decision = read_json_file(str(path), "run `afmrl promote` first")
    with stage_run(cfg.tracking, "publish") as run_:
        if decision.get("promoted"):
            outcome = {"switched": True, **switch_alias(cfg, encoder=encoder)}
        else:
            outcome = {"switched": False, "reason": "the gate did not promote this encoder", "decision": str(path)}
        run_.log_config(cfg, ("index",), decision=str(path), encoder=str(encoder),
                        collection=outcome.get("collection", ""), previous=outcome.get("previous") or "")  # fmt: skip
        run_.log_metrics({"switched": float(outcome["switched"])})
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        summary = out / OUTCOME_FILE
        write_json_atomic(summary, outcome, sort_keys=True, default=str)
        run_.log_artifact(summary)
    return outcome
