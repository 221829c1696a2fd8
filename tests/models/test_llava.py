"""The LLaVA-style extractor (afmrl.models.llava): the pretrained EfficientNet-Lite0 tower + a tiny Qwen2."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from afmrl.attributes.extractors.mllm import ListingInput, MLLMExtractor
from afmrl.catalog import read_catalog
from afmrl.config import MLLMConfig
from afmrl.models.llava import AfmrlLlavaProcessor, EfficientNetTower
from afmrl.models.mllm import image_pixel_cap, load_mllm
from afmrl.models.tiny import build_tiny

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {"vocab_size": 512, "hidden": 32, "image_size": 64, "image_grid": 1, "projector_hidden": 32}


@pytest.fixture(scope="module")
def tiny_llava(synth_catalog, tmp_path_factory):
    return build_tiny("llava", tmp_path_factory.mktemp("tiny-llava"), synth_catalog, **SMALL)


def _prompt(processor, n_images: int = 1) -> str:
    content = [{"type": "image"}] * n_images + [{"type": "text", "text": "Title: x"}]
    return processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True,
                                         tokenize=False)  # fmt: skip


def test_round_trip_keeps_the_pretrained_tower_frozen(tiny_llava):
    from afmrl.models.pretrained import efficientnet_lite0

    loaded = load_mllm(tiny_llava)
    assert loaded.is_vlm and isinstance(loaded.processor, AfmrlLlavaProcessor)
    assert loaded.model.__class__.__name__ == "AfmrlLlavaForConditionalGeneration"
    assert loaded.model.config.model_type == "afmrl_llava"
    # the tower holds the packaged ImageNet weights, not random ones, after save + load
    packaged = efficientnet_lite0(pretrained=True).state_dict()
    tower = loaded.model.model.vision_tower
    assert all(torch.equal(packaged[k], v) for k, v in tower.net.state_dict().items())
    assert not any(p.requires_grad for p in tower.parameters())  # frozen again after loading
    assert all(p.requires_grad for p in loaded.model.model.projector.parameters())
    tower.train()
    assert not tower.training  # batch-norm statistics stay fixed under the trainer's model.train()
    info = json.loads((tiny_llava / "afmrl_build.json").read_text())
    assert info["kind"] == "tiny-llava" and info["image_tokens"] == 2
    assert info["trainable_params"] < info["params"]


def test_trainable_blocks_unfreeze_only_the_last_blocks():
    tower = EfficientNetTower(trainable_blocks=1)
    last = list(tower.net._blocks)[-1]
    assert all(p.requires_grad for p in last.parameters())
    assert not any(p.requires_grad for p in tower.net._conv_stem.parameters())
    assert not any(p.requires_grad for b in list(tower.net._blocks)[:-1] for p in b.parameters())
    feats = tower(torch.randn(2, 3, 64, 64))
    assert feats.shape == (2, 1280, 2, 2) and feats.requires_grad


def test_processor_inserts_the_image_tokens(tiny_llava):
    loaded = load_mllm(tiny_llava)
    proc, cfg = loaded.processor, loaded.model.config
    text = _prompt(proc)
    assert "<|vision_start|><|image_pad|><|vision_end|>" in text  # one placeholder per image in the template
    images = [Image.new("RGB", (90, 60), (200, 30, 30)), Image.new("RGB", (40, 80), (20, 30, 220))]
    inputs = proc(text=[text, text], images=[[images[0]], [images[1]]], padding=True, return_tensors="pt")
    assert inputs["pixel_values"].shape == (2, 3, 64, 64)  # one row per image, resized to image_size
    assert float(inputs["pixel_values"].min()) >= -1.0 and float(inputs["pixel_values"].max()) <= 1.0
    per_row = (inputs["input_ids"] == cfg.image_token_id).sum(dim=1).tolist()
    assert per_row == [cfg.image_tokens, cfg.image_tokens] == [2, 2]  # 1 global + 1x1 grid
    with pytest.raises(ValueError, match="image"):
        proc(text=[text], return_tensors="pt")  # a placeholder without its image
    assert image_pixel_cap(proc, 4096) == 4096 and image_pixel_cap(proc, 100) == 64 * 64 // 2


def test_forward_and_generate_see_the_image(tiny_llava):
    loaded = load_mllm(tiny_llava)
    model, proc = loaded.model, loaded.processor
    text = _prompt(proc)
    red, blue = Image.new("RGB", (64, 64), (220, 20, 20)), Image.new("RGB", (64, 64), (20, 20, 220))
    inputs = proc(text=[text, text], images=[red, blue], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**inputs)
    batch, length = inputs["input_ids"].shape
    assert out.logits.shape == (batch, length, model.config.get_text_config().vocab_size)
    assert not torch.allclose(out.logits[0, -1], out.logits[1, -1])  # the two photos give other next tokens
    with torch.no_grad():
        again = model(**proc(text=[text], images=[red], return_tensors="pt"))
    assert torch.allclose(again.logits[0, -1], out.logits[0, -1], atol=1e-5)
    generated = model.generate(**inputs, max_new_tokens=4, do_sample=False, pad_token_id=loaded.tokenizer.pad_token_id)
    assert generated.shape[0] == 2 and length < generated.shape[1] <= length + 4
    with pytest.raises(ValueError, match="do not match"):
        model(input_ids=inputs["input_ids"][:1], pixel_values=inputs["pixel_values"])  # 1 prompt, 2 images


def test_the_extractor_runs_it_on_listings_with_photos(tiny_llava, synth_catalog):
    loaded = load_mllm(tiny_llava)
    cat = read_catalog(synth_catalog)
    rows = cat.listings.head(3).to_dict("records")
    items = [ListingInput(r["listing_id"], r["title"], r["description"], cat.image_path(r["image"])) for r in rows]
    gens = MLLMExtractor(loaded, MLLMConfig(max_new_tokens=4, batch_size=2), ["brand", "colour"]).generate(items)
    assert [g.listing_id for g in gens] == [r["listing_id"] for r in rows]
    assert all(isinstance(g.raw, str) and not g.cached for g in gens)


def test_the_frozen_towers_feature_cache_returns_what_the_tower_computes(tiny_llava):
    loaded = load_mllm(tiny_llava)
    inner = loaded.model.model
    cache = inner.feature_cache
    pixels = torch.rand(3, 3, 64, 64) * 2 - 1
    first = inner.pooled_tower_tokens(pixels)
    assert (cache.hits, cache.misses) == (0, 3)
    again = inner.pooled_tower_tokens(torch.cat([pixels[2:], pixels[:1], pixels[:1] * 0.5]))  # 2 seen, 1 new
    assert (cache.hits, cache.misses) == (2, 4)
    with torch.no_grad():
        direct = torch.cat([inner.vision_tower(pixels).mean(dim=(2, 3)).unsqueeze(1),
                            torch.nn.functional.adaptive_avg_pool2d(inner.vision_tower(pixels), 1).flatten(2)
                            .transpose(1, 2)], dim=1)  # fmt: skip
    assert torch.allclose(first, direct, atol=1e-6)
    assert torch.equal(again[0], first[2]) and torch.equal(again[1], first[0])
    assert not torch.allclose(again[2], first[0])  # other pixels, other features
    cache.max_items = 2
    inner.pooled_tower_tokens(pixels)
    assert len(cache.items) == 2  # bounded (least recently used dropped)
