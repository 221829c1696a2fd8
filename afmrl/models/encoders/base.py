"""The one interface every representation model implements.

``encode_images``, ``encode_texts`` and ``encode_listings`` return L2-normalised float32 arrays of
shape (n, dim). A listing's text is its title, then its attributes serialised (``brand: x; colour:
y``: AFMRL feeds attributes to the representation model), then its description; truncation at
``encoder.max_tokens`` cuts the description first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from PIL import Image

ImageLike = str | Path | Image.Image


@runtime_checkable
class Encoder(Protocol):
    dim: int

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray: ...

    def encode_images(self, images: Sequence[ImageLike]) -> np.ndarray: ...

    def encode_listings(self, texts: Sequence[str], images: Sequence[ImageLike | None]) -> np.ndarray: ...


def l2_normalize(x: np.ndarray | torch.Tensor, eps: float = 1e-12):
    if isinstance(x, torch.Tensor):
        return torch.nn.functional.normalize(x, dim=-1, eps=eps)
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), eps)


def compose_text(title: str | None, description: str | None = None, attributes: str | None = None) -> str:
    """Title, then serialised attributes, then description (the part truncation may cut)."""
    parts = [p.strip() for p in (title, attributes, description) if p and p.strip()]
    return " | ".join(parts)


def load_image(image: ImageLike, size: int) -> torch.Tensor:
    """RGB float tensor (3, size, size) in [0, 1]: shorter side resized to ``size``, centre crop."""
    img = image if isinstance(image, Image.Image) else Image.open(image)
    if img.format == "JPEG":
        img.draft("RGB", (size, size))  # decode at reduced scale: much faster for large photos
    img = img.convert("RGB")
    w, h = img.size
    scale = size / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.Resampling.BILINEAR)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    img = img.crop((left, top, left + size, top + size))
    arr = np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr).permute(2, 0, 1).contiguous()
