from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from afmrl.attributes.extractors.mllm import ListingInput, MLLMExtractor
from afmrl.catalog import read_catalog
from afmrl.config import MLLMConfig
from afmrl.models.mllm import AfmrlQwen2VLProcessor, load_mllm
from afmrl.models.tiny import SPECIAL_TOKENS, build_tiny

pytestmark = pytest.mark.usefixtures("one_thread")


def test_tiny_vlm_round_trip_and_image_tokens(tiny_vlm, synth_catalog):
    loaded = load_mllm(tiny_vlm)
    assert loaded.is_vlm and isinstance(loaded.processor, AfmrlQwen2VLProcessor)
    assert loaded.model.__class__.__name__ == "Qwen2VLForConditionalGeneration"
    tok = loaded.tokenizer
    for t in SPECIAL_TOKENS:  # each special token is one id, never split
        assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1
    assert loaded.model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    info = json.loads((tiny_vlm / "afmrl_build.json").read_text())
    assert info["params"] < 1_000_000
    cat = read_catalog(synth_catalog)
    img = Image.open(cat.image_path(cat.listings["image"].iloc[0]))
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "hi"}]}]
    text = loaded.processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    assert text.endswith("<|im_start|>assistant\n") and "<|vision_start|><|image_pad|><|vision_end|>" in text
    inputs = loaded.processor(text=[text], images=[img], return_tensors="pt")
    # max_pixels 64x64 -> resized to 56x56 -> a 4x4 patch grid -> 4 merged image tokens
    assert int((inputs["input_ids"] == loaded.model.config.image_token_id).sum()) == 4
    out = loaded.model.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 3 or out[0, -1].item() in tok.all_special_ids


def test_real_hub_layout_goes_through_the_same_loader(tiny_vlm, tmp_path):
    """A folder laid out like Qwen/Qwen2-VL-2B-Instruct (stock processor class names in
    preprocessor_config.json, no processor_config.json) loads through load_mllm without torchvision."""
    hub = tmp_path / "hub-like"
    shutil.copytree(tiny_vlm, hub)
    proc_cfg = json.loads((hub / "processor_config.json").read_text())
    image_cfg = {**proc_cfg["image_processor"], "image_processor_type": "Qwen2VLImageProcessor",
                 "processor_class": "Qwen2VLProcessor", "min_pixels": 3136, "max_pixels": 12845056}  # fmt: skip
    image_cfg.pop("size", None)
    (hub / "preprocessor_config.json").write_text(json.dumps(image_cfg))
    (hub / "processor_config.json").unlink()
    (hub / "afmrl_build.json").unlink()
    tok_cfg = json.loads((hub / "tokenizer_config.json").read_text())
    tok_cfg["tokenizer_class"] = "Qwen2Tokenizer"
    tok_cfg.pop("processor_class", None)
    (hub / "tokenizer_config.json").write_text(json.dumps(tok_cfg))
    loaded = load_mllm(hub, min_pixels=28 * 28, max_pixels=56 * 56)
    assert isinstance(loaded.processor, AfmrlQwen2VLProcessor)
    assert loaded.processor.image_processor.size.longest_edge == 56 * 56  # the pixel cap was applied
    assert loaded.fingerprint != load_mllm(tiny_vlm).fingerprint  # other files, other cache key


def test_text_only_lm_and_mixed_batches(synth_catalog, tmp_path):
    folder = build_tiny("lm", tmp_path / "lm", synth_catalog, vocab_size=512)
    loaded = load_mllm(folder)
    assert not loaded.is_vlm and loaded.model.__class__.__name__ == "Qwen2ForCausalLM"
    cat = read_catalog(synth_catalog)
    rows = cat.listings.head(3).to_dict("records")
    items = [ListingInput(r["listing_id"], r["title"], r["description"], cat.image_path(r["image"])) for r in rows]
    ex = MLLMExtractor(loaded, MLLMConfig(max_new_tokens=5, batch_size=2), ["brand", "colour"])
    gens = ex.generate(items)
    assert [g.listing_id for g in gens] == [r["listing_id"] for r in rows]
    assert all(isinstance(g.raw, str) and g.seconds > 0 and not g.cached for g in gens)
    # sampling is seeded: the same settings give the same text
    sampled = MLLMConfig(max_new_tokens=6, do_sample=True, temperature=1.0, seed=3)
    a = MLLMExtractor(loaded, sampled, ["brand"]).generate(items[:1])[0].raw
    b = MLLMExtractor(loaded, sampled, ["brand"]).generate(items[:1])[0].raw
    assert a == b
