"""The trainer: learning happens, a killed run resumes to the same weights, full mode updates the towers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from afmrl.catalog import read_catalog
from afmrl.config import load_config
from afmrl.models.encoders.dual import DualEncoder
from afmrl.stages import evaluate, train
from afmrl.training.data import build_pairs
from afmrl.training.trainer import ContrastiveTrainer

pytestmark = pytest.mark.slow
BASE = ["tracking.enabled=false", "train.batch_size=16", "train.log_every=20", "encoder.image_size=96"]


def test_training_learns_and_evaluation_reports(tmp_path, synth_catalog):
    cfg = load_config(None, BASE + ["train.steps=120", "train.method=agcl"])
    result = train.run(cfg, synth_catalog, tmp_path / "train")
    history = result.result.history
    assert history[-1]["loss"] < history[0]["loss"]
    assert 0.0 <= history[-1]["mask_precision"] <= 1.0
    ev = evaluate.run(cfg, synth_catalog, result.encoder_dir, tmp_path / "eval", cache_dir=tmp_path / "train/feature-cache")
    m = ev.result.metrics
    n_gallery = ev.result.counts["gallery"]
    assert m["listing_R@1"] > 3.0 / n_gallery  # far above chance
    for name in ("report.json", "summary.md", "recall_at_k.png", "similarity_hist.png"):
        assert (tmp_path / "eval" / name).exists()


def _cli(args: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "AFMRL_PROGRESS": "off"}
    return subprocess.Popen([sys.executable, "-m", "afmrl.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip


def test_kill_and_resume_gives_the_same_weights(tmp_path, synth_catalog):
    # 400 steps: the kill comes at the first checkpoint (step 25), the other 375 leave it time to land
    overrides = BASE + ["train.steps=400", "train.checkpoint_every=25", "train.method=agcl"]
    sets = [x for o in overrides for x in ("--set", o)]
    cache = tmp_path / "cache"
    # uninterrupted reference
    ref = _cli([*sets, "train", str(synth_catalog), "--out", str(tmp_path / "ref"), "--cache", str(cache)], tmp_path)
    assert ref.wait(timeout=600) == 0, ref.stdout.read()
    # a run killed with SIGKILL once it has written its first checkpoint
    args = [*sets, "train", str(synth_catalog), "--out", str(tmp_path / "killed"), "--cache", str(cache)]
    proc = _cli(args, tmp_path)
    ckpts = tmp_path / "killed" / "checkpoints"
    deadline = time.time() + 300
    while not list(ckpts.glob("step-*.pt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "killed" / "encoder").exists()
    done = int(sorted(ckpts.glob("step-*.pt"))[-1].stem.split("-")[1])
    assert 0 < done < 400
    # resume: the same command again
    resumed = _cli(args, tmp_path)
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read()
    a = load_file(str(tmp_path / "ref/encoder/model.safetensors"))
    b = load_file(str(tmp_path / "killed/encoder/model.safetensors"))
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    assert worst < 1e-5, f"resumed weights differ from the uninterrupted run by {worst}"


def test_full_finetuning_updates_towers_with_accelerate(tmp_path, synth_catalog):
    cfg = load_config(None, BASE + ["train.mode=full", "train.steps=2", "train.batch_size=4",
                                    "train.method=infonce", "encoder.image_size=64"])  # fmt: skip
    catalog = read_catalog(synth_catalog)
    pairs = build_pairs(catalog, ("train",), cfg.encoder, cfg.train)
    model = DualEncoder(cfg.encoder)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = ContrastiveTrainer(model, pairs, cfg.train, tmp_path)
    trainer.train()
    after = dict(trainer.model.named_parameters())
    changed = {n.split(".")[0] for n, p in after.items() if not torch.equal(p.detach(), before[n])}
    assert {"image_tower", "text_tower", "image_head", "text_head"} <= changed
    trainer.model.save_pretrained(tmp_path / "enc")
    reloaded = DualEncoder.from_pretrained(tmp_path / "enc")
    assert reloaded.towers_trained
    # the saved encoder reproduces the trained model's embeddings in a fresh object (towers and heads)
    texts = ["Norvik red striped mug 350 ml", "blue bottle"]
    np.testing.assert_allclose(reloaded.encode_texts(texts), trainer.model.encode_texts(texts), atol=1e-5)
    images = sorted((synth_catalog / "images").glob("*.jpg"))[:2]
    np.testing.assert_allclose(reloaded.encode_images(images), trainer.model.encode_images(images), atol=1e-5)


def test_both_modes_draw_the_same_batches_and_honour_no_duplicate_products(tmp_path, synth_catalog):
    overrides = BASE + ["train.steps=3", "train.batch_size=8", "train.method=infonce", "encoder.image_size=64",
                        "train.no_duplicate_products=true"]  # fmt: skip
    catalog = read_catalog(synth_catalog)
    drawn: dict[str, list[list[int]]] = {}
    for mode in ("frozen", "full"):
        cfg = load_config(None, [*overrides, f"train.mode={mode}"])
        pairs = build_pairs(catalog, ("train",), cfg.encoder, cfg.train)
        trainer = ContrastiveTrainer(DualEncoder(cfg.encoder), pairs, cfg.train, tmp_path / mode,
                                     cache_dir=tmp_path / "cache")  # fmt: skip
        extras = trainer.loss_extras  # called once per step with the batch's pair indices
        drawn[mode] = []
        trainer.loss_extras = lambda idx, seen=drawn[mode], extras=extras: seen.append(idx.tolist()) or extras(idx)
        trainer.train()
    assert drawn["full"] == drawn["frozen"] and len(drawn["full"]) == 3
    for batch in drawn["full"]:
        known = [p for p in pairs.products[batch].tolist() if p >= 0]
        assert len(known) == len(set(known)), f"two listings of one product in a batch: {batch}"
    # the setting matters on this catalogue: without it, the same seed puts a product twice in a batch
    plain = trainer.cfg.model_copy(update={"no_duplicate_products": False})
    free = ContrastiveTrainer(trainer.model, pairs, plain, tmp_path / "plain").batches()
    assert any(len(set(pairs.products[next(free)].tolist())) < 8 for _ in range(3))
