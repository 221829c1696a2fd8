"""Deterministic attribute extraction: a brand lexicon mined from the catalogue plus patterns.

- **brand**: a lexicon of the brands sellers state (``attributes.brand``) and of title openings
  mined from the catalogue: the first word (or two) of a title's main segment (seller spam split
  off at ``|`` and `` - ``) that opens titles of at least ``min_products`` different products,
  opens at most ``max_share`` of all titles (so ``NEW`` and ``FREE`` are not brands), opens at
  least ``min_opening_share`` of the titles that contain it anywhere (``toner``, ``usb``, ``ssd``
  and product lines such as ``nikkor`` open a few titles but mostly stand later in them, after the
  brand), does not stand before another candidate in half the titles it opens (``karta vga
  gigabyte``: a product word, then the brand) and is not a vocabulary word, unit, number or stop
  word. Spellings of one brand (``cooler master`` / ``coolermaster``) share one value: the one that
  opens the most titles. The earliest (then longest) lexicon match wins.
- **model**: the longest token with both letters and digits (``WH-1000XM3``, ``HL-L2375DW``) that
  is not a quantity (``32GB``), not the brand and not a generic code: one that the fitting titles of
  ``generic_code_products`` or more different products contain (``DDR3``, ``CL10``, ``UHS-I``,
  ``240-pin``: specs that many products share, not a model number).
- **size / capacity**: the first ``number unit`` of a physical family (ml, l, in, cm, g, oz...) is
  the size, of a storage/power family (GB, W, VA, mAh...) the capacity (see ``normalize``); a
  clothing size is read from ``size M`` or a trailing size letter in a clothing title.
- **colour / pattern / material / category**: the schema's vocabularies and synonyms, longest
  phrase first; ``Colour: red.``-style statements in the description take precedence.
- **provided attributes** (seller-stated, ``attributes`` column) are merged over what the rules
  found when ``use_provided`` (they are inputs, not labels; ``reference_attributes`` is never read).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from afmrl.attributes import normalize as N
from afmrl.attributes.schema import DEFAULT_SCHEMA, AttributeSchema
from afmrl.digest import digest_bytes

STOP_WORDS = frozenset(
    """a an the new for with and or of in on by to from free best hot top fast sale original genuine official
    premium pack set kit lot pcs piece pieces item items size colour color brand model mens men's womens women's
    kids unisex authentic used refurbished replacement compatible oem cheap deal deals offer buy shop store
    shipping delivery edition series version""".split()
)  # fmt: skip
CLOTHING_WORDS = frozenset({"t-shirt", "tee", "shirt", "tshirt", "hoodie", "jacket", "dress", "sweater", "jersey",
                            "polo", "trousers", "jeans", "shorts", "skirt", "coat"})  # fmt: skip
VOCAB_KEYS = ("colour", "pattern", "material", "category")
CAPACITY_ORDER = {f: i for i, f in enumerate(("storage", "charge", "power", "apparent_power", "voltage", "frequency"))}
NO_RULE_SYNONYMS = frozenset({"case", "uni", "check", "dot"})  # too ambiguous alone in free text
_SEGMENT_SPLIT = re.compile(r"\s+(?:\||-|–|—|/|::)\s+|\s*\|\s*")
_WORD = re.compile(r"[\w][\w&'.+-]*", re.UNICODE)
_MODEL_TOKEN = re.compile(r"(?<![\w-])([A-Za-z0-9][A-Za-z0-9\-./]{2,}[A-Za-z0-9])(?![\w-])")
_STATED = re.compile(
    r"\b(colou?r|pattern|size|material|brand|model|capacity)\s*:\s*([^:;|\n]{1,40}?)\s*(?=\.\s|\.$|;|,|\||\n|$)",
    re.IGNORECASE,
)
_CLOTHING_SIZE = re.compile(r"\bsize\s*:?\s*(xxs|xs|s|m|l|xl|xxl|xxxl|2xl|3xl)\b", re.IGNORECASE)
_TRAILING_SIZE = re.compile(r"\b(xxs|xs|s|m|l|xl|xxl|xxxl|2xl|3xl)\s*$", re.IGNORECASE)


def _json_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if not value or not isinstance(value, str):
        return {}
    try:
        out = json.loads(value)
    except json.JSONDecodeError:
        return {}
    return out if isinstance(out, dict) else {}


def main_segment(title: str) -> str:
    """The longest segment of a title split at ``|`` / `` - `` (seller spam sits in the others)."""
    parts = [p.strip() for p in _SEGMENT_SPLIT.split(title or "") if p and p.strip()]
    return max(parts, key=len) if parts else ""


def model_tokens(title: str) -> list[str]:
    """The title's tokens that may be a model number: letters and digits, not a quantity or a spec."""
    out = []
    for m in _MODEL_TOKEN.finditer(title or ""):
        tok = m.group(1)
        if not (any(c.isdigit() for c in tok) and any(c.isalpha() for c in tok)):
            continue
        if N.find_quantities(tok) or re.match(r"\d+x\d", tok):
            continue  # 32GB, 2.5-inch, 4x1GB: quantities, not model numbers
        if re.fullmatch(r"\d+(?:[.,]\d+)?[a-zA-Z/]+", tok) or re.fullmatch(r"[a-zA-Z]\d", tok):
            continue  # 4K, 12V, 16000dpi, 160mb/s: specs, not model numbers
        out.append(tok)
    return out


