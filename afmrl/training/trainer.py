"""Contrastive trainer for the representation model (AGCL and its baselines).

- ``frozen`` mode (CPU default): the towers' features are computed once and cached on disk; only the
  projection heads (and the temperature) train, so a step is a few small matrix products.
- ``full`` mode (GPUs): the towers fine-tune too, under ``accelerate`` (device placement, mixed
  precision, multi-GPU with ``accelerate launch``); same loop, same losses.

AdamW, linear warm-up then cosine decay, gradient clipping, seeds. A checkpoint every
``train.checkpoint_every`` steps holds the trainable weights, the optimizer, the scheduler and the
step; batches are a pure function of (seed, epoch), so a killed run resumed from its last
checkpoint ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from afmrl.attributes.similarity import attribute_codes, similarity_from_codes
from afmrl.config import EncoderConfig, TrainConfig
from afmrl.losses import AGCLLoss, GISTLoss, InfoNCELoss, OracleLoss
from afmrl.losses.agcl import agcl_weights
from afmrl.losses.oracle import same_product
from afmrl.models.encoders.base import l2_normalize, load_image
from afmrl.models.encoders.dual import DualEncoder
from afmrl.progress import progress
from afmrl.tracking.runs import StageRun
from afmrl.training.data import PairSet
from afmrl.training.features import FeatureCache, image_key, text_key
from afmrl.training.samplers import batch_stream

CHECKPOINT_GLOB = "step-*.pt"


def build_loss(cfg: TrainConfig) -> nn.Module:
    common = {"temperature": cfg.temperature, "learnable": cfg.learnable_temperature}
    if cfg.method == "infonce":
        return InfoNCELoss(**common)
    if cfg.method == "gist":
        return GISTLoss(margin=cfg.gist_margin, **common)
    if cfg.method == "agcl":
        return AGCLLoss(tau_hard=cfg.tau_hard, tau_fn=cfg.tau_fn, beta=cfg.beta, fn_as_positive=cfg.fn_as_positive,
                        **common)  # fmt: skip
    return OracleLoss(**common)


def warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress_ = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))

    return factor


def tower_features(model: DualEncoder, kind: str, inputs: list[Any], cache_dir: str | Path | None) -> np.ndarray:
    """Backbone features of images or texts, through the on-disk cache."""
    cfg = model.cfg
    if kind == "image":
        cache = FeatureCache(cache_dir, f"image-{cfg.image_model}-{cfg.image_size}")
        with progress("features: images", None, unit="img"):
            return cache.get([image_key(p) for p in inputs], inputs, model.image_backbone)
    cache = FeatureCache(cache_dir, f"text-{Path(cfg.text_model).name}-{cfg.max_tokens}")
    return cache.get([text_key(t) for t in inputs], inputs, model.text_backbone)


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    samples_per_s: float
    seconds: float
    checkpoint_dir: Path
    history: list[dict[str, float]] = field(default_factory=list)


class ContrastiveTrainer:
    def __init__(self, model: DualEncoder, pairs: PairSet, cfg: TrainConfig, work_dir: str | Path,
                 cache_dir: str | Path | None = None, run: StageRun | None = None) -> None:  # fmt: skip
        self.model, self.pairs, self.cfg = model, pairs, cfg
        self.work_dir = Path(work_dir)
        self.ckpt_dir = self.work_dir / "checkpoints"
        self.cache_dir = cache_dir
        self.run = run or StageRun(None)
        torch.manual_seed(cfg.seed)
        self.loss_fn = build_loss(cfg)
        codes, weights = attribute_codes(pairs.attrs, cfg.attribute_weights or None)
        self.attr_codes = torch.from_numpy(codes)
        self.attr_weights = torch.from_numpy(weights)
        self.products = torch.from_numpy(pairs.products)

    # ------------------------------------------------------------------ helpers
    def _project(self, kind: str, feats: torch.Tensor) -> torch.Tensor:
        return self.model.project_images(feats) if kind == "image" else self.model.project_texts(feats)

    def _trainable(self) -> list[nn.Parameter]:
        """Heads, gate and temperature (computed once: walking the towers' modules every step costs ~8 %)."""
        if getattr(self, "_trainable_cache", None) is None:
            loss_params = [p for p in self.loss_fn.parameters() if p.requires_grad]
            self._trainable_cache = self.model.head_parameters() + loss_params
        return self._trainable_cache

    def loss_extras(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.cfg.method == "agcl":
            sim, comparable = similarity_from_codes(self.attr_codes[idx], self.attr_weights, self.cfg.min_shared_keys)
            return {"attr_sim": sim, "attr_comparable": comparable}
        if self.cfg.method == "oracle":
            return {"product_ids": self.products[idx]}
        if self.cfg.method == "gist":
            return {"guide_a": self.guide_a[idx], "guide_b": self.guide_b[idx]}
        return {}

    def batch_stats(self, idx: torch.Tensor, extras: dict[str, torch.Tensor]) -> dict[str, float]:
        """Measured with the labels, never used by the loss: how many in-batch negatives are the same
        product (false negatives), and for AGCL how precise its masking is."""
        truth = same_product(self.products[idx])
        n = len(idx)
        stats = {"batch_fn_rate": float(truth.sum()) / (n * (n - 1))}
        if "attr_sim" in extras:
            w, fn = agcl_weights(extras["attr_sim"], extras["attr_comparable"], self.cfg.tau_hard, self.cfg.tau_fn,
                                 self.cfg.beta)  # fmt: skip
            stats["masked_rate"] = float(fn.sum()) / (n * (n - 1))
            stats["mask_precision"] = float((fn & truth).sum()) / max(1, int(fn.sum()))
            stats["mask_recall"] = float((fn & truth).sum()) / max(1, int(truth.sum()))
            stats["hard_rate"] = float((w > 1).sum()) / (n * (n - 1))
        return stats

    # ------------------------------------------------------------------ checkpoints
    def _latest_checkpoint(self) -> Path | None:
        found = sorted(self.ckpt_dir.glob(CHECKPOINT_GLOB))
        return found[-1] if found else None

    def fingerprint(self) -> str:
        """What a checkpoint must match to be resumed: the training and model settings and the data."""
        import hashlib

        h = hashlib.sha256(json.dumps({"train": self.cfg.model_dump(exclude={"checkpoint_every", "log_every"}),
                                       "encoder": self.model.cfg.model_dump()}, sort_keys=True).encode())  # fmt: skip
        h.update("\n".join(self.pairs.ids).encode())
        return h.hexdigest()[:16]

    def _save_checkpoint(self, step: int, opt: torch.optim.Optimizer, sched: Any) -> Path:
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        path = self.ckpt_dir / f"step-{step:07d}.pt"
        state = {"step": step, "fingerprint": self.fingerprint(), "model": self.model.trainable_state(),
                 "loss": self.loss_fn.state_dict(),
                 "opt": opt.state_dict(), "sched": sched.state_dict(), "torch_rng": torch.get_rng_state()}  # fmt: skip
        tmp = path.with_suffix(".tmp")
        torch.save(state, tmp)
        os.replace(tmp, path)  # a kill mid-save never leaves a broken checkpoint
        for old in sorted(self.ckpt_dir.glob(CHECKPOINT_GLOB))[:-2]:
            old.unlink()
        return path

    def _resume(self, opt: torch.optim.Optimizer, sched: Any) -> int:
        path = self._latest_checkpoint()
        if path is None:
            return 0
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state.get("fingerprint") != self.fingerprint():
            from afmrl.progress import console

            console.print(f"[yellow]checkpoints in {self.ckpt_dir} come from other settings or data: starting afresh")
            for old in self.ckpt_dir.glob(CHECKPOINT_GLOB):
                old.unlink()
            return 0
        self.model.load_state_dict(state["model"], strict=False)
        self.loss_fn.load_state_dict(state["loss"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        torch.set_rng_state(state["torch_rng"])
        return int(state["step"])

    # ------------------------------------------------------------------ training
    def prepare_features(self) -> None:
        p = self.pairs
        self.feats_a = torch.from_numpy(tower_features(self.model, p.a_kind, p.a_inputs, self.cache_dir))
        self.feats_b = torch.from_numpy(tower_features(self.model, p.b_kind, p.b_inputs, self.cache_dir))
        if self.cfg.method == "gist":  # zero-shot guide: the pretrained towers' own features
            ga, gb = l2_normalize(self.feats_a), l2_normalize(self.feats_b)
            if p.a_kind == p.b_kind:
                self.guide_a, self.guide_b = ga, gb
            else:  # different spaces: compare listings by their averaged intra-modal similarity
                both = l2_normalize(torch.cat([ga, gb], dim=1))
                self.guide_a = self.guide_b = both

    def train(self) -> TrainResult:
        cfg = self.cfg
        if cfg.mode == "full":
            return self._train_full()
        self.prepare_features()
        params = self._trainable()
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.warmup_steps, cfg.steps))
        start = self._resume(opt, sched)
        stream = batch_stream(cfg.sampler, len(self.pairs), cfg.batch_size, cfg.seed, start_step=start,
                              keys=self.pairs.keys, ratio=cfg.neighbour_ratio,
                              products=self.pairs.products.tolist() if cfg.no_duplicate_products else None)  # fmt: skip
        self.model.train()
        history: list[dict[str, float]] = []
        window: list[float] = []
        stats_acc: dict[str, float] = {}
        loss_value = float("nan")
        t0 = time.perf_counter()
        with progress(f"train {cfg.method}", cfg.steps - start, unit="step") as advance:
            for step in range(start, cfg.steps):
                idx = torch.tensor(next(stream))
                extras = self.loss_extras(idx)
                a = self._project(self.pairs.a_kind, self.feats_a[idx])
                b = self._project(self.pairs.b_kind, self.feats_b[idx])
                loss = self.loss_fn(a, b, **extras)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                sched.step()
                window.append(loss.item())
                if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                    for k, v in self.batch_stats(idx, extras).items():
                        stats_acc[k] = v
                    loss_value = float(np.mean(window))
                    record = {"loss": loss_value, "temperature": self.loss_fn.temperature.tau,
                              "lr": sched.get_last_lr()[0], **stats_acc}  # fmt: skip
                    history.append({"step": step + 1, **record})
                    self.run.log_metrics(record, step=step + 1)
                    window = []
                if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps:
                    self._save_checkpoint(step + 1, opt, sched)
                advance(1)
        seconds = time.perf_counter() - t0
        self._save_checkpoint(cfg.steps, opt, sched)
        done = cfg.steps - start
        self.model.eval()
        return TrainResult(cfg.steps, loss_value, done * cfg.batch_size / max(seconds, 1e-9), seconds, self.ckpt_dir,
                           history)  # fmt: skip

    def _train_full(self) -> TrainResult:
        """Fine-tune towers and heads with accelerate (GPU, bf16, multi-GPU through accelerate launch)."""
        from accelerate import Accelerator

        cfg = self.cfg
        acc = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
        self.model.towers_trained = True
        opt = torch.optim.AdamW([{"params": self.model.tower_parameters(), "lr": cfg.backbone_lr},
                                 {"params": self._trainable(), "lr": cfg.lr}], weight_decay=cfg.weight_decay)  # fmt: skip
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.warmup_steps, cfg.steps))
        start = self._resume(opt, sched)
        if cfg.method == "gist":
            self.prepare_features()
        model, loss_fn, opt, sched = acc.prepare(self.model, self.loss_fn, opt, sched)
        core: DualEncoder = acc.unwrap_model(model)
        stream = batch_stream(cfg.sampler, len(self.pairs), cfg.batch_size, cfg.seed + acc.process_index,
                              start_step=start, keys=self.pairs.keys, ratio=cfg.neighbour_ratio)  # fmt: skip

        def view(kind: str, inputs: list[Any]) -> torch.Tensor:
            if kind == "image":
                pixels = torch.stack([load_image(p, core.cfg.image_size) for p in inputs]).to(acc.device)
                return core.project_images(core.image_features(pixels))
            tokens = {k: v.to(acc.device) for k, v in core.text_tower.tokenize(inputs).items()}
            return core.project_texts(core.text_features(tokens))

        model.train()
        t0, loss_value, history = time.perf_counter(), float("nan"), []
        with progress(f"train {cfg.method} (full)", cfg.steps - start, unit="step") as advance:
            for step in range(start, cfg.steps):
                ids = next(stream)
                idx = torch.tensor(ids)
                extras = {k: v.to(acc.device) for k, v in self.loss_extras(idx).items()}
                with acc.autocast():
                    a = view(self.pairs.a_kind, [self.pairs.a_inputs[i] for i in ids])
                    b = view(self.pairs.b_kind, [self.pairs.b_inputs[i] for i in ids])
                    loss = loss_fn(a.float(), b.float(), **extras)
                opt.zero_grad(set_to_none=True)
                acc.backward(loss)
                if cfg.grad_clip > 0:
                    acc.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                sched.step()
                loss_value = loss.item()
                if (step + 1) % cfg.log_every == 0:
                    record = {"loss": loss_value, "temperature": acc.unwrap_model(loss_fn).temperature.tau}
                    history.append({"step": step + 1, **record})
                    if acc.is_main_process:
                        self.run.log_metrics(record, step=step + 1)
                if (step + 1) % cfg.checkpoint_every == 0 and acc.is_main_process and step + 1 < cfg.steps:
                    self._save_checkpoint(step + 1, opt, sched)
                advance(1)
        seconds = time.perf_counter() - t0
        if acc.is_main_process:
            self._save_checkpoint(cfg.steps, opt, sched)
        self.model = core.cpu().eval()
        done = cfg.steps - start
        return TrainResult(cfg.steps, loss_value, done * cfg.batch_size * acc.num_processes / max(seconds, 1e-9),
                           seconds, self.ckpt_dir, history)  # fmt: skip


def save_training_config(path: Path, enc: EncoderConfig, train: TrainConfig, extra: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"encoder": enc.model_dump(), "train": train.model_dump(), **extra}, indent=2,
                               sort_keys=True, default=str) + "\n")  # fmt: skip
    return path
