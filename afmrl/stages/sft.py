"""SFT stage: warm-start the attribute extractor on the JSON answer format (trl ``SFTTrainer``).

``run(cfg, catalog_dir, base_model, out_dir)``: ``base_model`` (the tiny stage's folder, any model
folder or a hub id) is fine-tuned on the ``sft.splits`` listings (examples: :func:`afmrl.training.sft.sft_rows`)
and saved to ``out_dir`` (a plain model folder ``load_mllm`` and RAR read) with ``sft.json``; an
afmrl tiny model trains with full weights, a pretrained one with LoRA (``sft.method``). Logged to
MLflow: the params, the per-step loss, the summary.
"""

from __future__ import annotations

import time
from pathlib import Path

from afmrl.atomic import write_json_atomic
from afmrl.catalog.io import read_catalog
from afmrl.config import Config
from afmrl.errors import DataError
from afmrl.tracking.runs import stage_run
from afmrl.training.hf import (
    ConsoleProgressCallback,
    StageRunCallback,
    lora_config,
    save_extractor,
    wants_lora,
)
from afmrl.training.sft import SFTResult, sft_config, sft_rows


def run(cfg: Config, catalog_dir: str | Path, base_model: str | Path, out_dir: str | Path) -> SFTResult:
    """Fine-tune ``base_model`` and save it to ``out_dir``."""
    import datasets
    import torch
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTTrainer

    from afmrl.attributes.schema import resolve_keys
    from afmrl.models.mllm import cpu_threads_for, image_pixel_cap, load_mllm, resolve_model

    s, m = cfg.sft, cfg.mllm
    base = resolve_model(base_model)  # the tiny stage's folder, or the real model its base.json names
    out = Path(out_dir)
    args = sft_config(cfg, out)  # trl's SFTConfig from sft.trl: a bad key fails here, before any loading
    catalog = read_catalog(catalog_dir)
    df = catalog.listings[catalog.listings["split"].isin(s.splits)] if s.splits else catalog.listings
    if s.max_listings is not None:
        df = df.head(s.max_listings)
    keys = resolve_keys(cfg.attributes.keys, catalog.listings)
    loaded = load_mllm(base, min_pixels=m.min_pixels, max_pixels=m.max_pixels, dtype=m.dtype, device=m.device)
    with_images = loaded.is_vlm and m.use_images and df["image"].notna().any()
    rows = sft_rows(catalog, df, keys, source=s.target_source, with_images=bool(with_images),
                    max_description_chars=m.max_description_chars,
                    max_pixels=image_pixel_cap(loaded.processor, m.max_pixels))  # fmt: skip
    if not rows:
        raise DataError(f"no SFT examples: no listing of split(s) {s.splits} has {s.target_source} attributes")
    dataset = datasets.Dataset.from_list(rows)
    use_lora = wants_lora(s.method, base)
    torch.manual_seed(s.seed)
    peft = lora_config(s.lora_r, s.lora_alpha, s.lora_dropout, s.target_modules) if use_lora else None
    with stage_run(cfg.tracking, "sft") as run_:
        run_.log_config(cfg, ("sft", "mllm"), catalog=str(catalog_dir), base_model=base, examples=len(rows),
                        lora=use_lora, keys=keys, with_images=bool(with_images))  # fmt: skip
        callback = StageRunCallback(run_)
        trainer = SFTTrainer(model=loaded.model, args=args, train_dataset=dataset, processing_class=loaded.processor,
                             peft_config=peft, callbacks=[callback, ConsoleProgressCallback("sft")])  # fmt: skip
        trainer.remove_callback(PrinterCallback)  # metrics go to MLflow; one line per log on stderr (ours)
        t0 = time.perf_counter()
        with cpu_threads_for(trainer.model, m.device):  # a tiny model on CPU: one thread is faster
            result = trainer.train()
        seconds = time.perf_counter() - t0
        model = trainer.model
        if use_lora and s.merge_lora:
            model = model.merge_and_unload()
        save_extractor(model, loaded.processor, out, base)
        losses = [h["loss"] for h in callback.history if "loss" in h]
        final = losses[-1] if losses else float(result.training_loss)
        summary = {"base_model": base, "examples": len(rows), "steps": int(result.global_step), "final_loss": final,
                   "seconds": seconds, "lora": use_lora, "keys": keys}  # fmt: skip
        write_json_atomic(out / "sft.json", summary)
        run_.log_metrics({"final_loss": final, "seconds": seconds, "steps_per_s": result.global_step / seconds})
        run_.log_artifact(out / "sft.json")
    return SFTResult(out, len(rows), int(result.global_step), final, seconds, use_lora, callback.history)
