"""RAR stage: reinforce the attribute extractor with GRPO + LoRA, reward = retrieval improvement.

``run(cfg, catalog_dir, base_model, encoder, out_dir)``: the extractor ``base_model`` (the SFT stage's
folder) is trained with LoRA on the ``rar.splits`` prompts; the reward comes from the frozen
representation model ``encoder``: the AGCL encoder the train stage wrote in the same run (dvc.yaml and
the pipeline pass its folder). Run alone without one (``encoder=None``), the stage takes the encoder
the registry's lineage names: ``models:/<registry.encoder_name>@<registry.champion_alias>``.
``pretrained`` (the untrained towers) is accepted for experiments and says so in ``rar.json``.
Building blocks, outputs and logged metrics: :mod:`afmrl.training.rar`.
With tracking on, the merged extractor is registered as a version of ``registry.extractor_name`` and
``rar.json`` records it (``registered``: the lineage round 2's extraction carries on).
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from afmrl.atomic import write_json_atomic
from afmrl.catalog.io import Catalog, read_catalog
from afmrl.config import Config
from afmrl.errors import DataError
from afmrl.models.encoders.base import Encoder
from afmrl.tracking.runs import stage_run
from afmrl.training.hf import ConsoleProgressCallback, StageRunCallback, lora_config, save_extractor
from afmrl.training.rar import (
    AdapterChangeCallback,
    PlateauCallback,
    PlateauStop,
    RARResult,
    adapter_delta,
    build_reward_setup,
    grpo_config,
    prompt_rows,
    prompts_per_step,
    reward_alignment,
    sample_answers,
    step_extras,
)
from afmrl.training.rewards import RewardStats


def reward_encoder_ref(cfg: Config, encoder: str | Path | None) -> str:
    """The encoder reference the reward uses: the one given, else the registry's champion (the lineage)."""
    if encoder is None or str(encoder) == "":
        return f"models:/{cfg.registry.encoder_name}@{cfg.registry.champion_alias}"
    return str(encoder)


def _alignment(cfg: Config, catalog: Catalog, loaded: Any, model: Any, keys: list[str], encoder: Encoder) -> dict | None:
    """Reward vs attribute F1 on ``rar.heldout_split`` listings with reference attributes (None: none there)."""
    from afmrl.catalog.schema import parse_json_object
    from afmrl.models.mllm import LoadedMLLM

    r = cfg.rar
    df = catalog.listings
    held = df[(df["split"] == r.heldout_split) & (df["reference_attributes"].fillna("{}") != "{}")]
    if held.empty:
        return None
    if loaded.is_vlm and cfg.mllm.use_images:
        held = held[held["image"].notna()]
    held = held.sample(n=min(len(held), r.heldout_listings), random_state=r.seed).reset_index(drop=True)
    splits = ["gallery"] if (df["split"] == "gallery").any() else [r.heldout_split]
    r_held = r.model_copy(update={"gallery_splits": splits})
    retrieval, fmt, scorable = build_reward_setup(catalog, held, r_held, encoder, keys=keys)
    if scorable.empty:
        return None
    gen = LoadedMLLM(model=model, processor=loaded.processor, is_vlm=loaded.is_vlm, name="rar", fingerprint="rar")
    answers = sample_answers(gen, cfg.mllm, keys, catalog, scorable, samples=3, seed=r.seed)
    refs = {lid: parse_json_object(a) for lid, a in zip(held["listing_id"], held["reference_attributes"], strict=True)}
    return {"split": r.heldout_split,
            **reward_alignment(retrieval, fmt, (r.retrieval_weight, r.format_weight), answers, refs, keys)}


