"""Training pairs from a catalogue, with no product labels (except for the oracle).

Pairing (``train.pairing``; ``auto`` picks by what the data has):
- ``image_text``: view a = the listing's image, view b = its text (title, attributes, description);
- ``title_description``: view a = title (+ attributes), view b = description; a listing without a
  description is paired with another offer of the same product (title-only offers), as the
  benchmark protocol allows, and dropped when it has none;
- ``same_product``: view a = the listing's text, view b = another offer of the same product;
- ``photo_catalogue`` (``auto`` picks it when the catalogue has ``gallery`` listings and the training
  photos carry no text, as a shopper's photo does): one item per training photo whose product has a
  catalogue listing; view a = the photo (kind ``image``), view b = the product's catalogue listing
  (kind ``listing``: its image and text, embedded as evaluation embeds a catalogue listing, fused).
  The positive comes from product identity (every method's training signal, which the benchmark
  protocol allows); no label reaches an input. The item's attributes, for AGCL and the neighbour
  sampler, are the catalogue listing's (its shop attributes: the product's), so photos of one
  product agree on every attribute and AGCL masks or weights them as each other's false negatives;
  the keys are (catalogue category, product type, else brand). The oracle sees the product ids.

With ``encoder.attributes_source=rules`` the lexicon is fitted on the catalogue's training listings
(:func:`afmrl.models.inputs.listing_attributes` with the whole catalogue as ``fit_on``).
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
from afmrl.models.inputs import image_paths, listing_attributes, listing_texts


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


def photo_catalogue_keys(categories: list[Any], attrs: list[dict[str, Any]]) -> list[tuple]:
    """Neighbour keys of photo -> catalogue items: (catalogue category, product type, else brand)."""
    return [(c, a.get("product_type") or a.get("brand")) for c, a in zip(categories, attrs, strict=True)]


def bare_photos(df: pd.DataFrame) -> pd.Series:
    """Listings that are a photo and nothing else (no title, no description): shopper photos."""
    return df["image"].notna() & df["title"].isna() & df["description"].isna()


def choose_pairing(df: pd.DataFrame, requested: str, gallery: pd.DataFrame | None = None) -> str:
    """``requested``, or for ``auto`` what ``df`` (the training listings) and the catalogue's
    ``gallery`` listings allow (see the module docstring)."""
    if requested != "auto":
        return requested
    if gallery is not None and len(gallery) and bare_photos(df).mean() > 0.5:
        return "photo_catalogue"
    if df["image"].notna().mean() > 0.5:
        return "image_text"
    if df["description"].notna().mean() > 0.3:
        return "title_description"
    return "same_product"


def build_pairs(catalog: Catalog, splits: tuple[str, ...], enc: EncoderConfig, train: TrainConfig) -> PairSet:
    df = catalog.listings[catalog.listings["split"].isin(splits)].reset_index(drop=True)
    if df.empty:
        raise DataError(f"no listings in split(s) {list(splits)}", field="split")
    gallery = catalog.listings[catalog.listings["split"] == "gallery"]
    pairing = choose_pairing(df, train.pairing, gallery)
    if pairing == "photo_catalogue":
        return photo_catalogue_pairs(catalog, df, gallery, enc)
    attrs = listing_attributes(df, enc, catalog.listings)
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


def photo_catalogue_pairs(catalog: Catalog, df: pd.DataFrame, gallery: pd.DataFrame, enc: EncoderConfig) -> PairSet:
    """Training photos of ``df`` paired with their product's catalogue listing (``photo_catalogue``)."""
    gallery = gallery[gallery["product_id"].notna()].sort_values("listing_id", kind="stable").reset_index(drop=True)
    if gallery.empty:
        raise DataError("pairing photo_catalogue needs catalogue (split 'gallery') listings with a product_id",
                        field="train.pairing")  # fmt: skip
    first = gallery.drop_duplicates("product_id", keep="first").reset_index(drop=True)  # one listing per product
    g_attrs = listing_attributes(first, enc, catalog.listings)
    g_texts = listing_texts(first, g_attrs, enc)
    g_images = image_paths(catalog, first["image"])
    row_of = {p: i for i, p in enumerate(first["product_id"])}
    keep = [i for i, (img, p) in enumerate(zip(df["image"], df["product_id"], strict=True))
            if img is not None and p in row_of]  # fmt: skip
    if not keep:
        raise DataError("pairing photo_catalogue: no training photo has a product with a catalogue listing",
                        field="train.pairing")  # fmt: skip
    rows = [row_of[df["product_id"].iloc[i]] for i in keep]
    codes = {p: i for i, p in enumerate(sorted(df["product_id"].iloc[keep].unique()))}
    attrs = [g_attrs[r] for r in rows]
    stats = {"items": len(keep), "dropped_without_pair": len(df) - len(keep), "pairing": "photo_catalogue",
             "catalogue_listings": len(set(rows))}  # fmt: skip
    return PairSet(
        ids=[df["listing_id"].iloc[i] for i in keep], a_kind="image", b_kind="listing",
        a_inputs=[str(catalog.image_root / df["image"].iloc[i]) for i in keep],
        b_inputs=[(g_images[r], g_texts[r]) for r in rows], attrs=attrs,
        keys=photo_catalogue_keys([first["category"].iloc[r] for r in rows], attrs),
        products=np.array([codes[df["product_id"].iloc[i]] for i in keep], dtype=np.int64),
        pairing="photo_catalogue", stats=stats,
    )  # fmt: skip
