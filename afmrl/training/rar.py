"""RAR: Retrieval-Augmented Reinforcement of the attribute extractor (trl ``GRPOTrainer`` + LoRA).

Prompts are the extraction chats of the ``rar.splits`` listings (conversational ``prompt``, the
listing photo in the ``image`` column for a VLM, ``listing_id`` for the rewards). Each step takes
``per_device_train_batch_size x gradient_accumulation_steps / num_generations`` prompts (default 32 / 4
= 8) and samples ``rar.trl.num_generations`` completions for each; their rewards
(``afmrl.training.rewards``: retrieval improvement under the frozen AGCL encoder of the same run, the
photo on the query side, plus the JSON format) are standardised within the group (GRPO advantages).
Only LoRA adapters train; ``rar.trl.beta`` > 0 adds the KL to the frozen base (the adapter switched off)
and logs it. Per step, the stage's MLflow run gets trl's logs (loss, ``rewards/retrieval/mean``,
``rewards/format/mean``, ``kl``, ``completions/mean_length``...) plus ``rar/valid_json_rate``, the
reciprocal rank with and without attributes, ``rar/reward_group_std`` (the weighted reward's spread
within each group: zero means no gradient) and ``rar/adapter_max_abs_delta`` /
``rar/adapter_mean_abs_delta`` (how far the LoRA weights moved from their start). Training stops early
when the mean reward has not gained ``rar.min_delta`` for ``rar.patience`` logged steps.

After training, the reward's alignment is checked on held-out listings (``rar.heldout_split``): the
trained extractor samples answers, and the Spearman / Pearson correlation between each answer's
reward and its attribute F1 against ``reference_attributes`` goes to ``rar.json`` (``alignment``).

Outputs in ``out_dir``: ``adapter/`` (the LoRA adapter), the merged model (``rar.merge_lora``:
weights + processor, a folder ``load_mllm`` reads, so extraction can use the reinforced model) and
``rar.json`` (summary and the logged history). The stage itself (the GRPO run, logged to MLflow) is
:mod:`afmrl.stages.rar`; this module holds its building blocks.

``rar.trl`` is trl's ``GRPOConfig`` by its own field names (:func:`grpo_config`). GRPO rules honoured
(FIELD-NOTES): ``per_device_train_batch_size x gradient_accumulation_steps`` divisible by
``num_generations`` (checked in the config); on CPU ``use_cpu``, no bf16, no gradient checkpointing; rewards graded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from transformers import TrainerCallback

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
    alignment: dict[str, Any] | None = None
    stopped_early: bool = False
    prompts_per_step: int = 0


def _text(value: Any) -> str | None:
    """A text cell as text; null / NaN (a photo without a title) as None."""
    return value if isinstance(value, str) else None


def gallery_splits(catalog: Catalog, r: RARConfig) -> list[str] | None:
    """``rar.gallery_splits``, or (null) the catalogue's ``gallery`` listings where it has them, else the
    prompt splits (``rar.splits``; None: every listing)."""
    if r.gallery_splits is not None:
        return r.gallery_splits
    if (catalog.listings["split"] == "gallery").any():
        return ["gallery"]
    return r.splits or None


def _gallery_frame(catalog: Catalog, prompts: pd.DataFrame, r: RARConfig) -> pd.DataFrame:
    """Gallery listings: the prompts' products (or the prompts themselves), then seeded distractors."""
    df = catalog.listings
    splits = gallery_splits(catalog, r)
    pool = df[df["split"].isin(splits)] if splits else df
    if r.target == "self":
        must = df[df["listing_id"].isin(prompts["listing_id"])]
    else:
        must = pool[pool["product_id"].isin(prompts["product_id"].dropna())]
    rest = pool[~pool["listing_id"].isin(must["listing_id"])]
    room = max(0, (r.gallery_size or len(must) + len(rest)) - len(must))
    if len(rest) > room:
        rest = rest.sample(n=room, random_state=r.seed)
    gallery = pd.concat([must, rest]).drop_duplicates("listing_id").reset_index(drop=True)
    if r.gallery_modality == "image":
        gallery = gallery[gallery["image"].notna()].reset_index(drop=True)
    return gallery


def gallery_texts(g: pd.DataFrame, r: RARConfig) -> list[str]:
    """A gallery listing's text: its title and its shop-stated ``attributes`` (``rar.gallery_attributes``),
    never its ``reference_attributes`` (the labels the extractor is evaluated against)."""
    return [enhanced_text(_text(t), parse_json_object(a) if r.gallery_attributes == "provided" else {})
            for t, a in zip(g["title"], g["attributes"], strict=True)]  # fmt: skip


