"""SFT, extraction and GRPO on the LLaVA-style extractor (pretrained EfficientNet-Lite0 tower + tiny Qwen2),
small: 64-pixel images, a 32-wide LM, 60 SFT steps (enough for some parseable answers, so GRPO groups
have a reward spread), 2 GRPO steps; about 20 s in all (slow tier, like the other SFT/RAR tests)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from afmrl.config import load_config
from afmrl.models.mllm import load_mllm
from afmrl.models.tiny import build_tiny

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"vocab_size": 512, "hidden": 32, "image_size": 64, "image_grid": 1, "projector_hidden": 32}


@pytest.fixture(scope="module")
def llava_sft(synth_catalog, tmp_path_factory):
    from afmrl.stages import sft

    base = build_tiny("llava", tmp_path_factory.mktemp("tiny-llava"), synth_catalog, **SMALL)
    cfg = load_config(None, ["tracking.enabled=false", f"mllm.model={base}", "sft.trl.max_steps=60",
                             "sft.trl.learning_rate=0.01", "sft.trl.per_device_train_batch_size=4"])  # fmt: skip
    return base, sft.run(cfg, synth_catalog, base, tmp_path_factory.mktemp("sft"))


@pytest.mark.slow
def test_sft_trains_the_projector_and_lm_not_the_tower(llava_sft, synth_catalog, tmp_path):
    from afmrl.stages import extract

    base, result = llava_sft
    assert not result.lora and result.steps == 60  # an afmrl tiny model: full weights
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert losses[-1] < 0.5 * losses[0]
    before, after = load_file(base / "model.safetensors"), load_file(result.model_dir / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("model.projector.") for k in changed)
    assert any(k.startswith("model.language_model.") for k in changed)
    assert not any(k.startswith("model.vision_tower.") for k in changed)  # frozen weights and statistics
    loaded = load_mllm(result.model_dir)  # the SFT output is a plain folder load_mllm reads
    assert loaded.is_vlm and loaded.model.__class__.__name__ == "AfmrlLlavaForConditionalGeneration"
    # the extract stage's mllm backend runs it on photos
    cfg = load_config(None, ["tracking.enabled=false", "attributes.backend=mllm", f"mllm.model={result.model_dir}",
                             "attributes.splits=[val]", f"attributes.cache_path={tmp_path / 'c.sqlite'}",
                             "mllm.max_new_tokens=24"])  # fmt: skip
    r = extract.run(cfg, synth_catalog, tmp_path / "out")
    assert r.table_path.is_file() and 0.0 <= r.valid_rate <= 1.0


@pytest.mark.slow
def test_grpo_runs_on_it_and_moves_the_adapter(llava_sft, synth_catalog, tmp_path):
    from afmrl.config import EncoderConfig
    from afmrl.models.encoders.dual import DualEncoder
    from afmrl.stages import rar

    _, sft = llava_sft
    cfg = load_config(None, ["tracking.enabled=false", "rar.trl.max_steps=2", "rar.max_prompts=8",
                             "rar.trl.num_generations=2", "rar.trl.per_device_train_batch_size=8",
                             "rar.trl.max_completion_length=16", "rar.trl.learning_rate=0.005", "rar.trl.beta=0.04",
                             "rar.heldout_split=null", "rar.patience=0", "rar.gallery_size=32"])  # fmt: skip
    encoder = DualEncoder(EncoderConfig()).eval()
    result = rar.run(cfg, synth_catalog, sft.model_dir, encoder, tmp_path / "rar")
    assert result.steps == 2 and result.prompts_per_step == 4
    assert result.adapter_change > 0.0  # LoRA on the LM's attention moved
    logged = {k for h in result.history for k in h}
    assert {"rewards/retrieval/mean", "kl", "rar/reward_group_std"} <= logged
    merged = load_mllm(result.model_dir)
    assert merged.model.__class__.__name__ == "AfmrlLlavaForConditionalGeneration"
    assert not any("lora" in n for n, _ in merged.model.named_parameters())
