"""SFT warm start of the attribute extractor (trl ``SFTTrainer``): teach the JSON answer format.

Examples are prompt-completion pairs: the extraction prompt of a listing (with its image for a
VLM) and, as the completion, its attributes in the target format (``format_target``: compact
JSON, schema order, only the prompt's keys). The loss is on the completion only. Answers come from
``reference_attributes`` of the ``sft.splits`` listings (default: the train split only, so the
ground truth of val/test never reaches training) or from the seller-stated ``attributes``.

An afmrl tiny model (``afmrl_build.json`` in its folder) is trained with full weights; a pretrained
one with LoRA (``sft.method: auto | lora | full``). LoRA weights are merged on save by default, so the
output folder is a plain model that ``load_mllm`` (and RAR) read.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from afmrl.attributes.prompts import build_messages, format_target
from afmrl.catalog.io import Catalog, read_catalog
from afmrl.catalog.schema import parse_json_object
from afmrl.config import Config
from afmrl.errors import DataError
from afmrl.tracking.runs import stage_run
from afmrl.training.hf import StageRunCallback, lora_config, save_extractor, training_device_args, wants_lora


@dataclass
class SFTResult:
    model_dir: Path
    examples: int
    steps: int
    final_loss: float
    seconds: float
    lora: bool
    history: list[dict[str, float]] = field(default_factory=list)


def sft_rows(catalog: Catalog, df: pd.DataFrame, keys: list[str], *, source: str, with_images: bool,
             max_description_chars: int) -> list[dict[str, Any]]:  # fmt: skip
    """Prompt-completion rows (with ``image`` as a PIL image when ``with_images``)."""
    from PIL import Image

    column = "reference_attributes" if source == "reference" else "attributes"
    rows = []
    for r in df.to_dict("records"):
        attrs = parse_json_object(r[column], record=r["listing_id"], field=column)
        target = format_target(attrs, keys)
        if target == "{}":
            continue
        if with_images and not r["image"]:
            continue
        row: dict[str, Any] = {
            "prompt": build_messages(r["title"], r["description"], keys, max_description_chars=max_description_chars),
            "completion": [{"role": "assistant", "content": target}],
        }
        if with_images:
            row["image"] = Image.open(catalog.image_path(r["image"])).convert("RGB")
        rows.append(row)
    return rows


def run_sft(cfg: Config, catalog_dir: str | Path, out_dir: str | Path | None = None,
            base_model: str | None = None) -> SFTResult:  # fmt: skip
    """Fine-tune ``base_model`` (default ``mllm.model``) and save it to ``out_dir`` (default ``sft.output_dir``)."""
    import datasets
    import torch
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig, SFTTrainer

    from afmrl.models.mllm import load_mllm
    from afmrl.stages.extract import resolve_keys

    s, m = cfg.sft, cfg.mllm
    base = base_model or m.model
    out = Path(out_dir or s.output_dir)
    catalog = read_catalog(catalog_dir)
    df = catalog.listings[catalog.listings["split"].isin(s.splits)] if s.splits else catalog.listings
    if s.max_listings is not None:
        df = df.head(s.max_listings)
    keys = resolve_keys(cfg.attributes.keys, catalog.listings)
    loaded = load_mllm(base, min_pixels=m.min_pixels, max_pixels=m.max_pixels, dtype=m.dtype, device=m.device)
    with_images = loaded.is_vlm and m.use_images and df["image"].notna().any()
    rows = sft_rows(catalog, df, keys, source=s.target_source, with_images=bool(with_images),
                    max_description_chars=m.max_description_chars)  # fmt: skip
    if not rows:
        raise DataError(f"no SFT examples: no listing of split(s) {s.splits} has {s.target_source} attributes")
    dataset = datasets.Dataset.from_list(rows)
    use_lora = wants_lora(s.method, base)
    torch.manual_seed(s.seed)
    args = SFTConfig(
        output_dir=str(out / "_trainer"), per_device_train_batch_size=s.batch_size,
        gradient_accumulation_steps=s.grad_accum, num_train_epochs=s.epochs, max_steps=s.max_steps,
        learning_rate=s.learning_rate, lr_scheduler_type="constant_with_warmup", warmup_steps=0,
        logging_steps=1, seed=s.seed, max_length=None, completion_only_loss=True,
        **training_device_args(m.device),
    )  # fmt: skip
    peft = lora_config(s.lora_r, s.lora_alpha, s.lora_dropout, s.target_modules) if use_lora else None
    with stage_run(cfg.tracking, "sft") as run_:
        run_.log_params({"catalog": str(catalog_dir), "base_model": base, "examples": len(rows), "lora": use_lora,
                         "keys": ",".join(keys), "with_images": bool(with_images),
                         **{f"sft.{k}": v for k, v in s.model_dump().items()}})  # fmt: skip
        callback = StageRunCallback(run_)
        trainer = SFTTrainer(model=loaded.model, args=args, train_dataset=dataset, processing_class=loaded.processor,
                             peft_config=peft, callbacks=[callback])  # fmt: skip
        trainer.remove_callback(PrinterCallback)  # metrics go to MLflow, not stdout
        t0 = time.perf_counter()
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
        (out / "sft.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        run_.log_metrics({"final_loss": final, "seconds": seconds, "steps_per_s": result.global_step / seconds})
        run_.log_artifact(out / "sft.json")
    return SFTResult(out, len(rows), int(result.global_step), final, seconds, use_lora, callback.history)