def build_reward_setup(catalog: Catalog, prompts: pd.DataFrame, r: RARConfig, encoder: Encoder,
                       stats: RewardStats | None = None,
                       keys: Sequence[str] | None = None) -> tuple[RetrievalReward, FormatReward, pd.DataFrame]:  # fmt: skip
    """The two reward functions and the prompts that can be scored (their target is in the gallery)."""
    g = _gallery_frame(catalog, prompts, r)
    images = [catalog.image_path(p) if isinstance(p, str) and p else None for p in g["image"]]
    gallery = Gallery.build(encoder, list(g["listing_id"]), list(g["product_id"]), texts=gallery_texts(g, r),
                            images=images, modality=r.gallery_modality)  # fmt: skip
    queries = {row["listing_id"]: QueryListing(row["listing_id"], _text(row["title"]), row["product_id"],
                                               catalog.image_path(row["image"]) if isinstance(row["image"], str)
                                               and row["image"] else None)
               for row in prompts.to_dict("records")}  # fmt: skip
    retrieval = RetrievalReward(encoder, gallery, queries, target=r.target, margin_weight=r.margin_weight,
                                stats=stats, query_modality=r.query_modality, invalid_reward=r.invalid_reward)  # fmt: skip
    scorable = prompts[[retrieval.scorable(lid) for lid in prompts["listing_id"]]].reset_index(drop=True)
    return retrieval, FormatReward(stats=stats, keys=keys), scorable


def prompt_rows(catalog: Catalog, prompts: pd.DataFrame, keys: list[str], with_images: bool,
                max_description_chars: int, max_pixels: int | None = None) -> list[dict[str, Any]]:  # fmt: skip
    from afmrl.training.sft import prompt_image

    rows = []
    for row in prompts.to_dict("records"):
        item: dict[str, Any] = {
            "prompt": build_messages(_text(row["title"]), _text(row["description"]), keys,
                                     max_description_chars=max_description_chars),
            "listing_id": row["listing_id"],
        }
        if with_images:
            item["image"] = prompt_image(catalog.image_path(row["image"]), max_pixels)
        rows.append(item)
    return rows


def lora_snapshot(model: Any) -> dict[str, Any]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def adapter_delta(before: dict[str, Any], model: Any) -> tuple[float, float]:
    """(max, mean) |delta W| of the LoRA weights since ``before`` (:func:`lora_snapshot`)."""
    now = dict(model.named_parameters())
    diffs = [(now[n].detach() - w).abs() for n, w in before.items() if n in now]
    if not diffs:
        return 0.0, 0.0
    total = sum(float(d.sum()) for d in diffs)
    count = sum(d.numel() for d in diffs)
    return max(float(d.max()) for d in diffs), total / max(1, count)


class AdapterChangeCallback(TrainerCallback):
    """After each optimiser step, how far the LoRA weights moved from their start (for the step's log)."""

    def __init__(self) -> None:
        self.before: dict[str, Any] = {}
        self.latest: dict[str, float] = {}
        self._model: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        self._model = model
        self.before = lora_snapshot(model)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        mx, mean = adapter_delta(self.before, model if model is not None else self._model)
        self.latest = {"rar/adapter_max_abs_delta": mx, "rar/adapter_mean_abs_delta": mean}

    def pop(self) -> dict[str, float]:
        out, self.latest = self.latest, {}
        return out


class PlateauStop:
    """Early stop when the logged mean reward has not gained ``min_delta`` over its best for ``patience``
    logs in a row (a 3-log moving mean smooths the sampling noise). ``patience`` 0: never."""

    def __init__(self, patience: int, min_delta: float, window: int = 3) -> None:
        self.patience, self.min_delta, self.window = patience, min_delta, window
        self.rewards: list[float] = []
        self.best = -float("inf")
        self.waited = 0
        self.stopped_at: int | None = None

    def update(self, reward: float, step: int) -> bool:
        """Record one logged reward; True when training should stop."""
        self.rewards.append(float(reward))
        smoothed = float(np.mean(self.rewards[-self.window:]))
        if smoothed > self.best + self.min_delta:
            self.best, self.waited = smoothed, 0
        else:
            self.waited += 1
        if self.patience and self.waited >= self.patience and self.stopped_at is None:
            self.stopped_at = step
        return self.stopped_at is not None


class PlateauCallback(TrainerCallback):
    """Stops trl's loop (``control.should_training_stop``) when :class:`PlateauStop` says so."""

    def __init__(self, plateau: PlateauStop) -> None:
        self.plateau = plateau

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        reward = (logs or {}).get("reward")
        if isinstance(reward, int | float) and self.plateau.update(reward, int(state.global_step)):
            control.should_training_stop = True


def step_extras(stats: RewardStats, adapter: AdapterChangeCallback) -> Callable[[], dict[str, float]]:
    """What the stage adds to each trainer log: the rewards' own numbers and the adapter change."""
    return lambda: {**stats.pop_means(), **adapter.pop()}


