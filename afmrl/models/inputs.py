"""What an encoder sees of a listing: its attributes (``encoder.attributes_source``), its text
(title, serialised attributes, description) and its image path. Training, evaluation and indexing
all build their encoder inputs here, so the three see a listing the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from afmrl.attributes.schema import serialize_attributes
from afmrl.catalog.io import Catalog
from afmrl.catalog.schema import parse_json_object
from afmrl.config import EncoderConfig
from afmrl.errors import DataError
from afmrl.models.encoders.base import compose_text


def listing_attributes(df: pd.DataFrame, enc: EncoderConfig) -> list[dict[str, Any]]:
    """The attributes the representation model and AGCL see (``encoder.attributes_source``)."""
    if enc.attributes_source == "none":
        return [{} for _ in range(len(df))]
    if enc.attributes_source == "provided":
        return [parse_json_object(a, record=lid) for a, lid in zip(df["attributes"], df["listing_id"], strict=True)]
    if enc.attributes_source == "file":
        if not enc.attributes_file:
            raise DataError("encoder.attributes_source=file needs encoder.attributes_file", field="encoder.attributes_file")
        table = pd.read_parquet(enc.attributes_file, columns=["listing_id", "attributes"])
        by_id = {lid: json.loads(a) if isinstance(a, str) else (a or {}) for lid, a in
                 zip(table["listing_id"], table["attributes"], strict=True)}  # fmt: skip
        return [by_id.get(lid, {}) for lid in df["listing_id"]]
    from afmrl.attributes.extractors.rules import extract_frame  # rules backend

    return extract_frame(df)


def listing_texts(df: pd.DataFrame, attrs: list[dict[str, Any]], enc: EncoderConfig) -> list[str]:
    return [compose_text(t, d, serialize_attributes(a) if enc.attributes_in_text else None)
            for t, d, a in zip(df["title"], df["description"], attrs, strict=True)]  # fmt: skip


def image_paths(catalog: Catalog, images: pd.Series) -> list[str | None]:
    return [str(Path(catalog.image_root) / p) if p is not None else None for p in images]
