"""AGCL training stage: train the representation model on a catalogue's train split.

Outputs in ``out_dir``: ``encoder/`` (a ``DualEncoder.from_pretrained`` folder), ``training.json``
(config, pairing, throughput, final loss) and ``checkpoints/`` (resume after a kill: re-run the
same command). Logged to MLflow: params, per-step loss/temperature/batch statistics, artifacts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from afmrl.catalog.io import read_catalog
from afmrl.config import Config
from afmrl.models.encoders.dual import DualEncoder
from afmrl.tracking.runs import stage_run
from afmrl.tracking.store import preflight
from afmrl.training.data import build_pairs
from afmrl.training.trainer import ContrastiveTrainer, TrainResult, save_training_config


@dataclass
class TrainStageResult:
    encoder_dir: Path
    summary_path: Path
    result: TrainResult

    def metrics(self) -> dict[str, float]:
        return {"final_loss": self.result.final_loss, "samples_per_s": self.result.samples_per_s,
                "steps": float(self.result.steps)}  # fmt: skip


def run(cfg: Config, catalog_dir: str | Path, out_dir: str | Path, cache_dir: str | Path | None = None,
        train_splits: tuple[str, ...] = ("train",), attributes_file: str | Path | None = None) -> TrainStageResult:  # fmt: skip
    """``attributes_file``: the extraction stage's output; sets ``encoder.attributes_source=file``."""
    if attributes_file is not None:
        cfg = cfg.model_copy(update={"encoder": cfg.encoder.model_copy(
            update={"attributes_source": "file", "attributes_file": str(attributes_file)})})  # fmt: skip
    preflight(cfg.tracking)  # an unreachable tracking server fails here, before any training
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    catalog = read_catalog(catalog_dir)
    pairs = build_pairs(catalog, train_splits, cfg.encoder, cfg.train)
    torch.manual_seed(cfg.train.seed)  # head initialisation is part of the run's determinism
    model = DualEncoder(cfg.encoder)
    with stage_run(cfg.tracking, "train", tags={"afmrl.method": cfg.train.method}) as run_:
        run_.log_config(cfg, ("encoder", "train"), catalog=str(catalog_dir), pairs=pairs.stats)
        run_.log_catalog(catalog_dir, context="training")
        trainer = ContrastiveTrainer(model, pairs, cfg.train, out, cache_dir=cache_dir or out / "feature-cache",
                                     run=run_)  # fmt: skip
        result = trainer.train()
        encoder_dir = trainer.model.save_pretrained(out / "encoder")
        summary = save_training_config(out / "training.json", cfg.encoder, cfg.train, {
            "pairs": pairs.stats, "final_loss": result.final_loss, "samples_per_s": result.samples_per_s,
            "seconds": result.seconds, "steps": result.steps, "history": result.history})  # fmt: skip
        run_.log_metrics({"final_loss": result.final_loss, "samples_per_s": result.samples_per_s})
        run_.log_artifact(summary)
        run_.log_artifact(encoder_dir / "config.json", artifact_path="encoder")
        run_.log_artifact(encoder_dir / "model.safetensors", artifact_path="encoder")
    return TrainStageResult(encoder_dir, summary, result)