def answer_f1(pred: dict[str, str], ref: dict[str, str], keys: Sequence[str]) -> float:
    """Micro F1 of one answer against its reference over ``keys`` (normalised values; 1.0 when both are empty)."""
    from afmrl.attributes.schema import DEFAULT_SCHEMA

    p = {k: v for k, v in DEFAULT_SCHEMA.normalize(pred).items() if k in keys}
    r = {k: v for k, v in DEFAULT_SCHEMA.normalize(ref).items() if k in keys}
    tp = sum(1 for k, v in p.items() if r.get(k) == v)
    if not p and not r:
        return 1.0
    return 2 * tp / (len(p) + len(r))


def correlations(rewards: Sequence[float], f1s: Sequence[float]) -> dict[str, float | None]:
    """Spearman (Pearson of average ranks) and Pearson correlation of reward and F1 (None where either is
    constant or there are fewer than 3 answers)."""
    x, y = np.asarray(rewards, dtype=float), np.asarray(f1s, dtype=float)
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {"spearman": None, "pearson": None}
    rx, ry = pd.Series(x).rank().to_numpy(), pd.Series(y).rank().to_numpy()  # ties: average ranks
    return {"spearman": float(np.corrcoef(rx, ry)[0, 1]), "pearson": float(np.corrcoef(x, y)[0, 1])}


def reward_alignment(retrieval: RetrievalReward, fmt: FormatReward, weights: tuple[float, float],
                     answers: Sequence[tuple[str, str]], references: dict[str, dict[str, str]],
                     keys: Sequence[str]) -> dict[str, Any]:  # fmt: skip
    """Score held-out ``(listing_id, answer text)`` pairs with the training reward and their attribute F1
    against ``references``; the correlations say whether a higher reward means better attributes."""
    from afmrl.attributes.parse import parse_detailed

    ids = [lid for lid, _ in answers if retrieval.scorable(lid)]
    texts = [t for lid, t in answers if retrieval.scorable(lid)]
    parsed = [parse_detailed(t, retrieval.schema).attrs for t in texts]
    r_ret = retrieval.rewards(ids, parsed)
    r_fmt = [fmt.score(t)[0] for t in texts]
    total = [weights[0] * a + weights[1] * b for a, b in zip(r_ret, r_fmt, strict=True)]
    f1 = [answer_f1(p, references.get(lid, {}), keys) for lid, p in zip(ids, parsed, strict=True)]
    return {"answers": len(ids), "listings": len(set(ids)), "mean_reward": float(np.mean(total)) if total else None,
            "mean_f1": float(np.mean(f1)) if f1 else None, **correlations(total, f1),
            "retrieval_only": correlations(r_ret, f1)}  # fmt: skip


def grpo_config(cfg: Config, out_dir: str | Path) -> Any:
    """The stage's ``trl.GRPOConfig``: ``rar.trl`` (trl's own field names) on the ``mllm.device`` settings,
    plus what afmrl sets itself (the trainer folder, ``rar.seed``, the reward weights)."""
    from trl import GRPOConfig

    from afmrl.training.hf import trl_args

    r = cfg.rar
    return trl_args(GRPOConfig, "rar", r.trl, cfg.mllm.device, output_dir=str(Path(out_dir) / "_trainer"),
                    seed=r.seed, reward_weights=[r.retrieval_weight, r.format_weight])  # fmt: skip


def prompts_per_step(args: Any) -> int:
    """Prompts (GRPO groups) per optimisation step: the completions one step trains on (per-device batch x
    processes x accumulation) over the group size."""
    return int(args.per_device_train_batch_size * max(1, args.world_size) * args.gradient_accumulation_steps
               // args.num_generations)


def sample_answers(loaded: Any, mllm: Any, keys: Sequence[str], catalog: Catalog, listings: pd.DataFrame,
                   samples: int, seed: int) -> list[tuple[str, str]]:  # fmt: skip
    """``samples`` sampled answers (plus the greedy one) of the extractor for each listing: ``(listing_id, text)``."""
    from afmrl.attributes.extractors.mllm import ListingInput, MLLMExtractor

    items = [ListingInput(row["listing_id"], _text(row["title"]), _text(row["description"]),
                          catalog.image_path(row["image"]) if isinstance(row["image"], str) and row["image"] else None)
             for row in listings.to_dict("records")]  # fmt: skip
    out: list[tuple[str, str]] = []
    settings = [{"do_sample": False}] + [{"do_sample": True, "temperature": 1.0, "top_p": 1.0, "top_k": 0,
                                          "seed": seed + i} for i in range(samples)]  # fmt: skip
    for setting in settings:
        extractor = MLLMExtractor(loaded, mllm.model_copy(update=setting), keys)
        out += [(g.listing_id, g.raw) for g in extractor.generate(items)]
    return out
