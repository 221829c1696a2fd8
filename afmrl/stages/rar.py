"""RAR stage: reinforce the attribute extractor with GRPO + LoRA, reward = retrieval improvement.

``run(cfg, catalog_dir, base_model, encoder, out_dir)``: the extractor ``base_model`` (the SFT stage's
folder) is trained with LoRA on the ``rar.splits`` prompts; the reward comes from the frozen
representation model ``encoder`` (the train stage's ``encoder/`` folder, or ``pretrained``: the
untrained towers). Building blocks, outputs and logged metrics: :mod:`afmrl.training.rar`.
With tracking on, the merged extractor is registered as a version of ``registry.extractor_name`` and
``rar.json`` records it (``registered``: the lineage round 2's extraction carries on).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from afmrl.atomic import write_json_atomic
from afmrl.catalog.io import read_catalog
from afmrl.config import Config
from afmrl.errors import DataError
from afmrl.models.encoders.base import Encoder
from afmrl.tracking.runs import stage_run
from afmrl.training.hf import ConsoleProgressCallback, StageRunCallback, lora_config, save_extractor
from afmrl.training.rar import RARResult, build_reward_setup, grpo_config, lora_snapshot, prompt_rows
from afmrl.training.rewards import RewardStats


def run(cfg: Config, catalog_dir: str | Path, base_model: str | Path, encoder: str | Path | Encoder,
        out_dir: str | Path) -> RARResult:  # fmt: skip
    """``encoder``: any reference :func:`~afmrl.models.encoders.load_encoder` takes (an encoder folder,
    ``models:/afmrl-encoder@champion``, ``pretrained``), or an :class:`~afmrl.models.encoders.base.Encoder`."""
    import datasets
    import torch
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOTrainer

    from afmrl.attributes.schema import resolve_keys
    from afmrl.models.encoders import load_encoder
    from afmrl.models.mllm import cpu_threads_for, load_mllm

    r, m = cfg.rar, cfg.mllm
    base = str(base_model)
    out = Path(out_dir)
    args = grpo_config(cfg, out)  # trl's GRPOConfig from rar.trl: a bad key fails here, before any loading
    catalog = read_catalog(catalog_dir)
    keys = resolve_keys(cfg.attributes.keys, catalog.listings)
    loaded = load_mllm(base, min_pixels=m.min_pixels, max_pixels=m.max_pixels, dtype=m.dtype, device=m.device)
    df = catalog.listings
    prompts = df[df["split"].isin(r.splits)] if r.splits else df
    with_images = bool(loaded.is_vlm and m.use_images and prompts["image"].notna().any())
    if with_images:
        prompts = prompts[prompts["image"].notna()]
    encoder_ref = encoder if isinstance(encoder, str | Path) else type(encoder).__name__
    encoder = load_encoder(encoder, cfg.encoder, cfg.tracking) if isinstance(encoder, str | Path) else encoder
    stats = RewardStats()
    retrieval, fmt, prompts = build_reward_setup(catalog, prompts.reset_index(drop=True), r, encoder, stats)
    if r.max_prompts is not None and len(prompts) > r.max_prompts:
        keep = sorted(random.Random(r.seed).sample(range(len(prompts)), r.max_prompts))
        prompts = prompts.iloc[keep].reset_index(drop=True)
    if prompts.empty:
        raise DataError(f"no RAR prompt can be scored: no listing of {r.splits} has a target ({r.target}) in the "
                        f"gallery (splits {r.gallery_splits})", field="rar.target")  # fmt: skip
    dataset = datasets.Dataset.from_list(prompt_rows(catalog, prompts, keys, with_images, m.max_description_chars))
    torch.manual_seed(r.seed)
    with stage_run(cfg.tracking, "rar") as run_:
        run_.log_config(cfg, ("rar", "mllm"), catalog=str(catalog_dir), base_model=base, encoder=str(encoder_ref),
                        prompts=len(prompts), gallery=len(retrieval.gallery), keys=keys, with_images=with_images)  # fmt: skip
        callback = StageRunCallback(run_, extras=stats.pop_means)
        trainer = GRPOTrainer(
            model=loaded.model, reward_funcs=[retrieval, fmt], args=args, train_dataset=dataset,
            processing_class=loaded.processor, callbacks=[callback, ConsoleProgressCallback("rar")],
            peft_config=lora_config(r.lora_r, r.lora_alpha, r.lora_dropout, r.target_modules),
        )  # fmt: skip
        trainer.remove_callback(PrinterCallback)  # metrics go to MLflow; one line per log on stderr (ours)
        before = lora_snapshot(trainer.model)
        t0 = time.perf_counter()
        with cpu_threads_for(trainer.model, m.device):  # a tiny model on CPU: one thread is faster
            result = trainer.train()
        seconds = time.perf_counter() - t0
        after = lora_snapshot(trainer.model)
        change = max((float((after[n] - before[n]).abs().max()) for n in before), default=0.0)
        adapter_dir = out / "adapter"
        trainer.model.save_pretrained(adapter_dir)
        model_dir = None
        if r.merge_lora:
            model_dir = save_extractor(trainer.model.merge_and_unload(), loaded.processor, out, base)
        steps = int(result.global_step)
        registered = None
        if model_dir is not None and run_.run:  # the lineage: round 2's attributes name this version
            from afmrl.tracking.registry import register_extractor

            version = register_extractor(run_.client, run_.run_id, model_dir, cfg.registry.extractor_name,
                                         tags={"afmrl.stage": "rar", "afmrl.encoder": str(encoder_ref)})  # fmt: skip
            registered = {"name": cfg.registry.extractor_name, "version": int(version.version)}
        summary = {"base_model": base, "prompts": len(prompts), "gallery": len(retrieval.gallery), "steps": steps,
                   "seconds": seconds, "seconds_per_step": seconds / max(1, steps), "adapter_change": change,
                   "keys": keys, "encoder": str(encoder_ref), "registered": registered,
                   "history": callback.history}  # fmt: skip
        write_json_atomic(out / "rar.json", summary)
        run_.log_metrics({"seconds_per_step": summary["seconds_per_step"], "adapter_change": change})
        run_.log_artifact(out / "rar.json")
    return RARResult(out, adapter_dir, model_dir, len(prompts), len(retrieval.gallery), steps, seconds,
                     summary["seconds_per_step"], change, callback.history)  # fmt: skip
