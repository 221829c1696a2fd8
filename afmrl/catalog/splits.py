"""Product-level splits and the query/gallery protocol used by evaluation.

Splits: a listing whose ``split`` is null gets one from a seeded hash of its ``product_id``
(of its ``listing_id`` when the product is unknown), so every listing of one product lands on the
same side and adding products never moves existing ones. Listings that already carry a split (a
dataset's own split, or ``gallery`` for reference listings) keep it.

Query/gallery protocol for an evaluation split S (deterministic, documented in the README):
1. The gallery holds every listing of split S plus every ``gallery`` listing (a shop's catalogue).
2. A product of S that has ``gallery`` listings: all its listings in S are queries.
3. Otherwise, a product with two or more listings in S: its listing with the smallest seeded hash
   stays in the gallery, the others are queries.
4. Products with one listing and unlabeled listings stay in the gallery as distractors.
A query is never its own gallery item; its relevant items are the gallery listings of its product.

Product-disjoint setting (:func:`hold_out_products`): a share of the products is never trained on and
the evaluation split's queries are only those products (split ``unused`` marks what no one reads).
Learned lexicons read :func:`training_listings` only.
"""

from __future__ import annotations

import hashlib

import pandas as pd

from afmrl.config import SplitConfig


def stable_unit(seed: int, key: str) -> float:
    """A uniform number in [0, 1) from a seed and a key, stable across runs and platforms."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assign_splits(listings: pd.DataFrame, cfg: SplitConfig, groups: pd.Series | None = None) -> pd.DataFrame:
    """Fill null ``split`` values by product (or by ``groups``, a coarser grouping of products, e.g.
    a family of near-duplicates kept together so evaluation sees them side by side); existing
    values are kept."""
    df = listings.copy()
    keys = df["product_id"].where(df["product_id"].notna(), "listing:" + df["listing_id"].astype(str))
    if groups is not None:
        keys = groups.where(groups.notna(), keys)
    u = keys.map(lambda k: stable_unit(cfg.seed, str(k)))
    test_cut = cfg.test_fraction
    val_cut = cfg.test_fraction + cfg.val_fraction
    drawn = pd.Series("train", index=df.index, dtype="object")
    drawn[u < val_cut] = "val"
    drawn[u < test_cut] = "test"
    df["split"] = df["split"].where(df["split"].notna(), drawn)
    return df


def eval_roles(listings: pd.DataFrame, split: str, seed: int = 0) -> pd.Series:
    """Role of each listing for evaluation on ``split``: 'query', 'gallery' or missing (not used)."""
    df = listings
    roles = pd.Series(None, index=df.index, dtype="object")
    in_split = df["split"] == split
    in_gallery = df["split"] == "gallery"
    roles[in_split | in_gallery] = "gallery"
    labelled = df[in_split & df["product_id"].notna()]
    catalogue_products = set(df.loc[in_gallery & df["product_id"].notna(), "product_id"])
    for product, group in labelled.groupby("product_id", sort=True):
        if product in catalogue_products:
            roles[group.index] = "query"
        elif len(group) >= 2:
            order = group["listing_id"].map(lambda lid: stable_unit(seed, str(lid))).sort_values(kind="stable")
            roles[order.index[1:]] = "query"
    return roles


UNUSED = "unused"  # held out of training and evaluation (product-disjoint setting)


def hold_out_products(listings: pd.DataFrame, share: float, seed: int, eval_split: str) -> pd.DataFrame:
    """The product-disjoint setting: ``share`` of the products (those with a catalogue ``gallery``
    listing, or every labelled product when the catalogue has none), chosen by a stable hash of
    (``seed``, product id), are held out: their ``train`` listings move to split ``unused`` (never
    trained on), and the other products' listings in ``eval_split`` move to ``unused`` too, so the
    evaluation's queries are only unseen products. ``gallery`` listings all stay (the shop's whole
    catalogue is the gallery; seen products are distractors) and unlabelled listings keep their split."""
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1), got {share}")
    if eval_split in ("train", "gallery", UNUSED):
        raise ValueError(f"eval_split {eval_split!r}: evaluate on a split other than train, gallery and unused")
    df = listings.copy()
    labelled = df["product_id"].notna()
    gallery = df["split"] == "gallery"
    pool = df.loc[gallery & labelled, "product_id"] if (gallery & labelled).any() else df.loc[labelled, "product_id"]
    products = sorted(set(pool.astype(str)))
    if len(products) < 2:
        raise ValueError(f"{len(products)} product(s): a product-disjoint split needs at least two")
    n_held = min(len(products) - 1, max(1, round(share * len(products))))
    ranked = sorted(products, key=lambda p: (stable_unit(seed, p), p))
    held = set(ranked[:n_held])
    is_held = df["product_id"].astype(str).isin(held) & labelled
    df.loc[(df["split"] == "train") & is_held, "split"] = UNUSED
    df.loc[(df["split"] == eval_split) & labelled & ~is_held, "split"] = UNUSED
    return df


def training_listings(listings: pd.DataFrame) -> pd.DataFrame:
    """What a learned lexicon (the rules extractor's brands) may be fitted on: the ``train`` split and
    the catalogue (``gallery``) listings of products that have a train listing (the catalogue listings
    training pairs photos with), never an evaluation product's own catalogue listing in a
    product-disjoint setting. A catalogue without a train split has nothing held back: the whole
    frame is used."""
    train = listings["split"] == "train"
    if not train.any():
        return listings
    seen = set(listings.loc[train & listings["product_id"].notna(), "product_id"])
    return listings[train | ((listings["split"] == "gallery") & listings["product_id"].isin(seen))]
