"""The packaged pretrained backbones as an encoder, without trained heads (``pretrained``).

:class:`BackboneEncoder`: all-MiniLM-L6-v2 sentence embeddings for texts (mean pooling, 384-d) and
EfficientNet-Lite0 features for images, mapped to 384-d by a fixed seeded random projection. Text and
image spaces are *not* aligned: use it for text against text (e.g. the RAR reward with
``rar.gallery_modality: text``). It is a real model, used by the tests and as a starting point before
AGCL has run; load it with ``load_encoder("pretrained")``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from afmrl.config import EncoderConfig
from afmrl.models.encoders.base import ImageLike, l2_normalize, load_image


class BackboneEncoder:
    """Packaged MiniLM (texts) + EfficientNet-Lite0 (images, random projection); frozen, CPU-friendly."""

    def __init__(self, cfg: EncoderConfig | None = None, seed: int = 0) -> None:
        from afmrl.models.encoders.dual import TextTower
        from afmrl.models.pretrained import IMAGE_MEAN, IMAGE_STD, MINILM_L6

        self.cfg = cfg or EncoderConfig()
        self.text_tower = TextTower(MINILM_L6, self.cfg.max_tokens).eval()
        self.dim = self.text_tower.out_dim
        self._image_tower: torch.nn.Module | None = None
        self._mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
        g = torch.Generator().manual_seed(seed)
        self._projection = torch.randn(1280, self.dim, generator=g) / self.dim**0.5

    @torch.inference_mode()
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), self.cfg.batch_size):
            tokens = self.text_tower.tokenize(list(texts[i : i + self.cfg.batch_size]))
            out.append(self.text_tower(**tokens).float())
        if not out:
            return np.zeros((0, self.dim), np.float32)
        return l2_normalize(torch.cat(out)).numpy()

    @torch.inference_mode()
    def encode_images(self, images: Sequence[ImageLike]) -> np.ndarray:
        from afmrl.models.pretrained import EfficientNetFeatures

        if self._image_tower is None:
            self._image_tower = EfficientNetFeatures(pretrained=True).eval()
        out = []
        for i in range(0, len(images), self.cfg.batch_size):
            pixels = torch.stack([load_image(im, self.cfg.image_size) for im in images[i : i + self.cfg.batch_size]])
            feats = self._image_tower((pixels - self._mean) / self._std)
            out.append(feats.float() @ self._projection)
        if not out:
            return np.zeros((0, self.dim), np.float32)
        return l2_normalize(torch.cat(out)).numpy()

    def encode_listings(self, texts: Sequence[str], images: Sequence[ImageLike | None]) -> np.ndarray:
        txt = self.encode_texts(texts)
        idx = [i for i, im in enumerate(images) if im is not None]
        if idx:
            img = self.encode_images([images[i] for i in idx])
            txt[idx] = l2_normalize(txt[idx] + img)
        return txt
