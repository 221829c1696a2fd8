"""AGCL training stage: train the representation model on a catalogue's train split.

Outputs in ``out_dir``: ``encoder/`` (a ``DualEncoder.from_pretrained`` folder), ``training.json``
(config, pairing, throughput, final loss, the round and where its attributes came from) and
``checkpoints/`` (resume after a kill: re-run the same command). Logged to MLflow: params, per-step
loss/temperature/batch statistics, artifacts. A round beyond ``loop.rounds`` writes only
``skipped.json`` (:mod:`afmrl.training.rounds`).
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
from afmrl.training.rounds import attributes_provenance, round_skipped, write_skipped
from afmrl.training.trainer import ContrastiveTrainer, TrainResult, is_main_process, save_training_config


@dataclass
class TrainStageResult:
    encoder_dir: Path | None  # None: a skipped round
    summary_path: Path
    result: TrainResult | None

    def metrics(self) -> dict[str, float]:
        if self.result is None:
            return {"skipped": 1.0}
        return {"final_loss": self.result.final_loss, "samples_per_s": self.result.samples_per_s,
                "steps": float(self.result.steps)}  # fmt: skip


def run(cfg: Config, catalog_dir: str | Path, out_dir: str | Path, cache_dir: str | Path | None = None,
        train_splits: tuple[str, ...] = ("train",), attributes_file: str | Path | None = None,
        round_: int = 1) -> TrainStageResult:  # fmt: skip
    """``attributes_file``: the extraction stage's output; sets ``encoder.attributes_source=file``.
    ``round_``: the loop's round this training belongs to (beyond ``loop.rounds``: skipped)."""
    if round_skipped(cfg.loop.rounds, round_):  # the outputs DVC expects, each saying so
        write_skipped(Path(out_dir) / "encoder", "train", round_, cfg.loop.rounds)
        return TrainStageResult(None, write_skipped(out_dir, "train", round_, cfg.loop.rounds, name="training.json"),
                                None)  # fmt: skip
    if attributes_file is not None:
        cfg = cfg.model_copy(update={"encoder": cfg.encoder.model_copy(
            update={"attributes_source": "file", "attributes_file": str(attributes_file)})})  # fmt: skip
    main = is_main_process()  # under torchrun / accelerate launch only rank 0 tracks and writes outputs
    if not main:
        cfg = cfg.model_copy(update={"tracking": cfg.tracking.model_copy(update={"enabled": False})})
    preflight(cfg.tracking)  # an unreachable tracking server fails here, before any training
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    catalog = read_catalog(catalog_dir)
    pairs = build_pairs(catalog, train_splits, cfg.encoder, cfg.train)
    torch.manual_seed(cfg.train.seed)  # head initialisation is part of the run's determinism
    model = DualEncoder(cfg.encoder)
    provenance = attributes_provenance(attributes_file)
    with stage_run(cfg.tracking, "train", tags={"afmrl.method": cfg.train.method, "afmrl.round": str(round_)}) as run_:
        run_.log_config(cfg, ("encoder", "train"), catalog=str(catalog_dir), pairs=pairs.stats, round=round_,
                        attributes_source=provenance["source"], attributes_model=provenance["model"])  # fmt: skip
        run_.log_catalog(catalog_dir, context="training")
        trainer = ContrastiveTrainer(model, pairs, cfg.train, out, cache_dir=cache_dir or out / "feature-cache",
                                     run=run_)  # fmt: skip
        result = trainer.train()
        if not main:  # rank 0 of a multi-process run writes encoder/ and training.json
            return TrainStageResult(out / "encoder", out / "training.json", result)
        encoder_dir = trainer.model.save_pretrained(out / "encoder")
        summary = save_training_config(out / "training.json", cfg.encoder, cfg.train, {
            "pairs": pairs.stats, "final_loss": result.final_loss, "samples_per_s": result.samples_per_s,
            "seconds": result.seconds, "steps": result.steps, "history": result.history, "round": round_,
            "attributes": provenance})  # fmt: skip
        run_.log_metrics({"final_loss": result.final_loss, "samples_per_s": result.samples_per_s})
        run_.log_artifact(summary)
        run_.log_artifact(encoder_dir / "config.json", artifact_path="encoder")
        run_.log_artifact(encoder_dir / "model.safetensors", artifact_path="encoder")
    return TrainStageResult(encoder_dir, summary, result)
