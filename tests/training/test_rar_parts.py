"""RAR's building blocks that need no trainer: plateau stop, adapter change, alignment, encoder reference,
the gallery's texts and splits, the GRPO batch (prompts per step)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from afmrl.config import load_config
from afmrl.training.rar import (
    PlateauStop,
    adapter_delta,
    answer_f1,
    correlations,
    gallery_splits,
    gallery_texts,
    grpo_config,
    lora_snapshot,
    prompts_per_step,
)


def test_plateau_stops_after_patience_logs_without_gain():
    p = PlateauStop(patience=3, min_delta=0.01, window=1)
    rising = [p.update(r, i) for i, r in enumerate([0.0, 0.1, 0.2, 0.3])]
    assert not any(rising)
    flat = [p.update(0.3, 4 + i) for i in range(3)]
    assert flat == [False, False, True] and p.stopped_at == 6
    never = PlateauStop(patience=0, min_delta=0.01)
    assert not any(never.update(0.0, i) for i in range(20))


def test_adapter_delta_measures_the_lora_weights_only():
    model = torch.nn.Module()
    model.lora_A = torch.nn.Parameter(torch.zeros(2, 2))
    model.base = torch.nn.Parameter(torch.zeros(2, 2))
    before = lora_snapshot(model)
    assert list(before) == ["lora_A"] and adapter_delta(before, model) == (0.0, 0.0)
    with torch.no_grad():
        model.lora_A[0, 0] = 0.4
        model.base += 9.0
    mx, mean = adapter_delta(before, model)
    assert mx == pytest.approx(0.4) and mean == pytest.approx(0.1)


def test_answer_f1_and_correlations():
    keys = ["brand", "colour", "size"]
    ref = {"brand": "Norvik", "colour": "red"}
    assert answer_f1({"brand": "norvik", "colour": "red"}, ref, keys) == pytest.approx(1.0)
    assert answer_f1({"brand": "norvik", "colour": "blue"}, ref, keys) == pytest.approx(0.5)
    assert answer_f1({}, ref, keys) == 0.0
    c = correlations([0.1, 0.2, 0.3, 0.9], [0.0, 0.5, 0.6, 1.0])
    assert c["spearman"] == pytest.approx(1.0) and 0.8 < c["pearson"] <= 1.0
    assert correlations([1.0, 1.0, 1.0], [0.0, 0.5, 1.0]) == {"spearman": None, "pearson": None}


def test_reward_encoder_is_the_given_one_or_the_registry_champion():
    from afmrl.stages.rar import reward_encoder_ref

    cfg = load_config(None, ["registry.encoder_name=enc", "registry.champion_alias=best"])
    assert reward_encoder_ref(cfg, "outputs/rounds/1/encoder") == "outputs/rounds/1/encoder"
    assert reward_encoder_ref(cfg, None) == "models:/enc@best"


def test_gallery_uses_the_catalogue_and_never_reference_attributes():
    from afmrl.catalog.io import Catalog

    listings = pd.DataFrame({
        "listing_id": ["p1", "c1"], "product_id": ["a", "a"], "title": [None, "Arla milk"],
        "attributes": ["{}", '{"brand": "Arla"}'], "split": ["train", "gallery"],
        "reference_attributes": ['{"brand": "Arla", "variety": "medium fat milk"}'] * 2, "image": [None, None],
    })  # fmt: skip
    cat = Catalog.__new__(Catalog)
    cat.listings = listings
    r = load_config(None).rar
    assert gallery_splits(cat, r) == ["gallery"]  # the shop's own catalogue where there is one
    texts = gallery_texts(listings, r)
    assert texts == ["", "Arla milk | brand: Arla"] and not any("medium fat" in t for t in texts)
    assert gallery_splits(cat, load_config(None, ["rar.gallery_splits=[train]"]).rar) == ["train"]
    cat.listings = listings.assign(split=["train", "train"])
    assert gallery_splits(cat, r) == ["train"]  # no gallery listings: the prompts' own split


def test_default_grpo_step_takes_eight_prompts(tmp_path):
    args = grpo_config(load_config(None), tmp_path)
    assert prompts_per_step(args) >= 8
    assert args.generation_batch_size % args.num_generations == 0
    assert args.learning_rate >= 1e-4  # enough for the tiny extractor's adapter to move
    assert np.isclose(args.reward_weights, [1.0, 0.2]).all()
