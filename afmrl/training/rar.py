"""RAR: Retrieval-Augmented Reinforcement of the attribute extractor (trl ``GRPOTrainer`` + LoRA).

Prompts are the extraction chats of the ``rar.splits`` listings (conversational ``prompt``, the
listing photo in the ``image`` column for a VLM, ``listing_id`` for the rewards). Each prompt gets
``rar.trl.num_generations`` sampled completions; their rewards (``afmrl.training.rewards``: retrieval
improvement under a frozen representation model, plus the JSON format) are standardised within the
group (GRPO advantages). Only LoRA adapters train; ``rar.trl.beta`` > 0 adds the KL to the frozen base
(the adapter switched off) and logs it. Per step, the stage's MLflow run gets trl's logs (loss,
``rewards/retrieval/mean``, ``rewards/format/mean``, ``kl``, ``completions/mean_length``...) plus
``rar/valid_json_rate`` and the reciprocal rank with and without attributes.

Outputs in ``out_dir``: ``adapter/`` (the LoRA adapter), the merged model (``rar.merge_lora``:
weights + processor, a folder ``load_mllm`` reads, so extraction can use the reinforced model) and
``rar.json`` (summary and the logged history). The stage itself (the GRPO run, logged to MLflow) is
:mod:`afmrl.stages.rar`; this module holds its building blocks.

``rar.trl`` is trl's ``GRPOConfig`` by its own field names (:func:`grpo_config`). GRPO rules honoured
(FIELD-NOTES): ``per_device_train_batch_size x gradient_accumulation_steps`` divisible by
``num_generations`` (checked in the config); on CPU ``use_cpu``, no bf16, no gradient checkpointing; rewards graded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from afmrl.attributes.prompts import build_messages
from afmrl.attributes.schema import enhanced_text
from afmrl.catalog.io import Catalog
from afmrl.catalog.schema import parse_json_object
from afmrl.config import Config, RARConfig
from afmrl.models.encoders.base import Encoder
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


def lora_snapshot(model: Any) -> dict[str, Any]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}



def grpo_config(cfg: Config, out_dir: str | Path) -> Any:
    """The stage's ``trl.GRPOConfig``: ``rar.trl`` (trl's own field names) on the ``mllm.device`` settings,
    plus what afmrl sets itself (the trainer folder, ``rar.seed``, the reward weights)."""
    from trl import GRPOConfig

    from afmrl.training.hf import trl_args

    r = cfg.rar
    return trl_args(GRPOConfig, "rar", r.trl, cfg.mllm.device, output_dir=str(Path(out_dir) / "_trainer"),
                    seed=r.seed, reward_weights=[r.retrieval_weight, r.format_weight])  # fmt: skip
