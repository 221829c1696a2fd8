"""Training pairs from a catalogue, with no product labels (except for the oracle).

Pairing (``train.pairing``; ``auto`` picks by what the data has):
- ``image_text``: view a = the listing's image, view b = its text (title, attributes, description);
- ``title_description``: view a = title (+ attributes), view b = description; a listing without a
  description is paired with another offer of the same product (title-only offers), as the
  benchmark protocol allows, and dropped when it has none;
- ``same_product``: view a = the listing's text, view b = another offer of the same product.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from afmrl.attributes.schema import serialize_attributes
from afmrl.catalog.io import Catalog
from afmrl.config import EncoderConfig, TrainConfig
from afmrl.errors import DataError
from afmrl.models.encoders.base import compose_text
from afmrl.models.inputs import listing_attributes, listing_texts


def neighbour_keys(df: pd.DataFrame, attrs: list[dict[str, Any]]) -> list[tuple]:
    return [(c, a.get("brand")) for c, a in zip(df["category"], attrs, strict=True)]


@dataclass
class PairSet:
    """Row i: the two views of training item i, as inputs for the towers."""

    ids: list[str]
    a_kind: str
    b_kind: str
    a_inputs: list[Any]
    b_inputs: list[Any]
    attrs: list[dict[str, Any]]
    keys: list[tuple]
    products: np.ndarray  # int codes, -1 unknown: oracle and no-duplicate batching only
    pairing: str
    stats: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


def choose_pairing(df: pd.DataFrame, requested: str) -> str:
    if requested != "auto":
        return requested
    if df["image"].notna().mean() > 0.5:
        return "image_text"
    if df["description"].notna().mean() > 0.3:
        return "title_description"
    return "same_product"


def build_pairs(catalog: Catalog, splits: tuple[str, ...], enc: EncoderConfig, train: TrainConfig) -> PairSet:
    df = catalog.listings[catalog.listings["split"].isin(splits)].reset_index(drop=True)
    if df.empty:
        raise DataError(f"no listings in split(s) {list(splits)}", field="split")
    pairing = choose_pairing(df, train.pairing)
    attrs = listing_attributes(df, enc)
    codes = {p: i for i, p in enumerate(sorted(df["product_id"].dropna().unique()))}
    products = np.array([codes.get(p, -1) if p is not None else -1 for p in df["product_id"]], dtype=np.int64)
    rng = random.Random(train.seed)
    by_product: dict[int, list[int]] = {}
    for i, p in enumerate(products):
        if p >= 0:
            by_product.setdefault(int(p), []).append(i)

    def partner(i: int) -> int | None:
        others = [j for j in by_product.get(int(products[i]), []) if j != i] if products[i] >= 0 else []
        return rng.choice(others) if others else None

    keep, a_in, b_in = [], [], []
    if pairing == "image_text":
        texts = listing_texts(df, attrs, enc)
        for i, img in enumerate(df["image"]):
            if img is not None:
                keep.append(i)
                a_in.append(str(catalog.image_root / img))
                b_in.append(texts[i])
        a_kind, b_kind = "image", "text"
    else:
        a_kind = b_kind = "text"
        heads = [compose_text(t, None, serialize_attributes(a) if enc.attributes_in_text else None)
                 for t, a in zip(df["title"], attrs, strict=True)]  # fmt: skip
        for i, desc in enumerate(df["description"]):
            if pairing == "title_description" and desc:
                keep.append(i)
                a_in.append(heads[i])
                b_in.append(desc)
            elif (j := partner(i)) is not None:
                keep.append(i)
                a_in.append(heads[i])
                b_in.append(heads[j])
    stats = {"items": len(keep), "dropped_without_pair": len(df) - len(keep), "pairing": pairing}
    all_keys = neighbour_keys(df, attrs)
    return PairSet(
        ids=[df["listing_id"].iloc[i] for i in keep], a_kind=a_kind, b_kind=b_kind, a_inputs=a_in, b_inputs=b_in,
        attrs=[attrs[i] for i in keep], keys=[all_keys[i] for i in keep],
        products=products[keep], pairing=pairing, stats=stats,
    )  # fmt: skip
