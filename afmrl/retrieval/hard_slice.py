"""The hard slice of an evaluation task: queries with a near-duplicate of another product in the gallery.

The rule (quoted in the README): a query is *hard* for a task when that task's gallery holds a
listing of another product (one not relevant to the query) whose key attributes agree with the query
product's on every key both state except exactly one, with at least 2 keys stated by both.

- **Key attributes** are the schema's keys of every kind but ``label`` (``coarse_class`` and
  ``fine_class`` name the product: they are identifiers, not attributes), values normalised as the
  schema normalises them (``afmrl.attributes.schema``).
- **Which attributes**: a listing's ``reference_attributes`` (evaluation data, never a model input)
  merged over the rules extractor's attributes of the listing's text (title and description, plus the
  shop-published ``attributes``), the brand lexicon fitted on the catalogue's training listings only
  (:func:`afmrl.catalog.splits.training_listings`, as the encoder's rules are). So a text-only
  offer whose reference only names its brand still gets its model, size, colour... from its title.
- A listing left with no key attribute at all (a shopper photo: no text, no published attributes)
  takes its product's catalogue (``gallery``) listing's: the query *product's* attributes decide.

``{task}_hard_R@1`` (and ``_R@5``, ``_mAP@10``, ``_MRR``, ``_queries``) is the task's figure on that
slice; a task whose slice is empty reports none.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from afmrl.attributes.schema import DEFAULT_SCHEMA, AttributeSchema
from afmrl.catalog.schema import parse_json_object
from afmrl.catalog.splits import training_listings

_CHUNK = 512  # query rows compared at once (memory: a few chunk x gallery arrays)


def key_names(schema: AttributeSchema = DEFAULT_SCHEMA) -> tuple[str, ...]:
    """The schema's key attributes: every key whose kind is not ``label``."""
    return tuple(k for k, spec in schema.specs.items() if spec.kind != "label")


def key_attributes(listings: pd.DataFrame, catalogue: pd.DataFrame | None = None,
                   schema: AttributeSchema = DEFAULT_SCHEMA) -> list[dict[str, str]]:  # fmt: skip
    """Each row's key attributes (the module's rule). ``catalogue``: the whole catalogue's listings (all
    splits), whose training listings the rules' lexicon is fitted on (``listings`` itself when None)."""
    from afmrl.attributes.extractors.rules import RuleExtractor

    keys = key_names(schema)
    fit = training_listings(listings if catalogue is None else catalogue)
    rules = RuleExtractor.from_listings(fit, schema, keys=keys) if len(fit) else RuleExtractor(schema, keys=keys)
    out: list[dict[str, str]] = []
    for row in listings.to_dict("records"):
        lid = row.get("listing_id")
        provided = parse_json_object(row.get("attributes"), record=lid, field="attributes")
        found = rules.extract(_text(row.get("title")), _text(row.get("description")), None, provided)
        reference = schema.normalize(parse_json_object(row.get("reference_attributes"), record=lid,
                                                       field="reference_attributes"))  # fmt: skip
        merged = {**found, **reference}
        out.append(schema.ordered({k: v for k, v in merged.items() if k in keys and v}))
    return _product_fallback(listings, out)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _product_fallback(listings: pd.DataFrame, attrs: list[dict[str, str]]) -> list[dict[str, str]]:
    """Rows without any key attribute take their product's catalogue (``gallery``) listing's."""
    if "split" not in listings.columns:
        return attrs
    by_product: dict[Any, dict[str, str]] = {}
    for a, split, product in zip(attrs, listings["split"], listings["product_id"], strict=True):
        if split == "gallery" and a and product is not None and product == product:
            by_product.setdefault(product, a)
    return [a or dict(by_product.get(p, {})) for a, p in zip(attrs, listings["product_id"], strict=True)]


def _codes(attrs: Sequence[dict[str, str]], keys: Sequence[str]) -> np.ndarray:
    """rows x keys integer codes; -1 where the row does not state the key."""
    codes = np.full((len(attrs), len(keys)), -1, dtype=np.int32)
    for j, key in enumerate(keys):
        vocab: dict[str, int] = {}
        for i, a in enumerate(attrs):
            value = a.get(key)
            if value:
                codes[i, j] = vocab.setdefault(value, len(vocab))
    return codes


def near_duplicates(q_attrs: Sequence[dict[str, str]], g_attrs: Sequence[dict[str, str]]) -> np.ndarray:
    """queries x gallery: True where the two state >= 2 keys in common and disagree on exactly one."""
    keys = sorted({k for a in (*q_attrs, *g_attrs) for k in a})
    out = np.zeros((len(q_attrs), len(g_attrs)), dtype=bool)
    if not keys or not len(q_attrs) or not len(g_attrs):
        return out
    codes = _codes([*q_attrs, *g_attrs], keys)
    q, g = codes[: len(q_attrs)], codes[len(q_attrs):]
    for start in range(0, len(q), _CHUNK):  # one key at a time: chunk x gallery counters, not x keys
        qc = q[start:start + _CHUNK]
        common = np.zeros((len(qc), len(g)), dtype=np.int16)
        differ = np.zeros((len(qc), len(g)), dtype=np.int16)
        for j in range(len(keys)):
            both = (qc[:, j, None] >= 0) & (g[None, :, j] >= 0)
            common += both
            differ += both & (qc[:, j, None] != g[None, :, j])
        out[start:start + _CHUNK] = (common >= 2) & (differ == 1)
    return out


def hard_queries(q_attrs: Sequence[dict[str, str]], g_attrs: Sequence[dict[str, str]],
                 other_product: np.ndarray) -> np.ndarray:  # fmt: skip
    """One flag per query: its gallery (``g_attrs``) holds a near-duplicate of another product;
    ``other_product`` (queries x gallery) is True where the gallery item is another product's (not
    relevant to the query and not the query itself)."""
    return (near_duplicates(q_attrs, g_attrs) & other_product).any(axis=1)