def run(cfg: Config, catalog_dir: str | Path, base_model: str | Path, encoder: str | Path | Encoder | None,
        out_dir: str | Path) -> RARResult:  # fmt: skip
    """``encoder``: any reference :func:`~afmrl.models.encoders.load_encoder` takes (an encoder folder,
    ``models:/afmrl-encoder@champion``, ``pretrained``), an :class:`~afmrl.models.encoders.base.Encoder`,
    or None: the registry's champion."""
    import datasets
    import torch
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOTrainer

    from afmrl.attributes.schema import resolve_keys
    from afmrl.models.encoders import load_encoder
    from afmrl.models.mllm import cpu_threads_for, image_pixel_cap, load_mllm

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
    if isinstance(encoder, Encoder):
        encoder_ref = type(encoder).__name__
    else:
        encoder_ref = reward_encoder_ref(cfg, encoder)
        encoder = load_encoder(encoder_ref, cfg.encoder, cfg.tracking)
    prompts = prompts.reset_index(drop=True)
    if r.max_prompts is not None and len(prompts) > r.max_prompts:  # before the gallery: it holds their products
        keep = sorted(random.Random(r.seed).sample(range(len(prompts)), r.max_prompts))
        prompts = prompts.iloc[keep].reset_index(drop=True)
    stats = RewardStats({"retrieval": r.retrieval_weight, "format": r.format_weight})
    retrieval, fmt, prompts = build_reward_setup(catalog, prompts, r, encoder, stats, keys)
    if prompts.empty:
        raise DataError(f"no RAR prompt can be scored: no listing of {r.splits} has a target ({r.target}) in the "
                        f"gallery (splits {r.gallery_splits})", field="rar.target")  # fmt: skip
    rows = prompt_rows(catalog, prompts, keys, with_images, m.max_description_chars,
                       image_pixel_cap(loaded.processor, m.max_pixels))
    if len(rows) < prompts_per_step(args):  # trl drops an incomplete batch of prompts: repeat the few there are
        rows = (rows * -(-prompts_per_step(args) // len(rows)))[: prompts_per_step(args)]
    dataset = datasets.Dataset.from_list(rows)
    photo_queries = sum(retrieval.uses_photo(lid) for lid in prompts["listing_id"])
    torch.manual_seed(r.seed)
    with stage_run(cfg.tracking, "rar") as run_:
        run_.log_config(cfg, ("rar", "mllm"), catalog=str(catalog_dir), base_model=base, encoder=str(encoder_ref),
                        prompts=len(prompts), gallery=len(retrieval.gallery), keys=keys, with_images=with_images,
                        photo_queries=photo_queries, prompts_per_step=prompts_per_step(args))  # fmt: skip
        adapter = AdapterChangeCallback()
        plateau = PlateauStop(r.patience, r.min_delta)
        callback = StageRunCallback(run_, extras=step_extras(stats, adapter))
        trainer = GRPOTrainer(
            model=loaded.model, reward_funcs=[retrieval, fmt], args=args, train_dataset=dataset,
            processing_class=loaded.processor,
            callbacks=[adapter, callback, PlateauCallback(plateau), ConsoleProgressCallback("rar")],
            peft_config=lora_config(r.lora_r, r.lora_alpha, r.lora_dropout, r.target_modules),
        )  # fmt: skip
        trainer.remove_callback(PrinterCallback)  # metrics go to MLflow; one line per log on stderr (ours)
        t0 = time.perf_counter()
        with cpu_threads_for(trainer.model, m.device):  # a tiny model on CPU: one thread is faster
            result = trainer.train()
        seconds = time.perf_counter() - t0
        change, mean_change = adapter_delta(adapter.before, trainer.model)
        adapter_dir = out / "adapter"
        trainer.model.save_pretrained(adapter_dir)
        model_dir = None
        model = trainer.model
        if r.merge_lora:
            model = trainer.model.merge_and_unload()
            model_dir = save_extractor(model, loaded.processor, out, base)
        steps = int(result.global_step)
        alignment = None
        if r.heldout_split:
            model.eval()
            with cpu_threads_for(model, m.device):
                alignment = _alignment(cfg, catalog, loaded, model, keys, encoder)
        registered = None
        if model_dir is not None and run_.run:  # the lineage: round 2's attributes name this version
            from afmrl.tracking.registry import register_extractor

            version = register_extractor(run_.client, run_.run_id, model_dir, cfg.registry.extractor_name,
                                         tags={"afmrl.stage": "rar", "afmrl.encoder": str(encoder_ref)})  # fmt: skip
            registered = {"name": cfg.registry.extractor_name, "version": int(version.version)}
        summary = {"base_model": base, "prompts": len(prompts), "gallery": len(retrieval.gallery), "steps": steps,
                   "prompts_per_step": prompts_per_step(args), "num_generations": args.num_generations,
                   "photo_queries": photo_queries, "seconds": seconds, "seconds_per_step": seconds / max(1, steps),
                   "adapter_change": change, "adapter_mean_change": mean_change,
                   "stopped_early": plateau.stopped_at is not None and steps < args.max_steps,
                   "keys": keys, "encoder": str(encoder_ref), "registered": registered, "alignment": alignment,
                   "history": callback.history}  # fmt: skip
        write_json_atomic(out / "rar.json", summary)
        flat = {"seconds_per_step": summary["seconds_per_step"], "adapter_change": change,
                "adapter_mean_change": mean_change}  # fmt: skip
        for k in ("spearman", "pearson"):
            if alignment and alignment.get(k) is not None:
                flat[f"alignment_{k}"] = alignment[k]
        run_.log_metrics(flat)
        run_.log_artifact(out / "rar.json")
    return RARResult(out, adapter_dir, model_dir, len(prompts), len(retrieval.gallery), steps, seconds,
                     summary["seconds_per_step"], change, callback.history, alignment,
                     summary["stopped_early"], prompts_per_step(args))  # fmt: skip
