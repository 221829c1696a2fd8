"""Attribute extraction with a multimodal LLM: batched generation through the chat template.

Each listing becomes a chat (system prompt, then the image if there is one and ``use_images``,
then title/description and the instruction, see :mod:`afmrl.attributes.prompts`). Listings with
and without an image go in separate batches (text-only fallback); a text-only causal LM gets
string prompts through its tokenizer's chat template. Generation is greedy unless
``mllm.do_sample``; only the new tokens are decoded. Raw outputs are cached by (model fingerprint +
prompt version + generation settings, listing content hash) in :class:`GenerationCache`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from afmrl.attributes.cache import GenerationCache
from afmrl.attributes.parse import writable_text
from afmrl.attributes.prompts import PROMPT_VERSION, build_messages
from afmrl.attributes.schema import DEFAULT_SCHEMA, AttributeSchema
from afmrl.config import MLLMConfig
from afmrl.digest import content_hash, file_digest


class LoadedModel(Protocol):
    """What the extractor needs of a loaded MLLM (:class:`afmrl.models.mllm.LoadedMLLM` is one; this
    layer sits below ``afmrl.models``, so it names the shape, not the class)."""

    model: Any
    processor: Any
    is_vlm: bool
    fingerprint: str

    @property
    def tokenizer(self) -> Any: ...


@dataclass
class ListingInput:
    listing_id: str
    title: str | None
    description: str | None = None
    image: str | Path | None = None  # absolute path, or None


@dataclass
class Generation:
    listing_id: str
    raw: str
    seconds: float
    cached: bool


class MLLMExtractor:
    def __init__(self, loaded: LoadedModel, cfg: MLLMConfig, keys: Sequence[str],
                 schema: AttributeSchema = DEFAULT_SCHEMA) -> None:  # fmt: skip
        self.loaded = loaded
        self.cfg = cfg
        self.keys = list(keys)
        self.schema = schema

    @property
    def use_images(self) -> bool:
        return self.loaded.is_vlm and self.cfg.use_images

    def generation_settings(self) -> dict[str, Any]:
        c = self.cfg
        sampling = {"temperature": c.temperature, "top_p": c.top_p, "top_k": c.top_k, "seed": c.seed} if c.do_sample else {}
        return {"do_sample": c.do_sample, "max_new_tokens": c.max_new_tokens, **sampling,
                "min_pixels": c.min_pixels, "max_pixels": c.max_pixels, "use_images": self.use_images,
                "max_description_chars": c.max_description_chars, "dtype": c.dtype}  # fmt: skip

    def model_key(self) -> str:
        """What a cached generation depends on besides the listing: weights, prompt, settings."""
        return content_hash(self.loaded.fingerprint, PROMPT_VERSION, self.keys, self.generation_settings())[:24]

    def listing_key(self, item: ListingInput) -> str:
        image = None
        if item.image is not None and self.use_images and Path(item.image).is_file():
            image = file_digest(item.image)
        return content_hash(item.title or "", item.description or "", image)

    def messages(self, item: ListingInput, with_image: bool) -> list[dict[str, Any]]:
        return build_messages(item.title, item.description, self.keys, image=with_image, schema=self.schema,
                              max_description_chars=self.cfg.max_description_chars)  # fmt: skip

    def _generate_batch(self, items: Sequence[ListingInput], with_image: bool) -> list[str]:
        import torch
        from PIL import Image

        proc = self.loaded.processor
        msgs = [self.messages(it, with_image) for it in items]
        texts = [proc.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in msgs]
        if with_image:
            images = [Image.open(it.image).convert("RGB") for it in items]
            inputs = proc(text=texts, images=images, padding=True, return_tensors="pt")
        elif self.loaded.is_vlm:
            inputs = proc(text=texts, padding=True, return_tensors="pt")
        else:
            inputs = proc(texts, padding=True, return_tensors="pt", add_special_tokens=False)
        inputs = inputs.to(self.loaded.model.device)
        c = self.cfg
        kwargs: dict[str, Any] = {"max_new_tokens": c.max_new_tokens, "do_sample": c.do_sample}
        if c.do_sample:
            torch.manual_seed(c.seed)
            kwargs.update(temperature=c.temperature, top_p=c.top_p, top_k=c.top_k)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        tok = self.loaded.tokenizer
        with torch.inference_mode():
            out = self.loaded.model.generate(**inputs, **kwargs, pad_token_id=tok.pad_token_id)
        new = out[:, inputs["input_ids"].shape[1]:]
        return tok.batch_decode(new, skip_special_tokens=True)

    def generate(self, items: Sequence[ListingInput], cache: GenerationCache | None = None,
                 advance: Callable[[int], None] | None = None) -> list[Generation]:  # fmt: skip
        """Raw outputs for every item (cache hits first, the rest generated in batches)."""
        model_key = self.model_key()
        keys = [self.listing_key(it) for it in items]
        hits = cache.get_many(model_key, keys) if cache is not None else {}
        results: dict[int, Generation] = {}
        todo: list[int] = []
        for i, (it, key) in enumerate(zip(items, keys, strict=True)):
            if key in hits:
                raw, sec = hits[key]
                results[i] = Generation(it.listing_id, raw, sec, True)
            else:
                todo.append(i)
        if advance and len(results):
            advance(len(results))
        with_img = [i for i in todo if self.use_images and items[i].image is not None]
        imaged = set(with_img)
        without = [i for i in todo if i not in imaged]
        bs = self.cfg.batch_size
        for group, flag in ((with_img, True), (without, False)):
            for start in range(0, len(group), bs):
                idx = group[start:start + bs]
                t0 = time.perf_counter()
                raws = self._generate_batch([items[i] for i in idx], flag)
                per = (time.perf_counter() - t0) / len(idx)
                new_rows = []
                for i, raw in zip(idx, (writable_text(r) for r in raws), strict=True):  # SQLite needs UTF-8
                    results[i] = Generation(items[i].listing_id, raw, per, False)
                    new_rows.append((keys[i], raw, per))
                if cache is not None:
                    cache.put_many(model_key, new_rows)
                if advance:
                    advance(len(idx))
        return [results[i] for i in range(len(items))]
