"""Pre-checks that feed the expectation suite: image paths stay inside the root and decode."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import pandas as pd
from PIL import Image, UnidentifiedImageError

from afmrl.progress import progress

OK = "ok"
ABSENT = "absent"  # the listing has no image (text-only), which is allowed


def resolve_image(root: Path, relative: str) -> tuple[Path | None, str | None]:
    """Resolve ``relative`` under ``root``; returns (path, None) or (None, reason)."""
    rel = PurePosixPath(relative.replace("\\", "/"))
    if rel.is_absolute() or (rel.parts and ":" in rel.parts[0]):
        return None, f"path {relative!r} is absolute; it must be relative to the catalogue's image root"
    if ".." in rel.parts:
        return None, f"path {relative!r} escapes the catalogue's image root"
    root_real = os.path.realpath(root)
    path = os.path.realpath(os.path.join(root_real, *rel.parts))
    if os.path.commonpath([root_real, path]) != root_real:
        return None, f"path {relative!r} escapes the catalogue's image root (through a link)"
    return Path(path), None


def check_image(root: Path, relative: str | None, max_pixels: int) -> tuple[str, str | None]:
    """(status, detail): status is ``ok``, ``absent`` or ``bad``."""
    if relative is None:
        return ABSENT, None
    if not relative.strip():
        return "bad", "image path is empty"
    path, reason = resolve_image(root, relative)
    if path is None:
        return "bad", reason
    if not path.is_file():
        return "bad", f"image file not found: {relative}"
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > max_pixels:
                return "bad", f"image {relative} has {w}x{h} pixels, above validate.max_image_pixels"
            if img.format == "JPEG":
                img.draft("RGB", (max(1, w // 8), max(1, h // 8)))  # fast decode, still reads every byte
            img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return "bad", f"image {relative} cannot be decoded: {exc}"
    return OK, None


def check_images(listings: pd.DataFrame, root: Path, workers: int, max_pixels: int) -> pd.DataFrame:
    """Columns ``image_status`` and ``image_error`` for every listing (decoding in threads)."""
    images = listings["image"].tolist()
    results: list[tuple[str, str | None]] = []
    with progress("validate: decoding images", len(images), unit="img") as advance, ThreadPoolExecutor(workers) as pool:
        for res in pool.map(lambda rel: check_image(root, rel, max_pixels), images):
            results.append(res)
            advance(1)
    return pd.DataFrame(results, columns=["image_status", "image_error"], index=listings.index)
