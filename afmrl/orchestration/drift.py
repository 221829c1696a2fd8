"""Catalogue drift: the Population Stability Index (PSI) per feature between two catalogues.

For a feature binned into ``k`` bins with reference shares ``p_i`` and current shares ``q_i`` (each
floored at ``1e-4``)::

    PSI = sum_i (q_i - p_i) * ln(q_i / p_i)

Features (``trigger.drift_features``): ``category``, ``currency``, ``source`` and ``has_image`` are
categorical (one bin per value, a missing value is its own bin, a value unseen in the reference has
reference share 0); ``title_length`` (characters) and ``price`` are numeric, binned at the
reference's quantiles (``trigger.drift_bins``, tied edges merged) plus one bin for missing values.
Quantile bins make PSI independent of units and of monotone transforms (raw or log price give the
same value). It needs no embeddings, so it runs before any model does. Rule of thumb: < 0.1 stable,
0.1-0.25 a moderate shift, > 0.25 a major one. The reference is a *profile* (bin edges + shares,
:func:`profile_catalog`), so the old catalogue itself need not be kept.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

CATEGORICAL = ("category", "currency", "source", "has_image")
NUMERIC = ("title_length", "price")
MISSING = "<missing>"
EPS = 1e-4


def feature_values(listings: pd.DataFrame, feature: str) -> pd.Series:
    """One feature per listing: strings (categorical, missing -> ``<missing>``) or floats (NaN = missing)."""
    n = len(listings)
    if feature in ("category", "currency", "source"):
        col = listings[feature] if feature in listings.columns else pd.Series([None] * n, dtype="object")
        return col.map(
            lambda v: MISSING if v is None or (isinstance(v, float) and math.isnan(v)) or v == "" else str(v)
        )
    if feature == "has_image":
        col = listings["image"] if "image" in listings.columns else pd.Series([None] * n, dtype="object")
        return col.map(lambda v: "yes" if isinstance(v, str) and v else "no")
    if feature == "title_length":
        return (
            listings["title"]
            .map(lambda v: float(len(v)) if isinstance(v, str) else math.nan)
            .astype("float64")
        )
    if feature == "price":
        price = pd.to_numeric(listings["price"], errors="coerce").astype("float64")
        return price.where(price >= 0)  # a negative price is not a price: count it as missing
    raise ValueError(f"unknown drift feature {feature!r}; known: {CATEGORICAL + NUMERIC}")


def _numeric_bins(values: pd.Series, edges: list[float]) -> np.ndarray:
    """Counts per bin: ``len(edges) + 1`` intervals, then one bin for missing values."""
    arr = values.to_numpy(dtype="float64")
    present = arr[~np.isnan(arr)]
    counts = np.bincount(np.searchsorted(np.asarray(edges, dtype="float64"), present, side="right"),
                         minlength=len(edges) + 1).astype("float64")  # fmt: skip
    return np.append(counts, float(np.isnan(arr).sum()))


def profile_feature(values: pd.Series, feature: str, bins: int) -> dict[str, Any]:
    """The reference side of PSI for one feature: bin edges (numeric) and shares."""
    n = max(len(values), 1)
    if feature in CATEGORICAL:
        counts = values.value_counts(dropna=False)
        return {"kind": "categorical", "shares": {str(k): float(c) / n for k, c in sorted(counts.items())}}
    present = values.dropna().to_numpy(dtype="float64")
    if len(present):
        qs = np.quantile(present, [i / bins for i in range(1, bins)])
        edges = sorted({float(q) for q in qs})
    else:
        edges = []
    counts = _numeric_bins(values, edges)
    return {"kind": "numeric", "edges": edges, "shares": (counts / n).tolist()}


def profile_catalog(listings: pd.DataFrame, features: list[str], bins: int = 10) -> dict[str, Any]:
    """Profile of a catalogue (what the trigger keeps of the catalogue a model was trained on)."""
    return {
        "rows": len(listings),
        "bins": bins,
        "features": {f: profile_feature(feature_values(listings, f), f, bins) for f in features},
    }


def psi(expected: np.ndarray | list[float], actual: np.ndarray | list[float], eps: float = EPS) -> float:
    """Population stability index of two share vectors over the same bins (shares floored at ``eps``)."""
    p = np.maximum(np.asarray(expected, dtype="float64"), eps)
    q = np.maximum(np.asarray(actual, dtype="float64"), eps)
    if p.shape != q.shape:
        raise ValueError(f"share vectors differ in length: {p.shape} vs {q.shape}")
    return float(np.sum((q - p) * np.log(q / p)))


def feature_psi(reference: dict[str, Any], values: pd.Series) -> float:
    """PSI of current ``values`` against one feature's reference profile."""
    n = max(len(values), 1)
    if reference["kind"] == "categorical":
        ref_shares: dict[str, float] = reference["shares"]
        counts = values.value_counts(dropna=False)
        cur_shares = {str(k): float(c) / n for k, c in counts.items()}
        keys = sorted(set(ref_shares) | set(cur_shares))
        return psi([ref_shares.get(k, 0.0) for k in keys], [cur_shares.get(k, 0.0) for k in keys])
    counts = _numeric_bins(values, reference["edges"])
    return psi(reference["shares"], counts / n)


def drift_against_profile(
    profile: dict[str, Any], listings: pd.DataFrame, features: list[str]
) -> dict[str, float]:
    """PSI per feature of a catalogue against a recorded profile (features the profile lacks are skipped)."""
    out: dict[str, float] = {}
    for f in features:
        ref = profile.get("features", {}).get(f)
        if ref is not None:
            out[f] = feature_psi(ref, feature_values(listings, f))
    return out


def catalogue_drift(
    reference: pd.DataFrame, current: pd.DataFrame, features: list[str], bins: int = 10
) -> dict[str, float]:
    """PSI per feature between two catalogues' listings (bins from the reference)."""
    return drift_against_profile(profile_catalog(reference, features, bins), current, features)
