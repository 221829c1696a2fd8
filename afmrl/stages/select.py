"""Candidate selection stage: the round of the AFMRL loop whose encoder is the candidate.

``run(cfg, catalog_dir, round_dirs, out_dir)``: each round's train folder (``encoder/`` and
``training.json``; a skipped round's ``skipped.json`` is passed over) is scored on ``loop.select_split``
(validation: the evaluation split never chooses) by the evaluation's own code; the round with the better
primary metric (:func:`~afmrl.retrieval.evaluate.primary_metric`; a tie keeps the earlier round) is the
candidate.

Outputs in ``out_dir``: ``encoder/`` (the candidate: what index, evaluate and promote take),
``rounds/<n>/encoder/`` (every round's encoder, so the evaluation can score each on its own split) and
``rounds/rounds.json``: a list with, per round, ``round``, ``attributes`` (source, model, extractor
lineage, attribute micro F1 where reference attributes exist), ``encoder`` (folder relative to
``rounds/``, content digest), ``select`` ({split, metric, value}) and ``selected``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from afmrl.atomic import copy_folder_atomic, write_json_atomic
from afmrl.config import Config
from afmrl.errors import ConfigError, DataError, read_json_file
from afmrl.models.encoders import load_encoder
from afmrl.models.encoders.dual import DualEncoder
from afmrl.models.encoders.ref import fingerprint
from afmrl.retrieval.evaluate import primary_metric
from afmrl.stages.evaluate import evaluate
from afmrl.tracking.runs import stage_run
from afmrl.tracking.store import preflight
from afmrl.training.rounds import ROUNDS_FILE, is_skipped

ROUNDS_DIR = "rounds"


@dataclass
class SelectResult:
    encoder_dir: Path
    rounds_path: Path
    rounds: list[dict[str, Any]]
    selected: int

    def metrics(self) -> dict[str, float]:
        out = {"selected_round": float(self.selected)}
        for r in self.rounds:
            out[f"round{r['round']}_{r['select']['metric']}"] = float(r["select"]["value"])
        return out


def _training(round_dir: Path, position: int) -> dict[str, Any]:
    summary = read_json_file(str(round_dir / "training.json"), "run `afmrl train` for this round first")
    if not isinstance(summary, dict):
        raise DataError("training.json is not an object", file=str(round_dir / "training.json"))
    if not (round_dir / "encoder").is_dir():
        raise DataError("the round has no encoder/ folder: run `afmrl train` for it", file=str(round_dir))
    return {"round": int(summary.get("round", position)), "attributes": summary.get("attributes")}


def run(cfg: Config, catalog_dir: str | Path, round_dirs: list[str | Path], out_dir: str | Path,
        cache_dir: str | Path | None = None) -> SelectResult:  # fmt: skip
    if not round_dirs:
        raise ConfigError("select needs at least one round's train folder", field="--round")
    preflight(cfg.tracking)
    out = Path(out_dir)
    (out / ROUNDS_DIR).mkdir(parents=True, exist_ok=True)
    split_cfg = cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"split": cfg.loop.select_split})})
    rounds: list[dict[str, Any]] = []
    for position, folder in enumerate(map(Path, round_dirs), start=1):
        if is_skipped(folder):
            continue
        record = _training(folder, position)
        model = load_encoder(folder / "encoder", cfg.encoder, cfg.tracking)
        if not isinstance(model, DualEncoder):
            raise ConfigError(f"{folder}/encoder: select scores afmrl encoder folders", field="--round")
        rcfg = split_cfg.model_copy(update={"encoder": model.cfg})
        result, split = evaluate(rcfg, catalog_dir, model, cache_dir or out / "feature-cache")
        metric = primary_metric(result.metrics)
        rel = Path(str(record["round"])) / "encoder"
        copy_folder_atomic(folder / "encoder", out / ROUNDS_DIR / rel)
        rounds.append({**record, "encoder": {"path": str(rel), "digest": fingerprint(folder / "encoder", model.cfg),
                                             "source": str(folder / "encoder")},
                       "select": {"split": split, "metric": metric, "value": float(result.metrics[metric])}})  # fmt: skip
    if not rounds:
        raise DataError("every round was skipped: nothing to select", file=str(round_dirs[0]))
    metrics = {r["select"]["metric"] for r in rounds}
    if len(metrics) > 1:
        raise DataError(f"the rounds were scored on different primary metrics {sorted(metrics)}", field="select")
    best = max(rounds, key=lambda r: (r["select"]["value"], -r["round"]))  # a tie keeps the earlier round
    for r in rounds:
        r["selected"] = r is best
    copy_folder_atomic(out / ROUNDS_DIR / best["encoder"]["path"], out / "encoder")
    rounds_path = write_json_atomic(out / ROUNDS_DIR / ROUNDS_FILE, rounds, sort_keys=True)
    result = SelectResult(out / "encoder", rounds_path, rounds, int(best["round"]))
    with stage_run(cfg.tracking, "select", tags={"afmrl.selected_round": str(best["round"])}) as run_:
        run_.log_config(cfg, ("loop",), catalog=str(catalog_dir), rounds=[str(p) for p in round_dirs])
        run_.log_metrics({k.replace("@", "_at_"): v for k, v in result.metrics().items()})
        run_.log_artifact(rounds_path)
    return result
