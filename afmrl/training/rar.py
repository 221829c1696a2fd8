"""RAR: Retrieval-Augmented Reinforcement of the attribute extractor (trl ``GRPOTrainer`` + LoRA).

Prompts are the extraction chats of the ``rar.splits`` listings (conversational ``prompt``, the
listing photo in the ``image`` column for a VLM, ``listing_id`` for the rewards). Each prompt gets
``rar.num_generations`` sampled completions; their rewards (``afmrl.training.rewards``: retrieval
improvement under a frozen representation model, plus the JSON format) are standardised within the
group (GRPO advantages). Only LoRA adapters train; ``rar.beta`` > 0 adds the KL to the frozen base
(the adapter switched off) and logs it. Per step, the stage's MLflow run gets trl's logs (loss,
``rewards/retrieval/mean``, ``rewards/format/mean``, ``kl``, ``completions/mean_length``...) plus
``rar/valid_json_rate`` and the reciprocal rank with and without attributes.

Outputs in ``out_dir``: ``adapter/`` (the LoRA adapter), the merged model (``rar.merge_lora``:
weights + processor, a folder ``load_mllm`` reads, so extraction can use the reinforced model) and
``rar.json`` (summary and the logged history).

GRPO rules honoured (FIELD-NOTES): ``batch_size x grad_accum`` divisible by ``num_generations``
(checked in the config); on CPU ``use_cpu``, no bf16, no gradient checkpointing; rewards graded.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from afmrl.attributes.prompts import build_messages
from afmrl.attributes.schema import enhanced_text
from afmrl.catalog.io import Catalog, read_catalog
from afmrl.catalog.schema import parse_json_object
from afmrl.config import Config, RARConfig
from afmrl.errors import DataError
from afmrl.models.encoders.base import Encoder
from afmrl.tracking.runs import stage_run
from afmrl.training.hf import StageRunCallback, lora_config, save_extractor, training_device_args
from afmrl.training.rewards import FormatReward, Gallery, QueryListing, RetrievalReward, RewardStats


@dataclass
class RARResult:
    out_dir: Path
    adapter_dir: Path
    model_dir: Path | None
    prompts: int
    gallery: int
    steps: int
    seconds: float
    seconds_per_step: float
    adapter_change: float  # max |delta| over the LoRA weights: 0 means nothing was learned
    history: list[dict[str, float]] = field(default_factory=list)


def _gallery_frame(catalog: Catalog, prompts: pd.DataFrame, r: RARConfig) -> pd.DataFrame:
    """Gallery listings: the prompts' products (or the prompts themselves), then seeded distractors."""
    df = catalog.listings
    pool = df[df["split"].isin(r.gallery_splits)] if r.gallery_splits else df
    if r.target == "self":
        must = df[df["listing_id"].isin(prompts["listing_id"])]
    else:
        must = pool[pool["product_id"].isin(prompts["product_id"].dropna())]
    rest = pool[~pool["listing_id"].isin(must["listing_id"])]
    room = max(0, (r.gallery_size or len(must) + len(rest)) - len(must))
    if len(rest) > room:
        rest = rest.sample(n=room, random_state=r.seed)
    gallery = pd.concat([must, rest]).drop_duplicates("listing_id").reset_index(drop=True)
    if r.gallery_modality in ("image", "listing"):
        gallery = gallery[gallery["image"].notna()].reset_index(drop=True)
    return gallery


def build_reward_setup(catalog: Catalog, prompts: pd.DataFrame, r: RARConfig, encoder: Encoder,
                       stats: RewardStats | None = None) -> tuple[RetrievalReward, FormatReward, pd.DataFrame]:  # fmt: skip
    """The two reward functions and the prompts that can be scored (their target is in the gallery)."""
    g = _gallery_frame(catalog, prompts, r)
    texts = [enhanced_text(t, parse_json_object(a) if r.gallery_attributes == "provided" else {})
             for t, a in zip(g["title"], g["attributes"], strict=True)]  # fmt: skip
    images = [catalog.image_path(p) if p else None for p in g["image"]]
    gallery = Gallery.build(encoder, list(g["listing_id"]), list(g["product_id"]), texts=texts, images=images,
                            modality=r.gallery_modality)  # fmt: skip
    queries = {row["listing_id"]: QueryListing(row["listing_id"], row["title"], row["product_id"])
               for row in prompts.to_dict("records")}  # fmt: skip
    retrieval = RetrievalReward(encoder, gallery, queries, target=r.target, margin_weight=r.margin_weight,
                                stats=stats)  # fmt: skip
    scorable = prompts[[retrieval.scorable(lid) for lid in prompts["listing_id"]]].reset_index(drop=True)
    return retrieval, FormatReward(stats=stats), scorable


