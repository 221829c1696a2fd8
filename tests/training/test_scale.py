"""Training at scale: GradCache in the trainer, and `afmrl train` under `torchrun --nproc_per_node 2`.

Both must train the weights one plain process trains: the cached trainer (train.mini_batch_size)
computes the same gradients, and two processes split each global batch and average gradients (see
afmrl.losses.distributed for the normalisation; tests/losses/test_distributed.py checks the losses).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from afmrl.catalog import read_catalog
from afmrl.config import load_config
from afmrl.errors import ConfigError
from afmrl.models.encoders.dual import DualEncoder
from afmrl.stages import train
from afmrl.training.data import build_pairs
from afmrl.training.samplers import shard
from afmrl.training.trainer import ContrastiveTrainer, _join_process_group

BASE = ["tracking.enabled=false", "train.batch_size=8", "train.log_every=3", "train.steps=6", "encoder.image_size=96"]


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "encoder" / "model.safetensors"))


def _worst(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_shard_splits_a_global_batch_in_rank_order():
    batch = [7, 3, 9, 1, 4, 8]
    assert [shard(batch, r, 3) for r in range(3)] == [[7, 3], [9, 1], [4, 8]]
    assert shard(batch, 0, 1) == batch
    with pytest.raises(ValueError, match="evenly"):
        shard(batch, 0, 4)


def test_a_global_batch_that_does_not_split_over_the_processes_is_a_config_error(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    cfg = load_config(None, ["train.batch_size=8"]).train
    with pytest.raises(ConfigError, match="train.batch_size"):
        _join_process_group(cfg)


@pytest.mark.slow
def test_cached_trainer_trains_the_weights_of_the_uncached_one(tmp_path, synth_catalog):
    catalog = read_catalog(synth_catalog)
    cfg = load_config(None, BASE)
    torch.manual_seed(0)
    model = DualEncoder(cfg.encoder)  # loaded once; every run starts from its initial heads
    initial = {k: v.detach().clone() for k, v in model.trainable_state().items()}
    for method in ("agcl", "infonce"):
        trained, losses = {}, {}
        for mini in (None, 3):
            cfg = load_config(None, [*BASE, f"train.method={method}", f"train.mini_batch_size={mini or 'null'}"])
            model.load_state_dict(initial, strict=False)
            pairs = build_pairs(catalog, ("train",), cfg.encoder, cfg.train)
            trainer = ContrastiveTrainer(model, pairs, cfg.train, tmp_path / f"{method}-{mini}",
                                         cache_dir=tmp_path / "cache")  # fmt: skip
            losses[mini] = trainer.train().final_loss
            trained[mini] = {k: v.detach().clone() for k, v in trainer.model.trainable_state().items()}
        assert _worst(trained[None], initial) > 1e-3  # it trained
        assert _worst(trained[None], trained[3]) < 1e-5, method
        assert losses[3] == pytest.approx(losses[None], abs=1e-5)


@pytest.mark.slow
def test_torchrun_two_processes_train_the_single_process_weights_and_rank_0_alone_writes(tmp_path, synth_catalog):
    """`torchrun --nproc_per_node 2 -m afmrl.cli train ...` on CPU (gloo): one encoder, one MLflow run,
    checkpoints from rank 0, and the weights of one process on the same global batches."""
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [*BASE[1:], "train.method=agcl", f"tracking.uri={uri}"]
    sets = [x for o in overrides for x in ("--set", o)]
    cache = tmp_path / "cache"
    env = {**os.environ, "AFMRL_PROGRESS": "off", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
           "-m", "afmrl.cli", *sets, "train", str(synth_catalog), "--out", str(tmp_path / "two"), "--cache", str(cache)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (proc.stdout + proc.stderr).count("encoder:") == 2  # both processes finished the command
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["checkpoints", "encoder", "training.json"]
    assert [p.name for p in (tmp_path / "two" / "checkpoints").iterdir()] == ["step-0000006.pt"]
    runs = mlflow.MlflowClient(tracking_uri=uri).search_runs(
        [e.experiment_id for e in mlflow.MlflowClient(tracking_uri=uri).search_experiments()],
        filter_string="tags.`afmrl.stage` = 'train'")  # fmt: skip
    assert len(runs) == 1  # rank 0 alone tracks
    # one process on the same global batches (the feature cache is warm): the same weights and figures
    cfg = load_config(None, [*BASE, "train.method=agcl"])
    one = train.run(cfg, synth_catalog, tmp_path / "one", cache_dir=cache)
    assert _worst(_weights(tmp_path / "two"), _weights(tmp_path / "one")) < 1e-5
    two_loss = runs[0].data.metrics["final_loss"]
    assert two_loss == pytest.approx(one.result.final_loss, abs=1e-5)
