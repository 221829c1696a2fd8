"""Embeddings of catalogue listings for evaluation and indexing, through the feature cache.

``Embeddings`` holds, for each listing, an image embedding (or None), a text embedding and the
listing embedding (fused). The zero-shot variant uses the pretrained towers without heads: image
and text live in different spaces there, so cross-modal tasks are undefined for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from afmrl.catalog.io import Catalog
from afmrl.config import EncoderConfig
from afmrl.models.encoders.base import l2_normalize
from afmrl.models.encoders.dual import DualEncoder
from afmrl.models.features import tower_features
from afmrl.models.inputs import image_paths, listing_attributes, listing_texts

PROJECT_CHUNK = 4096  # rows projected at a time (token features: 4096 x 64 x 384 floats, 400 MB)


def _in_chunks(fn: Callable[[torch.Tensor], torch.Tensor], feats: torch.Tensor) -> torch.Tensor:
    """``fn`` over ``PROJECT_CHUNK`` rows at a time (token features are wide: a whole catalogue at once is GBs)."""
    return torch.cat([fn(chunk) for chunk in feats.split(PROJECT_CHUNK)]) if len(feats) else fn(feats)


@dataclass
class Embeddings:
    listing_ids: list[str]
    image: np.ndarray | None  # (n, d); rows of listings without an image are NaN
    text: np.ndarray
    listing: np.ndarray
    has_image: np.ndarray
    cross_modal: bool = True


def embed_listings(model: DualEncoder, catalog: Catalog, rows: pd.DataFrame, enc: EncoderConfig,
                   cache_dir: str | Path | None, zero_shot: bool = False) -> Embeddings:  # fmt: skip
    attrs = listing_attributes(rows, enc, catalog.listings)  # rules: the lexicon of the training listings
    texts = listing_texts(rows, attrs, enc)
    txt_feats = torch.from_numpy(tower_features(model, "text", texts, cache_dir))
    has_image = rows["image"].notna().to_numpy().copy()
    paths = image_paths(catalog, rows["image"][has_image])
    img_feats = torch.from_numpy(tower_features(model, "image", paths, cache_dir)) if paths else None
    with torch.inference_mode():
        if zero_shot:
            text = l2_normalize(_in_chunks(lambda x: model.zero_shot_texts(x).float(), txt_feats))
            img = l2_normalize(img_feats) if img_feats is not None else None
        else:
            text = _in_chunks(model.project_texts, txt_feats)
            img = model.project_images(img_feats) if img_feats is not None else None
        image_full = None
        if img is not None:
            image_full = torch.full((len(rows), img.shape[1]), float("nan"))
            image_full[torch.from_numpy(has_image)] = img
        if zero_shot:
            parts = [text]
            if image_full is not None:
                parts.append(torch.nan_to_num(image_full, nan=0.0))
            listing = l2_normalize(torch.cat(parts, dim=1))
        else:
            img_or_zero = torch.nan_to_num(image_full, nan=0.0) if image_full is not None else torch.zeros_like(text)
            listing = model.fuse(img_or_zero, text, torch.from_numpy(has_image))
    return Embeddings(
        listing_ids=rows["listing_id"].tolist(),
        image=image_full.numpy() if image_full is not None else None,
        text=text.numpy(),
        listing=listing.numpy(),
        has_image=has_image,
        cross_modal=not zero_shot,
    )