def generic_codes(titles: Sequence[str], products: Sequence[Any] | None = None, min_products: int = 3) -> frozenset[str]:
    """Normalised model-like codes that the titles of ``min_products`` or more different products hold
    (each title its own group without products): specs many products share (``ddr3``, ``cl10``), not
    model numbers. ``min_products`` 0 turns the filter off."""
    if min_products <= 0:
        return frozenset()
    groups: dict[str, set[Any]] = defaultdict(set)
    for i, title in enumerate(titles):
        group = products[i] if products is not None and products[i] is not None else f"#{i}"
        for tok in model_tokens(title):
            code = N.normalize_code(tok)
            if code:
                groups[code].add(group)
    return frozenset(c for c, g in groups.items() if len(g) >= min_products)


def _phrase_regex(phrases: Iterable[str]) -> re.Pattern[str] | None:
    ordered = sorted({p for p in phrases if p}, key=len, reverse=True)
    if not ordered:
        return None
    return re.compile(r"(?<![\w])(" + "|".join(re.escape(p) for p in ordered) + r")(?![\w])")


def _vocabulary(schema: AttributeSchema) -> dict[str, tuple[str, str]]:
    """phrase (case-folded) -> (key, canonical value) for the enum keys the rules look for."""
    out: dict[str, tuple[str, str]] = {}
    for key in VOCAB_KEYS:
        if key not in schema:
            continue
        spec = schema[key]
        for value in spec.vocabulary:
            out.setdefault(value, (key, value))
        for surface, canon in spec.synonyms.items():
            if surface not in NO_RULE_SYNONYMS:
                out.setdefault(surface, (key, canon))
    return out


def _non_brand_words(schema: AttributeSchema) -> set[str]:
    words = set(STOP_WORDS) | set(N.CLOTHING_SIZES) | set(N.UNITS) | CLOTHING_WORDS
    for spec in schema.specs.values():
        words |= {v.casefold() for v in spec.vocabulary} | {s.casefold() for s in spec.synonyms}
        words |= {w for v in spec.vocabulary for w in v.casefold().split()}
    return words


def _ngrams(title: str, skip: int = 0) -> list[str]:
    """The case-folded main segment's words and word pairs (brand candidates), from word ``skip`` on."""
    words = _WORD.findall(main_segment(title or "").casefold())[skip:]
    return words + [f"{x} {y}" for x, y in zip(words, words[1:], strict=False)]


def _squeeze(text: str) -> str:
    return re.sub(r"[\W_]+", "", text) or text


