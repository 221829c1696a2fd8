"""Checkpoints are plain data: a checkpoint planted in the output folder never runs code on resume (it is
refused, naming the file), and a finished training run again keeps the figures of the run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from afmrl.catalog import read_catalog
from afmrl.config import load_config
from afmrl.errors import DataError
from afmrl.models.encoders.dual import DualEncoder
from afmrl.stages import train
from afmrl.training.data import build_pairs
from afmrl.training.trainer import ContrastiveTrainer

BASE = ["tracking.enabled=false", "train.batch_size=8", "train.log_every=1", "train.steps=3",
        "train.checkpoint_every=2", "train.method=infonce", "train.warmup_steps=1", "encoder.image_size=64"]  # fmt: skip


class _Planted:
    """What an attacker leaves in ``checkpoints/``: unpickling it runs code (here: writes a marker file)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


def _trainer(tmp_path, synth_catalog, one_thread) -> ContrastiveTrainer:
    cfg = load_config(None, BASE)
    pairs = build_pairs(read_catalog(synth_catalog), ("train",), cfg.encoder, cfg.train)
    return ContrastiveTrainer(DualEncoder(cfg.encoder), pairs, cfg.train, tmp_path / "train",
                              cache_dir=tmp_path / "cache")  # fmt: skip


def test_a_planted_pickle_checkpoint_is_refused_and_never_runs(tmp_path, synth_catalog, one_thread):
    trainer = _trainer(tmp_path, synth_catalog, one_thread)
    marker = tmp_path / "marker"
    planted = trainer.ckpt_dir / "step-0000002.pt"
    planted.parent.mkdir(parents=True)
    torch.save({"step": 2, "fingerprint": trainer.fingerprint(), "model": _Planted(str(marker))}, planted)
    with pytest.raises(DataError) as info:
        trainer.train()
    assert not marker.exists(), "unpickling the planted checkpoint ran its code"
    assert str(planted) in str(info.value) and "delete it" in str(info.value).lower()
    assert "weights_only=False" not in str(info.value), "never advise loading it unsafely"


def test_our_own_checkpoints_load_as_plain_data(tmp_path, synth_catalog, one_thread):
    trainer = _trainer(tmp_path, synth_catalog, one_thread)
    trainer.train()
    (last,) = sorted(trainer.ckpt_dir.glob("step-*.pt"))[-1:]
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["step"] == 3 and math.isfinite(state["final_loss"]) and len(state["history"]) == 3


def test_a_finished_run_run_again_keeps_its_final_loss(tmp_path, synth_catalog, one_thread):
    cfg = load_config(None, BASE)
    first = train.run(cfg, synth_catalog, tmp_path / "train", cache_dir=tmp_path / "cache")
    summary = json.loads((tmp_path / "train" / "training.json").read_text())
    assert math.isfinite(first.result.final_loss) and summary["final_loss"] == first.result.final_loss
    again = train.run(cfg, synth_catalog, tmp_path / "train", cache_dir=tmp_path / "cache")
    text = (tmp_path / "train" / "training.json").read_text()
    assert "NaN" not in text
    summary = json.loads(text)
    assert again.result.final_loss == first.result.final_loss == summary["final_loss"]
    assert summary["history"] == first.result.history and summary["steps"] == 3
    assert again.result.samples_per_s == first.result.samples_per_s > 0, "the run's throughput, not this no-op's"
