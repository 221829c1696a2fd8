"""Hugging Face CLIP / SigLIP dual encoders by hub id or local folder (``encoder.kind: clip``).

Images go through the model's image processor, texts through its tokenizer (SigLIP pads to max
length, as it was trained); ``get_image_features`` / ``get_text_features`` give the projected
embeddings, L2-normalised; a listing embedding is the normalised mean of its parts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from afmrl.models.encoders.base import ImageLike, l2_normalize


def _features(out: object) -> torch.Tensor:
    """transformers 5 returns a model output with the projected ``pooler_output``; 4.x a tensor."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output  # type: ignore[attr-defined]


class HFClipEncoder:
    def __init__(self, name: str, max_tokens: int = 64, batch_size: int = 32, device: str = "cpu") -> None:
        from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoTokenizer

        self.name = name
        self.model = AutoModel.from_pretrained(name).to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(name)
        self.image_processor = AutoImageProcessor.from_pretrained(name)
        config = AutoConfig.from_pretrained(name)
        self.is_siglip = "siglip" in config.model_type
        self.max_tokens = min(max_tokens, int(getattr(config.text_config, "max_position_embeddings", max_tokens)))
        self.batch_size = batch_size
        self.device = device
        with torch.inference_mode():
            self.dim = int(self.encode_texts(["probe"]).shape[1])

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), self.batch_size):
            tok = self.tokenizer(list(texts[i : i + self.batch_size]), truncation=True, max_length=self.max_tokens,
                                 padding="max_length" if self.is_siglip else True, return_tensors="pt")  # fmt: skip
            tok = {k: v.to(self.device) for k, v in tok.items() if k in ("input_ids", "attention_mask")}
            if self.is_siglip:
                tok.pop("attention_mask", None)
            out.append(l2_normalize(_features(self.model.get_text_features(**tok))).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    @torch.inference_mode()
    def encode_images(self, images: Sequence[ImageLike]) -> np.ndarray:
        out = []
        for i in range(0, len(images), self.batch_size):
            batch = [im.convert("RGB") if isinstance(im, Image.Image) else Image.open(im).convert("RGB")
                     for im in images[i : i + self.batch_size]]  # fmt: skip
            pixels = self.image_processor(images=batch, return_tensors="pt")["pixel_values"].to(self.device)
            out.append(l2_normalize(_features(self.model.get_image_features(pixel_values=pixels))).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def encode_listings(self, texts: Sequence[str], images: Sequence[ImageLike | None]) -> np.ndarray:
        txt = self.encode_texts(texts)
        has = [im is not None for im in images]
        if any(has):
            img = self.encode_images([im for im in images if im is not None])
            txt[np.flatnonzero(has)] = l2_normalize(txt[np.flatnonzero(has)] + img)
        return txt
