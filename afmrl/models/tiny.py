"""Tiny models for CPU tests and smoke runs, built from configs and saved for ``from_pretrained``.

- ``build_tiny_vlm``: a ``Qwen2VLForConditionalGeneration`` (a few layers, width 64, a 1-block
  vision tower) with ``AfmrlQwen2VLProcessor`` (``Qwen2VLImageProcessorPil`` with small
  ``min_pixels``/``max_pixels``, no video processor).
- ``build_tiny_llava``: the LLaVA-style extractor (:mod:`afmrl.models.llava`): the pretrained
  EfficientNet-Lite0 image tower (frozen), a projector into a few soft tokens, a tiny Qwen2.
- ``build_tiny_lm``: a text-only ``Qwen2ForCausalLM`` with the same tokenizer.

The tokenizer is a byte-level BPE trained with the ``tokenizers`` library on the catalogue's text
(titles, descriptions, stated attributes as JSON) plus the extraction prompt, with Qwen2-VL's
special tokens (``<|im_start|>``, ``<|im_end|>``, ``<|vision_start|>``, ``<|image_pad|>``, ...) and
Qwen2-VL's chat template. Both folders load with :func:`afmrl.models.mllm.load_mllm`, the same code
path as a real id such as ``Qwen/Qwen2-VL-2B-Instruct``. Weights are random (seeded): the SFT
warm start teaches the JSON format.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>",
)  # fmt: skip

# Qwen2-VL's chat template (system default, image/video placeholders, generation prompt)
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def catalog_corpus(listings: Any, keys: Sequence[str] | None = None) -> list[str]:
    """Tokenizer training text from a listings frame: titles, descriptions, stated attributes as JSON."""
    from afmrl.attributes.prompts import SYSTEM_PROMPT, format_target, instruction
    from afmrl.attributes.schema import DEFAULT_SCHEMA
    from afmrl.catalog.schema import parse_json_object

    texts: list[str] = [SYSTEM_PROMPT, instruction(keys or DEFAULT_SCHEMA.keys)]
    for spec in DEFAULT_SCHEMA.specs.values():
        texts.append(" ".join(spec.vocabulary))
        texts.append(json.dumps({spec.name: " ".join(spec.vocabulary[:3])}))
    for row in listings.to_dict("records"):
        texts.append(f"Title: {row.get('title') or ''}")
        if row.get("description"):
            texts.append(f"Description: {row['description']}")
        attrs = parse_json_object(row.get("attributes"))
        if attrs:
            texts.append(format_target(attrs))
    return texts


def train_tokenizer(texts: Iterable[str], vocab_size: int = 2048) -> Any:
    """A byte-level BPE (``tokenizers``) with Qwen2-VL's special tokens, wrapped for transformers."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )  # fmt: skip
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None, unk_token=None,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in ("<|im_end|>", "<|endoftext|>")],
        model_max_length=4096, padding_side="left", clean_up_tokenization_spaces=False,
    )  # fmt: skip
    fast.chat_template = CHAT_TEMPLATE
    return fast


def _text_kwargs(tokenizer: Any, hidden: int, layers: int, heads: int, kv_heads: int) -> dict[str, Any]:
    return dict(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=4096,
        rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
    )  # fmt: skip


