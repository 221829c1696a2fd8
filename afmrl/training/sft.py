"""SFT warm start of the attribute extractor (trl ``SFTTrainer``): teach the JSON answer format.

Examples are prompt-completion pairs: the extraction prompt of a listing (with its image for a
VLM) and, as the completion, its attributes in the target format (``format_target``: compact
JSON, schema order, only the prompt's keys). The loss is on the completion only. Answers come from
``reference_attributes`` of the ``sft.splits`` listings (default: the train split only, so the
ground truth of val/test never reaches training) or from the seller-stated ``attributes``.

An afmrl tiny model (``afmrl_build.json`` in its folder) is trained with full weights; a pretrained
one with LoRA (``sft.method: auto | lora | full``). LoRA weights are merged on save by default, so the
output folder is a plain model that ``load_mllm`` (and RAR) read. The stage itself (the trainer run,
logged to MLflow) is :mod:`afmrl.stages.sft`; this module holds its building blocks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from afmrl.attributes.prompts import build_messages, format_target
from afmrl.catalog.io import Catalog
from afmrl.catalog.schema import parse_json_object
from afmrl.config import Config


@dataclass
class SFTResult:
    model_dir: Path
    examples: int
    steps: int
    final_loss: float
    seconds: float
    lora: bool
    history: list[dict[str, float]] = field(default_factory=list)


def prompt_image(path: str | Any, max_pixels: int | None = None) -> Any:
    """A listing photo as an RGB PIL image, shrunk (aspect kept) to at most 4 x ``max_pixels``: the
    processor resizes it to ``mllm.max_pixels`` anyway, and the trainer's dataset stores every image
    (PNG-encoded), so a full-size photo only costs time and memory."""
    from PIL import Image

    img = Image.open(path)
    limit = 4 * max_pixels if max_pixels else None
    if limit and img.width * img.height > limit:
        scale = (limit / (img.width * img.height)) ** 0.5
        size = (max(28, round(img.width * scale)), max(28, round(img.height * scale)))
        if img.format == "JPEG":
            img.draft("RGB", size)  # decode at a reduced scale (never below size)
        img = img.convert("RGB")
        img.thumbnail(size)  # keeps the aspect ratio, only shrinks
    return img.convert("RGB")


def sft_rows(catalog: Catalog, df: pd.DataFrame, keys: list[str], *, source: str, with_images: bool,
             max_description_chars: int, max_pixels: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
    """Prompt-completion rows (with ``image`` as a PIL image when ``with_images``)."""

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
            row["image"] = prompt_image(catalog.image_path(r["image"]), max_pixels)
        rows.append(row)
    return rows



def sft_config(cfg: Config, out_dir: str | Path) -> Any:
    """The stage's ``trl.SFTConfig``: ``sft.trl`` (trl's own field names) on the ``mllm.device`` settings,
    plus what afmrl sets itself (the trainer folder, ``sft.seed``)."""
    from trl import SFTConfig

    from afmrl.training.hf import trl_args

    return trl_args(SFTConfig, "sft", cfg.sft.trl, cfg.mllm.device, output_dir=str(Path(out_dir) / "_trainer"),
                    seed=cfg.sft.seed)  # fmt: skip
