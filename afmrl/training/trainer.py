"""Contrastive trainer for the representation model (AGCL and its baselines).

- ``frozen`` mode (CPU default): the towers' features are computed once and cached on disk; only the
  projection heads (and the temperature) train, so a step is a few small matrix products.
- ``full`` mode (GPUs): the towers fine-tune too, under ``accelerate`` (device placement, mixed
  precision, multi-GPU with ``accelerate launch``).

Both modes run one loop (:meth:`ContrastiveTrainer.train`): the same sampler, losses, clipping,
logging and checkpoints; the mode only decides how a batch's features are produced (cached backbone
features or a tower forward) and which parameters train (the towers join at ``train.backbone_lr``).

Scale (both modes):

- several processes (``torchrun --nproc_per_node N`` or ``accelerate launch --num_processes N``;
  ``WORLD_SIZE`` > 1): the trainer joins the process group (gloo on CPU and in frozen mode, nccl for
  full mode on CUDA). Every process draws the same global batch of ``train.batch_size`` and takes its
  slice (:func:`~afmrl.training.samplers.shard`); the losses gather the embeddings with their gradient
  and the per-item metadata, so negatives and AGCL's masks span the global batch
  (:mod:`afmrl.losses.distributed`); gradients are averaged over processes (DDP's all-reduce, done
  explicitly: the towers are called outside a DDP wrapper), so a step equals the single-process step
  on the whole batch (exactly in frozen mode; in full mode the image tower's BatchNorm normalises each
  process's rows by their own statistics, as under DDP without SyncBatchNorm). Only rank 0 writes checkpoints and logs to MLflow; the logged loss is the global
  batch's.
- ``train.mini_batch_size``: GradCache (:class:`~afmrl.losses.CachedLoss`): each process embeds its
  batch that many rows at a time, same gradients, memory for one mini-batch of activations.

AdamW, linear warm-up then cosine decay, gradient clipping, seeds. A checkpoint every
``train.checkpoint_every`` steps holds the trainable weights, the optimizer, the scheduler, the RNG
state, the step and the figures so far (loss history; at the end the final loss and throughput, so a
finished run run again reports them instead of nothing); batches are a pure function of (seed,
epoch), so a killed run resumed from its last checkpoint ends with the same weights as an
uninterrupted one. Checkpoints hold tensors and plain data only and are read with
``torch.load(weights_only=True)``: a file planted in ``checkpoints/`` cannot run code on resume, it is
refused (:class:`~afmrl.errors.DataError` naming it). Each checkpoint is written whole or not at all
(:mod:`afmrl.atomic`).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from afmrl.atomic import atomic_path, write_json_atomic
from afmrl.attributes.similarity import (
    attribute_codes,
    code_keys,
    similarity_from_codes,
    weights_over_defaults,
)
from afmrl.config import EncoderConfig, TrainConfig
from afmrl.digest import digest_bytes
from afmrl.errors import ConfigError, DataError
from afmrl.losses import AGCLLoss, CachedLoss, GISTLoss, InfoNCELoss, OracleLoss
from afmrl.losses import distributed as dist_
from afmrl.losses.agcl import agcl_weights, mined_weights
from afmrl.losses.oracle import same_product
from afmrl.models.encoders.base import load_image
from afmrl.models.encoders.dual import DualEncoder
from afmrl.models.features import fuse_listing, project_listing_features, tower_features
from afmrl.progress import progress
from afmrl.tracking.runs import StageRun
from afmrl.training.data import PairSet
from afmrl.training.guide import zero_shot_guides
from afmrl.training.mining import AttributeBonus, cached_mine_negatives
from afmrl.training.samplers import batch_stream, shard

CHECKPOINT_GLOB = "step-*.pt"
CHECKPOINT_KEYS = ("step", "fingerprint", "model", "loss", "opt", "sched", "torch_rng")


def build_loss(cfg: TrainConfig) -> nn.Module:
    common = {"temperature": cfg.temperature, "learnable": cfg.learnable_temperature}
    if cfg.method == "infonce":
        return InfoNCELoss(**common)
    if cfg.method == "gist":
        return GISTLoss(margin=cfg.gist_margin, **common)
    if cfg.method == "agcl":
        return AGCLLoss(tau_hard=cfg.tau_hard, tau_fn=cfg.tau_fn, beta=cfg.beta, fn_as_positive=cfg.fn_as_positive,
                        min_shared_keys=cfg.min_shared_keys, positive_weight=cfg.positive_weight,
                        intra_modal=cfg.intra_modal, guide_margin=cfg.gist_margin if cfg.agcl_guide else None,
                        **common)  # fmt: skip
    return OracleLoss(**common)


def warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress_ = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress_)))

    return factor


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
        key_weights = weights_over_defaults(cfg.attribute_weights)
        codes, weights = attribute_codes(pairs.attrs, key_weights)
        self.attr_codes = torch.from_numpy(codes)
        self.attr_weights = torch.from_numpy(weights)
        keys = code_keys(key_weights)  # the codes' columns
        unknown = sorted(set(cfg.guide_spares) - set(keys))
        if unknown:
            raise ValueError(f"train.guide_spares names keys that carry no weight: {unknown} (weighted: {keys})")
        self.spare_keys = torch.tensor([k in cfg.guide_spares for k in keys]) if cfg.guide_spares else None
        self.products = torch.from_numpy(pairs.products)

    # ------------------------------------------------------------------ helpers
    def _project(self, kind: str, feats: torch.Tensor) -> torch.Tensor:
        """Backbone features of one view -> its embedding (a ``listing``: both heads, then fused)."""
        if kind == "listing":
            return project_listing_features(self.model, feats)
        return self.model.project_images(feats) if kind == "image" else self.model.project_texts(feats)

    def _trainable(self) -> list[nn.Parameter]:
        """Heads, gate and temperature (computed once: walking the towers' modules every step costs ~8 %)."""
        if getattr(self, "_trainable_cache", None) is None:
            loss_params = [p for p in self.loss_fn.parameters() if p.requires_grad]
            self._trainable_cache = self.model.head_parameters() + loss_params
        return self._trainable_cache

    def loss_extras(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss's per-item inputs for this process's rows ``idx`` (the loss gathers them across
        processes, so its masks span the global batch)."""
        if self.cfg.method == "agcl":
            guide = {"guide_a": self.guide_a[idx], "guide_b": self.guide_b[idx]} if self.cfg.agcl_guide else {}
            spare = {"attr_spare_keys": self.spare_keys} if self.spare_keys is not None else {}
            return {"attr_codes": self.attr_codes[idx], "attr_key_weights": self.attr_weights, **guide, **spare}
        if self.cfg.method == "oracle":
            return {"product_ids": self.products[idx]}
        if self.cfg.method == "gist":
            return {"guide_a": self.guide_a[idx], "guide_b": self.guide_b[idx]}
        return {}

    def batch_stats(self, idx: torch.Tensor) -> dict[str, float]:
        """Measured with the labels on the global batch ``idx``, never used by the loss: how many
        in-batch negatives are the same product (false negatives), and for AGCL how precise its masking is."""
        truth = same_product(self.products[idx])
        n = len(idx)
        stats = {"batch_fn_rate": float(truth.sum()) / (n * (n - 1))}
        if self.cfg.method == "agcl":
            sim, comparable = similarity_from_codes(self.attr_codes[idx], self.attr_weights, self.cfg.min_shared_keys)
            w, fn = agcl_weights(sim, comparable, self.cfg.tau_hard, self.cfg.tau_fn, self.cfg.beta)
            stats["masked_rate"] = float(fn.sum()) / (n * (n - 1))
            stats["mask_precision"] = float((fn & truth).sum()) / max(1, int(fn.sum()))
            stats["mask_recall"] = float((fn & truth).sum()) / max(1, int(truth.sum()))
            stats["hard_rate"] = float((w > 1).sum()) / (n * (n - 1))
            if self.cfg.mined_negatives:  # how AGCL's attributes weigh the mined negatives (all other products)
                neg = self.mined[idx]
                mw, mfn = mined_weights(self.attr_codes[idx], self.attr_codes[neg.clamp(min=0)], self.attr_weights,
                                        self.cfg.min_shared_keys, self.cfg.tau_hard, self.cfg.tau_fn, self.cfg.beta)
                valid = neg >= 0
                stats["mined_masked_rate"] = float((mfn & valid).sum()) / max(1, int(valid.sum()))
                stats["mined_hard_rate"] = float(((mw > 1) & valid).sum()) / max(1, int(valid.sum()))
        return stats

    # ------------------------------------------------------------------ checkpoints
    def _latest_checkpoint(self) -> Path | None:
        found = sorted(self.ckpt_dir.glob(CHECKPOINT_GLOB))
        return found[-1] if found else None

    def fingerprint(self) -> str:
        """What a checkpoint must match to be resumed: the training and model settings and the data."""
        settings = json.dumps({"train": self.cfg.model_dump(exclude={"checkpoint_every", "log_every",
                                                                     "mini_batch_size"}),
                               "encoder": self.model.cfg.model_dump()}, sort_keys=True)  # fmt: skip
        return digest_bytes(settings, "\n".join(self.pairs.ids))[:16]

    def _save_checkpoint(self, step: int, opt: torch.optim.Optimizer, sched: Any, figures: dict[str, Any]) -> Path:
        """Tensors and plain data only (readable with ``weights_only=True``). ``figures``: ``final_loss``
        (the last logged loss), ``history`` and, at the end, ``samples_per_s`` and ``seconds``."""
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        path = self.ckpt_dir / f"step-{step:07d}.pt"
        state = {"step": step, "fingerprint": self.fingerprint(), "model": self.model.trainable_state(),
                 "loss": self.loss_fn.state_dict(),
                 "opt": opt.state_dict(), "sched": sched.state_dict(), "torch_rng": torch.get_rng_state(),
                 **_plain(figures)}  # fmt: skip
        with atomic_path(path) as tmp:  # a kill or a full disk mid-save never leaves a broken checkpoint
            torch.save(state, tmp)
        for old in sorted(self.ckpt_dir.glob(CHECKPOINT_GLOB))[:-2]:
            old.unlink()
        return path

    def _load_checkpoint(self, path: Path) -> dict[str, Any]:
        """The checkpoint's content, read as tensors and plain data only: a file holding anything else
        (a pickle that would run code) or a damaged one is refused, naming it; it is never executed."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except OSError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to parse an untrusted file is the same answer
            raise DataError(f"not a checkpoint afmrl can resume from: it holds objects other than tensors and plain "
                            f"data, or is damaged ({type(exc).__name__}: {_load_failure(exc)}); it was not loaded "
                            "and nothing in it ran. Delete it to train afresh", file=str(path)) from None  # fmt: skip
        if not isinstance(state, dict) or not all(k in state for k in CHECKPOINT_KEYS):
            raise DataError(f"not an afmrl training checkpoint (expected the keys {', '.join(CHECKPOINT_KEYS)}). "
                            "Delete it to train afresh", file=str(path))  # fmt: skip
        return state

    def _resume(self, opt: torch.optim.Optimizer, sched: Any) -> tuple[int, dict[str, Any]]:
        """The step to start from and the figures recorded so far (empty when starting afresh)."""
        path = self._latest_checkpoint()
        if path is None:
            return 0, {}
        state = self._load_checkpoint(path)
        if state.get("fingerprint") != self.fingerprint():
            from afmrl.progress import console

            console.print(f"[yellow]checkpoints in {self.ckpt_dir} come from other settings or data: starting afresh")
            _barrier()  # every process has read the checkpoint before rank 0 deletes it
            if dist_.rank() == 0:
                for old in self.ckpt_dir.glob(CHECKPOINT_GLOB):
                    old.unlink()
            return 0, {}
        self.model.load_state_dict(state["model"], strict=False)
        self.loss_fn.load_state_dict(state["loss"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        torch.set_rng_state(state["torch_rng"])
        return int(state["step"]), {k: state[k] for k in ("final_loss", "history", "samples_per_s", "seconds")
                                    if k in state}  # fmt: skip

    # ------------------------------------------------------------------ training
    def prepare_features(self) -> None:
        p = self.pairs
        self.feats_a = torch.from_numpy(tower_features(self.model, p.a_kind, p.a_inputs, self.cache_dir))
        self.feats_b = torch.from_numpy(tower_features(self.model, p.b_kind, p.b_inputs, self.cache_dir))
        if self._needs_guide():  # zero-shot guide in a space both views share (afmrl.training.guide)
            self.guide_a, self.guide_b = zero_shot_guides(self.model, p.a_kind, self.feats_a, p.b_kind, self.feats_b)
        if self.cfg.mined_negatives:  # catalogue-wide hard negatives from the guide's neighbours (training.mining)
            cfg = self.cfg
            bonus = AttributeBonus(self.attr_codes, self.attr_weights, cfg.mining_attribute_bonus, cfg.tau_hard,
                                   cfg.tau_fn, cfg.min_shared_keys) if cfg.method == "agcl" and \
                cfg.mining_attribute_bonus > 0 else None  # fmt: skip
            self.mined = cached_mine_negatives(self.cache_dir, self.guide_a, self.guide_b, p.products,
                                               cfg.mined_negatives, attributes=bonus)

    def mined_extras(self, idx: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss's inputs for the mined negatives of rows ``idx`` (frozen mode): their embeddings
        (with gradient through the heads), which slots hold one, and per method their attribute codes
        (AGCL) or guide vectors (GIST, guided AGCL)."""
        if not self.cfg.mined_negatives:
            return {}
        neg = self.mined[idx]  # (n, K) pair indices, -1: no negative in that slot
        valid = neg >= 0
        flat = neg.clamp(min=0).reshape(-1)
        emb = self._project(self.pairs.b_kind, self.feats_b[flat]).view(*neg.shape, -1)
        extras = {"mined_b": emb, "mined_valid": valid}
        if self.cfg.method == "agcl":
            extras["mined_attr_codes"] = self.attr_codes[flat].view(*neg.shape, -1)
        if self._uses_guide():
            extras["mined_guide"] = self.guide_b[flat].view(*neg.shape, -1)
        return extras

    def _uses_guide(self) -> bool:
        """GIST, and AGCL with ``train.agcl_guide``, read the zero-shot guide's embeddings."""
        return self.cfg.method == "gist" or (self.cfg.method == "agcl" and self.cfg.agcl_guide)

    def _needs_guide(self) -> bool:
        """The guide is computed for the losses that read it and for mining negatives."""
        return self._uses_guide() or self.cfg.mined_negatives > 0

    def batches(self, start_step: int = 0) -> Iterator[list[int]]:
        """The pair indices of every step's global batch from ``start_step`` (the same sampler in both
        modes and in every process: each process then takes its slice)."""
        cfg = self.cfg
        return batch_stream(cfg.sampler, len(self.pairs), cfg.batch_size, cfg.seed, start_step=start_step,
                            keys=self.pairs.keys, ratio=cfg.neighbour_ratio,
                            products=self.pairs.products.tolist() if cfg.no_duplicate_products else None)  # fmt: skip

    def _param_groups(self) -> list[dict[str, Any]]:
        """frozen: heads, gate and temperature; full: the towers too, at ``backbone_lr``."""
        heads = {"params": self._trainable(), "lr": self.cfg.lr}
        if self.cfg.mode == "frozen":
            return [heads]
        return [{"params": self.model.tower_parameters(), "lr": self.cfg.backbone_lr}, heads]

    def _features(self, core: DualEncoder, ids: list[int], idx: torch.Tensor,
                  device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """Projected embeddings of both sides of a batch: from the cached backbone features (frozen) or
        through the towers (full)."""
        p = self.pairs
        if self.cfg.mode == "frozen":
            return self._project(p.a_kind, self.feats_a[idx]), self._project(p.b_kind, self.feats_b[idx])

        def view(kind: str, inputs: list[Any]) -> torch.Tensor:
            if kind == "listing":  # (image path or None, text): both towers, fused as at evaluation
                has = [i for i, (img, _) in enumerate(inputs) if img is not None]
                feats = torch.full((len(inputs), core.image_tower.out_dim), float("nan"), device=device)
                if has:
                    pixels = torch.stack([load_image(inputs[i][0], core.cfg.image_size) for i in has]).to(device)
                    feats[has] = core.image_features(pixels).to(feats.dtype)
                txt = view("text", [t for _, t in inputs])
                return fuse_listing(core, feats, txt).float()
            if kind == "image":
                pixels = torch.stack([load_image(x, core.cfg.image_size) for x in inputs]).to(device)
                return core.project_images(core.image_features(pixels)).float()
            tokens = {k: v.to(device) for k, v in core.text_tower.tokenize(inputs).items()}
            return core.project_texts(core.text_features(tokens)).float()

        return view(p.a_kind, [p.a_inputs[i] for i in ids]), view(p.b_kind, [p.b_inputs[i] for i in ids])

    def train(self) -> TrainResult:
        """One loop for both modes; the mode decides how a batch's features are produced (cached
        backbone features or a tower forward) and which parameters train."""
        cfg = self.cfg
        full = cfg.mode == "full"
        owns_group = _join_process_group(cfg)
        world, rank = dist_.world_size(), dist_.rank()
        if cfg.mined_negatives and (full or cfg.mini_batch_size):
            raise ConfigError("mined negatives are embedded from the cached backbone features: they need "
                              "train.mode=frozen and no train.mini_batch_size", field="train.mined_negatives")  # fmt: skip
        if not full or self._needs_guide():  # the guide: the pretrained towers' features, in both modes
            if rank > 0:
                _barrier()  # rank 0 computes (and caches) the backbone features first; the others read them
            self.prepare_features()
            if rank == 0:
                _barrier()
        if full:
            self.model.towers_trained = True  # saved with the towers (a frozen run keeps what it loaded)
        opt = torch.optim.AdamW(self._param_groups(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(cfg.warmup_steps, cfg.steps))
        start, saved = self._resume(opt, sched)
        params = [p for group in opt.param_groups for p in group["params"]]
        acc = _accelerator(cfg) if full else (_SingleProcess() if world == 1 else _ProcessGroup())
        if world == 1:
            model, loss_fn, opt, sched = acc.prepare(self.model, self.loss_fn, opt, sched)
        else:  # no DDP wrapper (the towers are called directly; gradients are averaged below) and the
            # scheduler steps once per global batch (accelerate's would step once per process)
            model, loss_fn = self.model.to(acc.device), self.loss_fn.to(acc.device)
            opt = acc.prepare(opt)
        cache = CachedLoss(loss_fn, cfg.mini_batch_size) if cfg.mini_batch_size else None
        stream = self.batches(start)
        model.train()
        history: list[dict[str, float]] = list(saved.get("history", []))  # a resumed run's history is whole
        window: list[float] = []
        stats_acc: dict[str, float] = {}
        loss_value = float(saved.get("final_loss", float("nan")))  # a finished run run again keeps its loss
        t0 = time.perf_counter()
        label = f"train {cfg.method}" + (" (full)" if full else "")
        with progress(label, cfg.steps - start, unit="step") as advance:
            for step in range(start, cfg.steps):
                batch = next(stream)
                ids = shard(batch, rank, world)  # this process's slice of the global batch
                idx = torch.tensor(ids)
                extras = {k: v.to(acc.device) for k, v in self.loss_extras(idx).items()}
                if cache is None:
                    with acc.autocast():
                        a, b = self._features(self.model, ids, idx, acc.device)
                        loss = loss_fn(a, b, **extras, **self.mined_extras(idx))
                    opt.zero_grad(set_to_none=True)
                    acc.backward(loss)
                else:  # GradCache: embed in mini-batches, backward inside
                    opt.zero_grad(set_to_none=True)
                    loss = cache.backward(self._embedder(ids, idx, acc), len(ids), backward=acc.backward, **extras)
                dist_.average_gradients(params)  # nothing on one process
                if cfg.grad_clip > 0:
                    acc.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                sched.step()
                window.append(dist_.mean_over_processes(loss).item())  # the global batch's loss
                if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                    for k, v in self.batch_stats(torch.tensor(batch)).items():
                        stats_acc[k] = v
                    loss_value = float(np.mean(window))
                    lrs = sched.get_last_lr()
                    record = {"loss": loss_value, "temperature": self.loss_fn.temperature.tau, "lr": lrs[-1],
                              **({"backbone_lr": lrs[0]} if full else {}), **stats_acc}  # fmt: skip
                    history.append({"step": step + 1, **record})
                    if acc.is_main_process:
                        self.run.log_metrics(record, step=step + 1)
                    window = []
                if (step + 1) % cfg.checkpoint_every == 0 and step + 1 < cfg.steps and acc.is_main_process:
                    self._save_checkpoint(step + 1, opt, sched, {"final_loss": loss_value, "history": history})
                advance(1)
        seconds = time.perf_counter() - t0
        done = cfg.steps - start
        if done > 0:
            throughput = done * cfg.batch_size / max(seconds, 1e-9)  # batch_size: the global batch
            if acc.is_main_process:
                self._save_checkpoint(cfg.steps, opt, sched, {"final_loss": loss_value, "history": history,
                                                              "samples_per_s": throughput, "seconds": seconds})  # fmt: skip
        else:  # the run had finished: report its figures, not this call's (nothing trained)
            throughput, seconds = float(saved.get("samples_per_s", 0.0)), float(saved.get("seconds", 0.0))
        self.model = self.model.cpu().eval()
        if owns_group:
            _barrier()  # rank 0's last checkpoint is written before any process moves on
            dist_.destroy_process_group()
        return TrainResult(cfg.steps, loss_value, throughput, seconds, self.ckpt_dir, history)

    def _embedder(self, ids: list[int], idx: torch.Tensor, acc: Any) -> Any:
        """GradCache's embedding function: rows of this process's batch -> both sides' embeddings."""

        def embed(rows: slice) -> tuple[torch.Tensor, torch.Tensor]:
            with acc.autocast():
                return self._features(self.model, ids[rows], idx[rows], acc.device)

        return embed


class _SingleProcess:
    """The frozen mode's stand-in for ``accelerate.Accelerator``: one process, CPU, nothing wrapped."""

    device = torch.device("cpu")
    process_index = 0
    num_processes = 1
    is_main_process = True

    def prepare(self, *objects: Any) -> Any:
        """The objects as they are (one object alone, like ``Accelerator.prepare``)."""
        return objects[0] if len(objects) == 1 else objects

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        return contextlib.nullcontext()

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()

    def clip_grad_norm_(self, params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
        return torch.nn.utils.clip_grad_norm_(params, max_norm)


class _ProcessGroup(_SingleProcess):
    """The frozen mode's stand-in under several processes: CPU, gloo, nothing wrapped (gradients are
    averaged by the loop)."""

    def __init__(self) -> None:
        self.process_index = dist_.rank()
        self.num_processes = dist_.world_size()
        self.is_main_process = self.process_index == 0


def _join_process_group(cfg: TrainConfig) -> bool:
    """Under ``torchrun`` / ``accelerate launch`` (``WORLD_SIZE`` > 1): join the process group (nccl
    for full mode on CUDA, else gloo) and check that the global batch splits evenly. True when this
    call created the group (the trainer then destroys it at the end)."""
    world = dist_.launched_world_size()
    if world <= 1:
        return False
    if cfg.batch_size % world:
        raise ConfigError(f"{cfg.batch_size} is the global batch and must be a multiple of the number of processes "
                          f"({world})", field="train.batch_size")  # fmt: skip
    if dist_.is_distributed():
        return False
    backend = "nccl" if cfg.mode == "full" and torch.cuda.is_available() else "gloo"
    return dist_.init_process_group(backend)


def is_main_process() -> bool:
    """True except in the processes other than rank 0 of a ``torchrun`` / ``accelerate launch`` run
    (read from the launcher's ``RANK``, so it holds before the process group exists): only the main
    process tracks to MLflow and writes outputs."""
    return dist_.launched_rank() == 0


def _barrier() -> None:
    if dist_.is_distributed():
        torch.distributed.barrier()


def _accelerator(cfg: TrainConfig) -> Any:
    """Full mode: device placement, mixed precision, multi-GPU through ``accelerate launch``."""
    from accelerate import Accelerator

    return Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())


def _load_failure(exc: BaseException) -> str:
    """The gist of torch.load's refusal (its message advises ``weights_only=False``: not shown to users)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    if m := re.search(r"WeightsUnpickler error:\s*(.*?)(?: was not an allowed global| Please|\n|$)", text):
        return m.group(1).strip().rstrip(".")
    first = text.strip().split(". ")[0].splitlines()
    return first[0][:200] if first else "unreadable"


def _plain(value: Any) -> Any:
    """``value`` as plain data for a checkpoint (dicts, lists, str, int, float, bool, None; numpy scalars
    and anything else become floats or strings), so ``torch.load(weights_only=True)`` reads it."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return value
    if isinstance(value, np.generic):
        return value.item()
    return str(value)


def save_training_config(path: Path, enc: EncoderConfig, train: TrainConfig, extra: dict[str, Any]) -> Path:
    return write_json_atomic(path, {"encoder": enc.model_dump(), "train": train.model_dump(), **extra},
                             sort_keys=True, default=str)  # fmt: skip
