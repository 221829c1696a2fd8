"""Pair features: how much two listings agree, as numbers a classifier can weigh.

:class:`ListingView` prepares each listing once (normalised title and text, tokens, codes, numbers, brand,
attributes, price, embeddings, neighbour ranks); :func:`pair_features` turns index pairs into a feature
matrix. Missing evidence is NaN (no price on a side, no code in a title): the classifier learns what
absence means rather than reading it as disagreement. The feature set depends only on what the listings
hold (attribute keys, an encoder), never on labels.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from afmrl.catalog.schema import parse_json_object
from afmrl.dedup.text import code_similarity, codes, normalize, numbers, tokens

MAX_ATTRIBUTE_KEYS = 12  # the most often stated keys get an agreement feature each
MIN_KEY_SHARE = 0.02  # ... when at least this share of listings states them


def _text(value: Any) -> str:
    return normalize(value)


def _price(value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return float("nan")
    return x if math.isfinite(x) and x > 0 else float("nan")


@dataclass
class ListingView:
    """Per-listing evidence for pair features (row ``i`` is ``listings.iloc[i]``)."""

    ids: list[str]
    titles: list[str]
    texts: list[str]
    token_sets: list[set[str]]
    code_sets: list[set[str]]
    number_sets: list[set[str]]
    brands: list[str]
    attributes: list[dict[str, str]]
    categories: list[set[str]]
    prices: np.ndarray
    currencies: list[str]
    attribute_keys: list[str]
    title_tfidf: sparse.csr_matrix
    char_tfidf: sparse.csr_matrix
    text_tfidf: sparse.csr_matrix
    embeddings: dict[str, np.ndarray] = field(default_factory=dict)  # name -> (n, d) L2-normalised
    ranks: dict[str, dict[tuple[int, int], int]] = field(default_factory=dict)  # name -> (i, j) -> rank of j for i
    best: dict[str, np.ndarray] = field(default_factory=dict)  # name -> each listing's best neighbour cosine
    top_k: int = 10

    @classmethod
    def build(cls, listings: pd.DataFrame) -> ListingView:
        n = len(listings)
        ids = [str(x) for x in listings["listing_id"]]
        titles = [_text(t) for t in listings["title"]]
        col = lambda name: listings[name] if name in listings else pd.Series([None] * n)  # noqa: E731
        descriptions = [_text(d) for d in col("description")]
        attrs: list[dict[str, str]] = []
        for raw, lid in zip(col("attributes"), ids, strict=True):
            parsed = parse_json_object(raw, record=lid) if raw is not None else {}
            attrs.append({str(k).lower(): _text(v) for k, v in parsed.items() if _text(v)})
        brands = [a.pop("brand", "") for a in attrs]
        key_counts = Counter(k for a in attrs for k in a)
        keys = [k for k, c in key_counts.most_common(MAX_ATTRIBUTE_KEYS) if c >= max(2, MIN_KEY_SHARE * n)]
        attr_text = [" ".join(a.values()) for a in attrs]
        texts = [" ".join(filter(None, (b, t, a, d))) for b, t, a, d in zip(brands, titles, attr_text, descriptions, strict=True)]
        code_source = [" ".join(filter(None, (t, a))) for t, a in zip(titles, attr_text, strict=True)]
        word = TfidfVectorizer(token_pattern=r"[a-z0-9]+", sublinear_tf=True, lowercase=False, dtype=np.float32)
        char = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, lowercase=False,
                               dtype=np.float32, min_df=2)  # fmt: skip
        full = TfidfVectorizer(token_pattern=r"[a-z0-9]+", sublinear_tf=True, lowercase=False, dtype=np.float32,
                               max_features=200_000)  # fmt: skip
        safe = lambda xs: [x or "_" for x in xs]  # noqa: E731 - an empty text is a document too
        return cls(
            ids=ids, titles=titles, texts=texts,
            token_sets=[set(tokens(t)) for t in titles],
            code_sets=[codes(t) for t in code_source],
            number_sets=[numbers(t) for t in titles],
            brands=brands, attributes=attrs,
            categories=[set(tokens(_text(c))) for c in col("category")],
            prices=np.array([_price(p) for p in col("price")], dtype=np.float64),
            currencies=[_text(c) for c in col("currency")],
            attribute_keys=keys,
            title_tfidf=word.fit_transform(safe(titles)).tocsr(),
            char_tfidf=char.fit_transform(safe(titles)).tocsr(),
            text_tfidf=full.fit_transform(safe(texts)).tocsr(),
        )  # fmt: skip

    def feature_names(self) -> list[str]:
        names = ["title_tfidf", "title_char", "text_tfidf", "jaccard", "containment", "length_ratio",
                 "code_sim", "code_a", "code_b", "number_jaccard", "number_conflict",
                 "brand_equal", "brand_in_other", "category_jaccard", "price_log_ratio"]  # fmt: skip
        names += [f"attr_{k}" for k in self.attribute_keys]
        for name in self.embeddings:
            names.append(f"cos_{name}")
            names.append(f"cos_gap_{name}")
        for name in self.ranks:
            names += [f"rank_{name}_ab", f"rank_{name}_ba"]
        return names


def _row_cosine(m: sparse.csr_matrix, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.asarray(m[a].multiply(m[b]).sum(axis=1)).ravel()


def _set_features(x: set[str], y: set[str]) -> tuple[float, float]:
    if not x or not y:
        return float("nan"), float("nan")
    inter = len(x & y)
    return inter / len(x | y), inter / min(len(x), len(y))


def _brand_equal(a: str, b: str) -> float:
    if not a or not b:
        return float("nan")
    return 1.0 if a == b or a.replace(" ", "") == b.replace(" ", "") else 0.0


def _brand_in(brand: str, title: str) -> float:
    return float("nan") if not brand else float(brand in title)


def pair_features(view: ListingView, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Features of the pairs (a[k], b[k]) (row indices into the view), columns :meth:`ListingView.feature_names`."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    cols: list[np.ndarray] = [
        _row_cosine(view.title_tfidf, a, b), _row_cosine(view.char_tfidf, a, b), _row_cosine(view.text_tfidf, a, b),
    ]  # fmt: skip
    rows = []
    for i, j in zip(a.tolist(), b.tolist(), strict=True):
        ti, tj = view.token_sets[i], view.token_sets[j]
        jac, cont = _set_features(ti, tj)
        length = min(len(ti), len(tj)) / max(len(ti), len(tj)) if ti and tj else float("nan")
        ci, cj = view.code_sets[i], view.code_sets[j]
        ni, nj = view.number_sets[i], view.number_sets[j]
        num_jac = _set_features(ni, nj)[0]
        num_conflict = float(bool(ni) and bool(nj) and not (ni & nj))
        bi, bj = view.brands[i], view.brands[j]
        brand_in = np.nanmax([_brand_in(bi, view.titles[j]), _brand_in(bj, view.titles[i]), -1.0])
        cat = _set_features(view.categories[i], view.categories[j])[0]
        pi, pj = view.prices[i], view.prices[j]
        same_currency = view.currencies[i] == view.currencies[j] or not view.currencies[i] or not view.currencies[j]
        price = abs(math.log(pi / pj)) if same_currency and pi == pi and pj == pj else float("nan")
        row = [jac, cont, length, code_similarity(ci, cj), float(len(ci)), float(len(cj)), num_jac, num_conflict,
               _brand_equal(bi, bj), float("nan") if brand_in < 0 else brand_in, cat, price]  # fmt: skip
        ai, aj = view.attributes[i], view.attributes[j]
        for key in view.attribute_keys:
            x, y = ai.get(key), aj.get(key)
            row.append(float("nan") if not x or not y else float(x == y))
        rows.append(row)
    table = np.asarray(rows, dtype=np.float64).reshape(len(a), -1)
    parts = [np.column_stack(cols), table]
    for name, vectors in view.embeddings.items():
        sims = np.einsum("ij,ij->i", vectors[a], vectors[b]).astype(np.float64)
        best = view.best.get(name, np.full(len(vectors), np.nan))
        parts.append(sims[:, None])
        parts.append(np.minimum(best[a] - sims, best[b] - sims)[:, None])  # 0: b is a's nearest or a is b's
    for ranks in view.ranks.values():
        miss = view.top_k + 1
        ab = np.array([ranks.get((i, j), miss) for i, j in zip(a.tolist(), b.tolist(), strict=True)], np.float64)
        ba = np.array([ranks.get((j, i), miss) for i, j in zip(a.tolist(), b.tolist(), strict=True)], np.float64)
        parts += [np.minimum(ab, ba)[:, None], np.maximum(ab, ba)[:, None]]
    return np.hstack(parts)

