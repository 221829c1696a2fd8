"""What an encoder sees of a listing: its attributes (``encoder.attributes_source``), its text
(title, serialised attributes, description) and its image path. Training, evaluation and indexing
all build their encoder inputs here, so the three see a listing the same way.

``attributes_source=rules`` fits the rules' brand lexicon on the catalogue's training listings only
(:func:`afmrl.catalog.splits.training_listings`: the train split and its products' catalogue
listings; the whole frame when there is no train split) and applies it to every listing: callers
pass the whole catalogue's listings as ``fit_on``, so training, evaluation and indexing use one lexicon.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from afmrl.attributes.schema import serialize_attributes
from afmrl.catalog.io import Catalog
from afmrl.catalog.schema import parse_json_object
from afmrl.catalog.splits import training_listings
from afmrl.config import EncoderConfig
from afmrl.errors import DataError
from afmrl.models.encoders.base import compose_text


def listing_attributes(df: pd.DataFrame, enc: EncoderConfig, fit_on: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """The attributes the representation model and AGCL see (``encoder.attributes_source``); ``fit_on``:
    the catalogue's listings (all splits) whose training listings the rules lexicon is fitted on
    (``df`` itself when None)."""
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
    return rules_extractor(df if fit_on is None else fit_on).extract_frame(df)


_RULES: dict[int, Any] = {}  # fitted extractors by the content hash of what they were fitted on


def rules_extractor(listings: pd.DataFrame) -> Any:
    """The rules extractor (default settings, stated attributes merged) with its brand lexicon fitted
    on ``listings``' training listings (memoised: indexing calls this once per batch)."""
    from afmrl.attributes.extractors.rules import RuleExtractor  # rules backend

    fit = training_listings(listings)
    cols = [c for c in ("title", "product_id", "attributes") if c in fit.columns]
    key = int(pd.util.hash_pandas_object(fit[cols].astype("string"), index=False).sum()) ^ len(fit)
    if key not in _RULES:
        if len(_RULES) >= 4:
            _RULES.pop(next(iter(_RULES)))
        _RULES[key] = RuleExtractor.from_listings(fit)
    return _RULES[key]


def listing_texts(df: pd.DataFrame, attrs: list[dict[str, Any]], enc: EncoderConfig) -> list[str]:
    return [compose_text(t, d, serialize_attributes(a) if enc.attributes_in_text else None)
            for t, d, a in zip(df["title"], df["description"], attrs, strict=True)]  # fmt: skip


def image_paths(catalog: Catalog, images: pd.Series) -> list[str | None]:
    return [str(Path(catalog.image_root) / p) if p is not None else None for p in images]