def prompt_rows(catalog: Catalog, prompts: pd.DataFrame, keys: list[str], with_images: bool,
                max_description_chars: int) -> list[dict[str, Any]]:  # fmt: skip
    from PIL import Image

    rows = []
    for row in prompts.to_dict("records"):
        item: dict[str, Any] = {
            "prompt": build_messages(row["title"], row["description"], keys, max_description_chars=max_description_chars),
            "listing_id": row["listing_id"],
        }
        if with_images:
            item["image"] = Image.open(catalog.image_path(row["image"])).convert("RGB")
        rows.append(item)
    return rows


def _lora_snapshot(model: Any) -> dict[str, Any]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def run_rar(cfg: Config, catalog_dir: str | Path, out_dir: str | Path | None = None, *,
            base_model: str | None = None, encoder: Encoder | None = None) -> RARResult:  # fmt: skip
    import datasets
    import torch
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOConfig, GRPOTrainer

    from afmrl.models.mllm import load_mllm
    from afmrl.stages.extract import resolve_keys
    from afmrl.training.reward_encoder import load_reward_encoder

    r, m = cfg.rar, cfg.mllm
    base = base_model or r.base_model or cfg.sft.output_dir
    out = Path(out_dir or r.output_dir)
    catalog = read_catalog(catalog_dir)
    keys = resolve_keys(cfg.attributes.keys, catalog.listings)
    loaded = load_mllm(base, min_pixels=m.min_pixels, max_pixels=m.max_pixels, dtype=m.dtype, device=m.device)
    df = catalog.listings
    prompts = df[df["split"].isin(r.splits)] if r.splits else df
    with_images = bool(loaded.is_vlm and m.use_images and prompts["image"].notna().any())
    if with_images:
        prompts = prompts[prompts["image"].notna()]
    encoder = encoder or load_reward_encoder(r.encoder, cfg.encoder)
    stats = RewardStats()
    retrieval, fmt, prompts = build_reward_setup(catalog, prompts.reset_index(drop=True), r, encoder, stats)
    if r.max_prompts is not None and len(prompts) > r.max_prompts:
        keep = sorted(random.Random(r.seed).sample(range(len(prompts)), r.max_prompts))
        prompts = prompts.iloc[keep].reset_index(drop=True)
    if prompts.empty:
        raise DataError(f"no RAR prompt can be scored: no listing of {r.splits} has a target ({r.target}) in the "
                        f"gallery (splits {r.gallery_splits})", field="rar.target")  # fmt: skip
    dataset = datasets.Dataset.from_list(prompt_rows(catalog, prompts, keys, with_images, m.max_description_chars))
    args = GRPOConfig(
        output_dir=str(out / "_trainer"), per_device_train_batch_size=r.batch_size,
        gradient_accumulation_steps=r.grad_accum, num_generations=r.num_generations,
        max_completion_length=r.max_completion_length, max_steps=r.max_steps, learning_rate=r.learning_rate,
        beta=r.beta, temperature=r.temperature, top_p=r.top_p, loss_type=r.loss_type,
        reward_weights=[r.retrieval_weight, r.format_weight], logging_steps=r.logging_steps, seed=r.seed,
        log_completions=False, **training_device_args(m.device),
    )  # fmt: skip
    torch.manual_seed(r.seed)
    with stage_run(cfg.tracking, "rar") as run_:
        run_.log_params({"catalog": str(catalog_dir), "base_model": base, "prompts": len(prompts),
                         "gallery": len(retrieval.gallery), "keys": ",".join(keys), "with_images": with_images,
                         **{f"rar.{k}": v for k, v in r.model_dump().items()}})  # fmt: skip
        callback = StageRunCallback(run_, extras=stats.pop_means)
        trainer = GRPOTrainer(
            model=loaded.model, reward_funcs=[retrieval, fmt], args=args, train_dataset=dataset,
            processing_class=loaded.processor, callbacks=[callback],
            peft_config=lora_config(r.lora_r, r.lora_alpha, r.lora_dropout, r.target_modules),
        )  # fmt: skip
        trainer.remove_callback(PrinterCallback)  # metrics go to MLflow, not stdout
        before = _lora_snapshot(trainer.model)
        t0 = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - t0
        after = _lora_snapshot(trainer.model)
        change = max((float((after[n] - before[n]).abs().max()) for n in before), default=0.0)
        adapter_dir = out / "adapter"
        trainer.model.save_pretrained(adapter_dir)
        model_dir = None
        if r.merge_lora:
            model_dir = save_extractor(trainer.model.merge_and_unload(), loaded.processor, out, base)
        steps = int(result.global_step)
        summary = {"base_model": base, "prompts": len(prompts), "gallery": len(retrieval.gallery), "steps": steps,
                   "seconds": seconds, "seconds_per_step": seconds / max(1, steps), "adapter_change": change,
                   "keys": keys, "history": callback.history}  # fmt: skip
        (out / "rar.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        run_.log_metrics({"seconds_per_step": summary["seconds_per_step"], "adapter_change": change})
        run_.log_artifact(out / "rar.json")
    return RARResult(out, adapter_dir, model_dir, len(prompts), len(retrieval.gallery), steps, seconds,
                     summary["seconds_per_step"], change, callback.history)  # fmt: skip
