"""Pre-checks that feed the expectation suite: image paths stay inside the root and decode, JSON
columns hold JSON objects, prices are finite numbers."""

from __future__ import annotations

import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
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


_JSON_TYPES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}  # fmt: skip


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed")  # NaN / Infinity: not JSON, and other readers reject them


def check_json_object(text: object) -> str | None:
    """None when ``text`` is a JSON object (or empty: no attributes), else why not."""
    if text is None or text == "":
        return None
    if not isinstance(text, str):
        return f"expected JSON text, got {type(text).__name__}"
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        return "not valid JSON: nested too deeply"
    except json.JSONDecodeError as exc:
        return f"not valid JSON: {exc}"
    except ValueError as exc:  # a constant above, or an integer too long to convert
        return f"not valid JSON: {str(exc).split(': use')[0].split('; use')[0]}"
    if not isinstance(value, dict):
        return f"must be a JSON object, got {_JSON_TYPES.get(type(value), type(value).__name__)}"
    return None


def check_json_column(values: pd.Series) -> pd.Series:
    """Why each cell is not a JSON object (None where it is)."""
    return pd.Series([check_json_object(v) for v in values], index=values.index, dtype="object")


def stored_present(table_path: Path, column: str) -> np.ndarray | None:
    """Which rows have a value (not null) in ``column`` as stored in the Parquet file (None: no such
    column). pandas reads null floats as NaN; this tells a missing price from a stored NaN."""
    if column not in pq.read_schema(table_path).names:
        return None
    return pq.read_table(table_path, columns=[column]).column(column).is_valid().to_numpy(zero_copy_only=False)


def check_prices(prices: pd.Series, present: np.ndarray | None) -> pd.Series:
    """Why each price is not a usable number (None where it is fine or missing)."""
    out: list[str | None] = []
    for i, p in enumerate(prices):
        if p is None or (isinstance(p, float) and math.isnan(p)):
            stored = present is not None and bool(present[i])
            out.append("NaN is not a number (leave the price empty when there is none)" if stored else None)
        elif math.isinf(p):
            out.append(f"{p} is not a finite number")
        else:
            out.append(None)
    return pd.Series(out, index=prices.index, dtype="object")