def mine_brands(
    titles: Sequence[str],
    products: Sequence[Any] | None = None,
    provided: Iterable[str] = (),
    *,
    schema: AttributeSchema = DEFAULT_SCHEMA,
    min_products: int = 2,
    max_share: float = 0.5,
    min_opening_share: float = 0.3,
) -> dict[str, str]:
    """Brand lexicon: surface form (case-folded) -> canonical brand. See the module docstring."""
    lexicon: dict[str, str] = {}
    for b in provided:
        canon = schema.normalize_value("brand", b) if "brand" in schema else N.clean_text(b)
        if canon:
            lexicon[canon] = canon
    stop = _non_brand_words(schema)
    groups: dict[str, set[Any]] = defaultdict(set)
    opened: dict[str, list[str]] = defaultdict(list)  # candidate -> the (case-folded) titles it opens
    for i, title in enumerate(titles):
        words = _WORD.findall(main_segment(title or "").casefold())
        if not words:
            continue
        group = products[i] if products is not None and products[i] is not None else f"#{i}"
        for n in (1, 2):
            if len(words) >= n:
                cand = " ".join(words[:n])
                groups[cand].add(group)
                opened[cand].append((title or "").casefold())
    openings = {c: len(t) for c, t in opened.items()}
    total = max(1, len(titles))
    accepted: dict[str, int] = {}
    for cand, grp in groups.items():
        words = cand.split()
        if len(grp) < min_products or openings[cand] / total > max_share:
            continue
        if any(w in stop or any(ch.isdigit() for ch in w) or len(w) < 2 for w in words):
            continue
        accepted[cand] = len(grp)
    if min_opening_share > 0 and accepted:  # a word that mostly stands later in titles is not a brand
        contains: Counter[str] = Counter()
        for title in titles:
            contains.update(set(_ngrams(title)) & accepted.keys())
        later = {c for c in accepted if openings[c] < min_opening_share * max(contains[c], 1)}
        accepted = {c: n for c, n in accepted.items() if c not in later and c.split()[0] not in later}  # "toner cartridge"

    def before_a_brand(cand: str) -> bool:  # "karta vga gigabyte", "pendrive ... kingston": a product word first
        first, skip = cand.split()[0], len(cand.split())
        later = sum(any(g in accepted and not g.startswith(first) for g in _ngrams(t, skip)) for t in opened[cand])
        return later >= 0.5 * len(opened[cand])

    accepted = {c: n for c, n in accepted.items() if not before_a_brand(c)}
    for cand, count in list(accepted.items()):  # keep "johnnie walker", drop "johnnie" when it always continues
        first = cand.split()[0]
        if " " in cand and first in accepted and count >= 0.8 * accepted[first]:
            accepted.pop(first, None)
    firsts = Counter(c.split()[0] for c in accepted if " " in c)
    for cand in accepted:
        first = cand.split()[0]
        if " " in cand and (first in lexicon or first in accepted):
            continue  # a known one-word brand followed by a product word
        # "i.pet cat", "i.pet multi": one brand opening several product words
        lexicon.setdefault(cand, first if " " in cand and firsts[first] >= 2 else cand)
    # one value per brand however it is spaced or punctuated ("cooler master" / "coolermaster", "d'addario"):
    # the spelling that opens the most titles
    spellings: dict[str, list[str]] = defaultdict(list)
    for value in set(lexicon.values()):
        spellings[_squeeze(value)].append(value)
    canonical = {k: max(v, key=lambda x: (openings.get(x, 0), x)) for k, v in spellings.items()}
    return {surface: canonical[_squeeze(value)] for surface, value in lexicon.items()}


