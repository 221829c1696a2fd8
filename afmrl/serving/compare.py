"""Why two listings match: the key attributes a candidate shares with the query, split into those that
agree and those that differ (normalised first, so ``1 l`` agrees with ``1000 ml``), plus the keys only
one side states, and the weighted agreement AGCL uses (:func:`afmrl.attributes.similarity.attribute_similarity`).

Sellers state only some attributes, so each side's key attributes are what it states merged over what
the rules extractor reads in its title (stated values win); a text query's are read from its text. The
extractor's brand lexicon is mined once from the catalogue the index was built from (else the brands
the candidates state), so a typed brand is recognised.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from afmrl.attributes.extractors.rules import RuleExtractor
from afmrl.attributes.schema import DEFAULT_SCHEMA
from afmrl.attributes.similarity import attribute_similarity


def as_attributes(value: Any) -> dict[str, Any]:
    """A stored ``attributes`` field (a dict, a JSON string or null) as a dict."""
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str) and value.strip():
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            return {}
        return parsed if isinstance(parsed, dict) else {}
    return {}


_extractors: dict[str, RuleExtractor] = {}
_lock = threading.Lock()


def catalog_extractor(folder: str | Path | None) -> RuleExtractor | None:
    """The rules extractor with the brand lexicon mined from a catalogue folder (once per folder)."""
    if not folder:
        return None
    key = str(Path(folder).resolve())
    with _lock:
        if key not in _extractors:
            table = Path(key) / "listings.parquet"
            if not table.is_file():
                return None
            columns = [c for c in ("title", "product_id", "attributes") if c in pq.read_schema(table).names]
            _extractors[key] = RuleExtractor.from_listings(pd.read_parquet(table, columns=columns))
        return _extractors[key]


def extractor_for(candidates: list[Mapping[str, Any]], base: RuleExtractor | None) -> RuleExtractor:
    """``base`` (the catalogue's lexicon), else a lexicon of the brands the candidates state."""
    if base is not None:
        return base
    brands: dict[str, str] = {}
    for attrs in candidates:
        brand = DEFAULT_SCHEMA.normalize({"brand": attrs.get("brand")}).get("brand") if attrs.get("brand") else None
        if brand:
            brands[brand.casefold()] = brand
    return RuleExtractor(brands=brands)


def key_attributes(extractor: RuleExtractor, title: str | None, stated: Mapping[str, Any] | None = None) -> dict[str, str]:
    """What a listing says about itself: its stated attributes over what the rules read in its title."""
    return extractor.extract(title or "", provided=dict(stated or {}))


def query_attributes(text: str | None, candidates: list[Mapping[str, Any]],
                     base: RuleExtractor | None = None) -> dict[str, str]:  # fmt: skip
    """Attributes read from a typed query (empty without text)."""
    if not text or not text.strip():
        return {}
    return key_attributes(extractor_for(candidates, base), text)


def compare(query: Mapping[str, Any], candidate: Mapping[str, Any]) -> dict[str, Any]:
    """``agree`` / ``differ`` (key -> values) over the keys both state, ``only_query`` / ``only_candidate``,
    and ``similarity`` (weighted agreement over shared keys; null when none is shared)."""
    q = DEFAULT_SCHEMA.normalize(query)
    c = DEFAULT_SCHEMA.normalize(candidate)
    agree = {k: q[k] for k in q if k in c and q[k] == c[k]}
    differ = {k: {"query": q[k], "candidate": c[k]} for k in q if k in c and q[k] != c[k]}
    shared = bool(agree or differ)
    return {
        "agree": agree,
        "differ": differ,
        "only_query": {k: v for k, v in q.items() if k not in c},
        "only_candidate": {k: v for k, v in c.items() if k not in q},
        "similarity": round(attribute_similarity(q, c, normalize=False), 4) if shared else None,
    }
