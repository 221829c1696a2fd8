"""On-disk cache of backbone features, so frozen-backbone training and evaluation compute each
image's and each text's tower features once (:func:`tower_features`; a catalogue listing's are its
image's and its text's, side by side: :func:`listing_features`).

One ``.npz`` per (tower, settings) fingerprint holds the keys (content hashes) and the features;
lookups compute only what is missing and append it. A cache file that cannot be read (truncated by a
kill or a full disk, or not a cache at all) is a miss: a warning names it and it is rebuilt. Writes go
to a temporary file unique to the writer, then replace the cache (:mod:`afmrl.atomic`), so processes
sharing a cache folder never write into one another's file; the last writer's cache wins, whole.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from afmrl.atomic import atomic_path
from afmrl.digest import digest_bytes
from afmrl.progress import console, progress

if TYPE_CHECKING:
    from afmrl.models.encoders.dual import DualEncoder


def text_key(text: str) -> str:
    return digest_bytes(text, algorithm="sha1")


def image_key(path: str | Path) -> str:
    st = os.stat(path)
    return digest_bytes(f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}", algorithm="sha1")


class FeatureCache:
    def __init__(self, folder: str | Path | None, fingerprint: str, dtype: type = np.float32) -> None:
        self.path = Path(folder) / f"{fingerprint}.npz" if folder else None
        self.dtype = dtype  # float16 for token features (``encoder.text_pooling: attention``): half the memory
        self.index: dict[str, int] = {}
        self.feats: np.ndarray | None = None
        if self.path and self.path.exists():
            self._read(self.path)

    def _read(self, path: Path) -> None:
        try:
            with np.load(path, allow_pickle=False) as data:
                keys, feats = data["keys"].tolist(), np.asarray(data["feats"], dtype=self.dtype)
            if feats.ndim != 2 or len(feats) != len(keys) or len(set(keys)) != len(keys):
                raise ValueError(f"{len(keys)} keys for features of shape {feats.shape}")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:  # a damaged cache: a miss
            console.print(f"[yellow]feature cache {path} is unreadable ({type(exc).__name__}: {exc}): rebuilding it",
                          highlight=False, soft_wrap=True)  # fmt: skip
            return
        self.index = {k: i for i, k in enumerate(keys)}
        self.feats = feats

    def get(self, keys: Sequence[str], items: Sequence, compute: Callable[[list], np.ndarray]) -> np.ndarray:
        missing = sorted({k: i for i, k in enumerate(keys) if k not in self.index}.items(), key=lambda kv: kv[1])
        if missing:
            new = compute([items[i] for _, i in missing]).astype(self.dtype)
            start = len(self.index)
            for n, (k, _) in enumerate(missing):
                self.index[k] = start + n
            self.feats = new if self.feats is None else np.concatenate([self.feats, new])
            self._save()
        assert self.feats is not None
        return self.feats[[self.index[k] for k in keys]] if keys else np.zeros((0, self.feats.shape[1]), self.dtype)

    def _save(self) -> None:
        if not self.path:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.array(sorted(self.index, key=self.index.get))
        with atomic_path(self.path) as tmp, open(tmp, "wb") as fh:  # a temporary of this writer's own
            np.savez(fh, keys=keys, feats=self.feats)


def with_progress(compute: Callable[[list], np.ndarray], description: str, unit: str,
                  batch_size: int) -> Callable[[list], np.ndarray]:  # fmt: skip
    """``compute`` over ``batch_size`` items at a time, a progress bar advancing per batch (``AFMRL_PROGRESS=off``
    hides it). The backbones batch by the same size inside, so the features are the ones one call gives."""

    def run(items: list) -> np.ndarray:
        if len(items) <= batch_size:  # one batch: no bar
            return compute(items)
        parts = []
        with progress(description, len(items), unit=unit) as advance:
            for start in range(0, len(items), max(1, batch_size)):
                chunk = items[start:start + max(1, batch_size)]
                parts.append(compute(chunk))
                advance(len(chunk))
        return np.concatenate(parts) if parts else compute(items)

    return run


def split_listing_features(model: DualEncoder, feats: Any) -> tuple[Any, Any]:
    """(image part, text part) of ``listing`` features (numpy or torch rows ``[image | text]``); a
    listing without an image has NaN in its image part."""
    cut = int(model.image_tower.out_dim)
    return feats[:, :cut], feats[:, cut:]


def fuse_listing(model: DualEncoder, img_feats: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
    """A catalogue listing's embedding as evaluation embeds it (:func:`afmrl.retrieval.embed.embed_listings`):
    its image backbone features projected (zero without an image: NaN features) and fused with its
    projected text ``txt`` by :meth:`DualEncoder.fuse`."""
    has = ~torch.isnan(img_feats).any(dim=1)
    img = model.project_images(torch.nan_to_num(img_feats, nan=0.0))
    img = torch.where(has.view(-1, 1), img, torch.zeros_like(img))
    return model.fuse(img, txt, has)


def project_listing_features(model: DualEncoder, feats: torch.Tensor) -> torch.Tensor:
    """``listing`` backbone features (:func:`listing_features`) -> the fused listing embeddings."""
    img, txt = split_listing_features(model, feats)
    return fuse_listing(model, img, model.project_texts(txt))


def listing_features(model: DualEncoder, inputs: list[tuple[str | None, str]], cache_dir: str | Path | None) -> np.ndarray:
    """Backbone features of catalogue listings, ``inputs`` = (image path or None, text): the rows
    ``[image features | text features]`` (:func:`split_listing_features`), image part NaN without an
    image. Both parts come from (and fill) the image and text caches under their own keys, so a
    listing's parts are exactly what evaluation embeds for it."""
    texts = [t for _, t in inputs]
    txt = tower_features(model, "text", texts, cache_dir)
    has = [i for i, (img, _) in enumerate(inputs) if img is not None]
    img = np.full((len(inputs), int(model.image_tower.out_dim)), np.nan, dtype=np.float32)
    if has:
        img[has] = tower_features(model, "image", [inputs[i][0] for i in has], cache_dir)
    return np.concatenate([img, txt.astype(np.float32)], axis=1)


def tower_features(model: DualEncoder, kind: str, inputs: list[Any], cache_dir: str | Path | None) -> np.ndarray:
    """Backbone features of images, texts or listings (:func:`listing_features`), through the on-disk
    cache (a bar over what is not cached)."""
    cfg = model.cfg
    if kind == "listing":
        return listing_features(model, inputs, cache_dir)
    if kind == "image":
        cache = FeatureCache(cache_dir, f"image-{cfg.image_model}-{cfg.image_size}")
        compute = with_progress(model.image_backbone, "features: images", "img", cfg.batch_size)
        return cache.get([image_key(p) for p in inputs], inputs, compute)
    tokens = cfg.text_pooling == "attention"  # every token's features, not their mean
    cache = FeatureCache(cache_dir, f"text-{Path(cfg.text_model).name}-{cfg.max_tokens}" + ("-tokens" if tokens else ""),
                         dtype=np.float16 if tokens else np.float32)  # fmt: skip
    compute = with_progress(model.text_backbone, "features: texts", "text", cfg.batch_size)
    return cache.get([text_key(t) for t in inputs], inputs, compute)