@dataclass
class RuleExtractor:
    """Lexicon + pattern extractor; build it from a catalogue with :meth:`from_listings`."""

    schema: AttributeSchema = DEFAULT_SCHEMA
    brands: dict[str, str] = field(default_factory=dict)
    keys: tuple[str, ...] | None = None
    use_provided: bool = True
    generic_codes: frozenset[str] = frozenset()  # normalised codes too common to be a model number

    def __post_init__(self) -> None:
        self._brand_re = _phrase_regex(self.brands)
        self._vocab = _vocabulary(self.schema)
        self._vocab_re = _phrase_regex(self._vocab)

    @classmethod
    def from_listings(cls, df: pd.DataFrame, schema: AttributeSchema = DEFAULT_SCHEMA, *,
                      keys: Sequence[str] | None = None, use_provided: bool = True, min_products: int = 2,
                      max_share: float = 0.5, min_opening_share: float = 0.3,
                      generic_code_products: int = 3) -> RuleExtractor:  # fmt: skip
        provided = [_json_dict(a).get("brand") for a in df.get("attributes", pd.Series([None] * len(df)))]
        products = list(df["product_id"]) if "product_id" in df.columns else None
        titles = list(df["title"].fillna(""))
        brands = mine_brands(titles, products, [b for b in provided if b], schema=schema, min_products=min_products,
                             max_share=max_share, min_opening_share=min_opening_share)  # fmt: skip
        return cls(schema=schema, brands=brands, keys=tuple(keys) if keys else None, use_provided=use_provided,
                   generic_codes=generic_codes(titles, products, generic_code_products))  # fmt: skip

    @property
    def fingerprint(self) -> str:
        blob = json.dumps([sorted(self.brands.items()), self.keys, self.use_provided, sorted(self.generic_codes)],
                          sort_keys=True)  # fmt: skip
        return "rules-" + digest_bytes(blob)[:12]

    def extract(self, title: str | None, description: str | None = None, category: str | None = None,
                provided: Mapping[str, Any] | None = None) -> dict[str, str]:  # fmt: skip
        title = title or ""
        description = description or ""
        found: dict[str, str] = {}
        segment = main_segment(title)  # for a trailing clothing size; everything else reads the whole title
        low_title = title.casefold()
        low_all = f"{low_title} . {description.casefold()}"

        for m in _STATED.finditer(description):  # "Colour: red." statements win over free-text matches
            key = self.schema.canonical_key(m.group(1))
            if key and key not in found:
                value = self.schema.normalize_value(key, m.group(2))
                if value:
                    found[key] = value

        if "brand" not in found and self._brand_re is not None:
            matches = list(self._brand_re.finditer(low_all))
            if matches:
                best = min(matches, key=lambda m: (m.start(), -len(m.group(1))))
                found["brand"] = self.brands[best.group(1)]

        if self._vocab_re is not None:
            for m in self._vocab_re.finditer(low_all):
                key, value = self._vocab[m.group(1)]
                if key in self.schema:
                    found.setdefault(key, value)
        if category:
            canon = self.schema.normalize_value("category", category) if "category" in self.schema else None
            if canon:
                found["category"] = canon

        # free-text quantities from the title only (descriptions hold spec tables); the capacity is the
        # first quantity of the most telling family (32GB before 3200MHz, whatever their order)
        quantities = [(v, f, i) for v, f, i in N.find_quantities(title)
                      if not re.match(r"\d\s*in\s*1\b", title[i:], re.IGNORECASE)]  # "2 in 1" is not two inches
        for value, family, _ in sorted(quantities, key=lambda q: (CAPACITY_ORDER.get(q[1], len(CAPACITY_ORDER)), q[2])):
            key = "size" if family in N.SIZE_FAMILIES else "capacity"
            if key in self.schema:
                found.setdefault(key, value)
        if "size" not in found and "size" in self.schema:
            m = _CLOTHING_SIZE.search(f"{title} {description}")
            words = set(_WORD.findall(low_title))
            clothing = bool(words & CLOTHING_WORDS) or (category or "").casefold() in CLOTHING_WORDS
            if m is None and clothing:
                m = _TRAILING_SIZE.search(segment)
            if m is not None:
                found["size"] = N.CLOTHING_SIZES[m.group(1).casefold()]

        if "model" in self.schema and "model" not in found:
            brand_words = set(found.get("brand", "").split())
            cands = [tok for tok in model_tokens(title) if tok.casefold() not in brand_words
                     and N.normalize_code(tok) not in self.generic_codes]  # fmt: skip
            if cands:
                found["model"] = N.normalize_code(max(cands, key=len)) or ""

        if self.use_provided and provided:
            found.update(self.schema.normalize(provided))
        out = {k: v for k, v in found.items() if v and (self.keys is None or k in self.keys)}
        return self.schema.ordered(out)

    def extract_row(self, row: Mapping[str, Any]) -> dict[str, str]:
        return self.extract(row.get("title"), row.get("description"), row.get("category"),
                            _json_dict(row.get("attributes")))  # fmt: skip

    def extract_frame(self, df: pd.DataFrame) -> list[dict[str, str]]:
        return [self.extract_row(r) for r in df.to_dict("records")]


def extract_frame(df: pd.DataFrame, schema: AttributeSchema = DEFAULT_SCHEMA, *, keys: Sequence[str] | None = None,
                  use_provided: bool = True) -> list[dict[str, str]]:  # fmt: skip
    """Rules-backend attributes for every row of a listings frame (lexicon mined from the frame)."""
    return RuleExtractor.from_listings(df, schema, keys=keys, use_provided=use_provided).extract_frame(df)