def _save_generation_config(model: Any, tokenizer: Any, out: Path) -> None:
    from transformers import GenerationConfig

    gen = GenerationConfig(
        eos_token_id=[tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")],
        pad_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"), do_sample=False, max_new_tokens=64,
    )  # fmt: skip
    model.generation_config = gen
    gen.save_pretrained(out)


def _write_info(out: Path, info: dict[str, Any]) -> None:
    from afmrl.atomic import write_json_atomic

    write_json_atomic(out / "afmrl_build.json", info, sort_keys=True)


def build_tiny_vlm(out_dir: str | Path, texts: Iterable[str], *, vocab_size: int = 2048, hidden: int = 64,
                   layers: int = 2, heads: int = 4, kv_heads: int = 2, vision_dim: int = 32, vision_depth: int = 1,
                   min_pixels: int = 56 * 56, max_pixels: int = 64 * 64, seed: int = 0) -> Path:  # fmt: skip
    """Build, save and return the folder of a tiny Qwen2-VL with its processor."""
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from afmrl.models.mllm import AfmrlQwen2VLProcessor, register_processor

    register_processor()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, vocab_size)
    head_dim = hidden // heads
    half = head_dim // 2
    mrope = [half - 2 * (half * 3 // 8), half * 3 // 8, half * 3 // 8]  # Qwen2-VL's 16/24/24 split, scaled
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2VLConfig(
        text_config={**_text_kwargs(tokenizer, hidden, layers, heads, kv_heads),
                     "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope}},
        vision_config={"depth": vision_depth, "embed_dim": vision_dim, "hidden_size": hidden, "num_heads": 2,
                       "mlp_ratio": 2, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config)
    image_processor = Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels, patch_size=14,
                                               merge_size=2, temporal_patch_size=2)  # fmt: skip
    processor = AfmrlQwen2VLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)
    _save_generation_config(model, tokenizer, out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    _write_info(out, {"kind": "tiny-qwen2-vl", "params": n_params, "vocab_size": len(tokenizer), "seed": seed,
                      "hidden": hidden, "layers": layers, "min_pixels": min_pixels, "max_pixels": max_pixels})  # fmt: skip
    return out


def build_tiny_lm(out_dir: str | Path, texts: Iterable[str], *, vocab_size: int = 2048, hidden: int = 64,
                  layers: int = 2, heads: int = 4, kv_heads: int = 2, seed: int = 0) -> Path:  # fmt: skip
    """Build, save and return the folder of a tiny text-only Qwen2 causal LM with its tokenizer."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, vocab_size)
    config = Qwen2Config(**_text_kwargs(tokenizer, hidden, layers, heads, kv_heads),
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0})  # fmt: skip
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    _save_generation_config(model, tokenizer, out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    _write_info(out, {"kind": "tiny-qwen2-lm", "params": n_params, "vocab_size": len(tokenizer), "seed": seed,
                      "hidden": hidden, "layers": layers})  # fmt: skip
    return out


def build_tiny_llava(out_dir: str | Path, texts: Iterable[str], *, vocab_size: int = 2048, hidden: int = 128,
                     layers: int = 2, heads: int = 4, kv_heads: int = 2, image_size: int = 224, image_grid: int = 2,
                     projector_hidden: int = 512, vision_trainable_blocks: int = 0, seed: int = 0) -> Path:  # fmt: skip
    """Build, save and return the folder of the LLaVA-style extractor (:mod:`afmrl.models.llava`): the
    pretrained EfficientNet-Lite0 tower, a seeded projector and a seeded tiny Qwen2 with the catalogue's tokenizer."""
    from afmrl.models.llava import build_llava

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, vocab_size)
    model, processor = build_llava(tokenizer, CHAT_TEMPLATE, hidden=hidden, layers=layers, heads=heads,
                                   kv_heads=kv_heads, image_size=image_size, image_grid=image_grid,
                                   projector_hidden=projector_hidden, vision_trainable_blocks=vision_trainable_blocks,
                                   text_kwargs=_text_kwargs(tokenizer, hidden, layers, heads, kv_heads), seed=seed)  # fmt: skip
    _save_generation_config(model, tokenizer, out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    _write_info(out, {"kind": "tiny-llava", "params": n_params, "trainable_params": n_trainable,
                      "vocab_size": len(tokenizer), "seed": seed, "hidden": hidden, "layers": layers,
                      "image_size": image_size, "image_tokens": processor.image_tokens,
                      "vision_trainable_blocks": vision_trainable_blocks})  # fmt: skip
    return out


def build_tiny(kind: str, out_dir: str | Path, catalog_dir: str | Path | None = None, **kwargs: Any) -> Path:
    """``kind``: ``vlm`` (tiny Qwen2-VL), ``llava`` (pretrained EfficientNet-Lite0 + tiny Qwen2) or ``lm``; the
    tokenizer learns the catalogue's text (or the schema's words alone)."""
    import pandas as pd

    from afmrl.catalog.io import read_catalog

    listings = read_catalog(catalog_dir).listings if catalog_dir is not None else pd.DataFrame(columns=["title"])
    texts = catalog_corpus(listings)
    if kind == "vlm":
        return build_tiny_vlm(out_dir, texts, **kwargs)
    if kind == "llava":
        return build_tiny_llava(out_dir, texts, **kwargs)
    if kind == "lm":
        return build_tiny_lm(out_dir, texts, **kwargs)
    raise ValueError(f"unknown tiny model kind {kind!r} (vlm, llava or lm)")
