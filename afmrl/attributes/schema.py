"""The key attributes of a product listing: names, types, vocabularies and one canonical order.

One default schema covers the three catalogues the project reads:

| key          | kind     | synthetic | grocery-store | wdc-products | example (canonical)     |
|--------------|----------|-----------|---------------|--------------|-------------------------|
| category     | enum     | yes       |               |              | ``phone case``          |
| product_type | enum     | (=category) | yes         | yes          | ``milk``                |
| brand        | text     | yes       | yes           | yes          | ``tag heuer``           |
| model        | code     |           |               | yes          | ``wh1000xm3``           |
| colour       | enum     | yes       |               | yes          | ``grey``                |
| pattern      | enum     | yes       |               |              | ``striped``             |
| material     | enum     | yes       |               | yes          | ``aluminium``           |
| size         | quantity | yes       |               | yes          | ``1 l``, ``6.1 in``, ``m`` |
| capacity     | quantity |           |               | yes          | ``32 gb``, ``5000 w``   |
| variety      | text     |           | yes           |              | ``ecological medium fat milk`` |
| coarse_class | label    |           | yes           |              | ``milk``                |
| fine_class   | label    |           | yes           |              | ``arla ecological medium fat milk`` |

``size`` is what a product physically measures or holds (volume, length, screen inches, weight,
clothing size); ``capacity`` is what it stores or delivers (GB, W, VA, mAh, V, Hz). Keys a model
may write differently are aliases (``color``, ``colour_name``, ``type``, ``volume``, ``storage``...).

``serialize_attributes(attrs)`` writes ``"brand: norvik; colour: red; size: 1 l"`` in the schema's
order (unknown keys after, alphabetically), which is what the representation model's text side and
the RAR reward read; ``enhanced_text(title, attrs)`` puts the title first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from afmrl.attributes import normalize as N
from afmrl.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

Kind = Literal["text", "enum", "quantity", "code", "label"]

COLOURS = (
    "red", "blue", "green", "black", "white", "yellow", "orange", "purple", "grey", "pink", "navy", "teal",
    "brown", "beige", "silver", "gold", "cream", "khaki", "olive", "maroon", "turquoise", "transparent",
    "multicolour", "rose gold", "space grey", "midnight",
)  # fmt: skip
PATTERNS = ("plain", "striped", "dotted", "checked", "zigzag", "floral", "camouflage", "printed")
MATERIALS = (
    "plastic", "glass", "aluminium", "ceramic", "steel", "stainless steel", "enamel", "cotton", "polyester",
    "linen", "nylon", "canvas", "leather", "faux leather", "silicone", "wool", "rubber", "wood", "titanium",
    "carbon", "bamboo", "metal", "fabric", "porcelain",
)  # fmt: skip
CATEGORIES = ("bottle", "mug", "t-shirt", "backpack", "phone case")


@dataclass(frozen=True)
class AttributeSpec:
    """One key: its kind (how values are normalised), aliases, vocabulary and default weight."""

    name: str
    kind: Kind
    description: str
    aliases: tuple[str, ...] = ()
    vocabulary: tuple[str, ...] = ()  # known canonical values (closed for enums; a lexicon hint otherwise)
    synonyms: Mapping[str, str] = field(default_factory=dict)
    weight: float = 1.0

    def normalize(self, value: Any) -> str | None:
        return NORMALIZERS[self.kind](value, self)


def _norm_text(value: Any, spec: AttributeSpec) -> str | None:
    return N.clean_text(value)


def _norm_enum(value: Any, spec: AttributeSpec) -> str | None:
    return N.normalize_enum(value, dict(spec.synonyms))


def _norm_quantity(value: Any, spec: AttributeSpec) -> str | None:
    return N.normalize_size(value)


def _norm_code(value: Any, spec: AttributeSpec) -> str | None:
    return N.normalize_code(value)


def _norm_label(value: Any, spec: AttributeSpec) -> str | None:
    return N.normalize_label(value)


NORMALIZERS: dict[str, Callable[[Any, AttributeSpec], str | None]] = {
    "text": _norm_text, "enum": _norm_enum, "quantity": _norm_quantity, "code": _norm_code, "label": _norm_label,
}  # fmt: skip


def _key_form(key: str) -> str:
    return " ".join(str(key).casefold().replace("_", " ").replace("-", " ").split())


class AttributeSchema:
    """An ordered set of attribute specs; canonicalises keys (aliases) and values (normalisation)."""

    def __init__(self, specs: Iterable[AttributeSpec]) -> None:
        self.specs: dict[str, AttributeSpec] = {}
        self._aliases: dict[str, str] = {}
        for spec in specs:
            if spec.name in self.specs:
                raise ValueError(f"duplicate attribute {spec.name!r}")
            self.specs[spec.name] = spec
            for alias in (spec.name, *spec.aliases):
                self._aliases.setdefault(_key_form(alias), spec.name)
        self._order = {k: i for i, k in enumerate(self.specs)}

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.specs)

    def __contains__(self, key: object) -> bool:
        return key in self.specs

    def __getitem__(self, key: str) -> AttributeSpec:
        return self.specs[key]

    def canonical_key(self, key: Any) -> str | None:
        """``'Color' -> 'colour'``, ``'product type' -> 'product_type'``; unknown -> None."""
        return self._aliases.get(_key_form(key))

    def normalize_value(self, key: str, value: Any) -> str | None:
        spec = self.specs.get(key)
        return spec.normalize(value) if spec else N.clean_text(value)

    def normalize(self, attrs: Mapping[str, Any] | None, *, drop_unknown: bool = True) -> dict[str, str]:
        """Canonical keys and values, schema order; null-like values and (by default) unknown keys dropped."""
        out: dict[str, str] = {}
        for key, value in (attrs or {}).items():
            canon = self.canonical_key(key)
            if canon is None:
                if drop_unknown:
                    continue
                canon = _key_form(key).replace(" ", "_")
            if isinstance(value, list | tuple):
                parts = [self.normalize_value(canon, v) for v in value if not isinstance(v, dict | list)]
                norm = "/".join(sorted({p for p in parts if p})) or None
            elif isinstance(value, dict | bool):
                norm = None
            else:
                norm = self.normalize_value(canon, value)
            if norm and canon not in out:
                out[canon] = norm
        return self.ordered(out)

    def ordered(self, attrs: Mapping[str, Any]) -> dict[str, Any]:
        big = len(self._order)
        return dict(sorted(attrs.items(), key=lambda kv: (self._order.get(kv[0], big), kv[0])))

    def default_weights(self) -> dict[str, float]:
        return {k: s.weight for k, s in self.specs.items()}


DEFAULT_SCHEMA = AttributeSchema(
    [
        AttributeSpec("category", "enum", "product category, e.g. bottle, mug, t-shirt",
                      aliases=("product category", "cat"), vocabulary=CATEGORIES, synonyms=N.CATEGORY_SYNONYMS),
        AttributeSpec("product_type", "enum", "what the product is, e.g. milk, graphics card, watch",
                      aliases=("type", "product", "item type", "kind"), synonyms=N.CATEGORY_SYNONYMS),
        AttributeSpec("brand", "text", "manufacturer or brand name", aliases=("manufacturer", "maker", "make",
                      "brand name", "label"), weight=2.0),
        AttributeSpec("model", "code", "model number or name", aliases=("model number", "model no", "mpn",
                      "part number", "sku", "model name"), weight=2.0),
        AttributeSpec("colour", "enum", "main colour", aliases=("color", "colour name", "color name", "colors",
                      "colours"), vocabulary=COLOURS, synonyms=N.COLOUR_SYNONYMS),
        AttributeSpec("pattern", "enum", "surface pattern: plain, striped, dotted, checked, zigzag",
                      aliases=("print", "design"), vocabulary=PATTERNS, synonyms=N.PATTERN_SYNONYMS),
        AttributeSpec("material", "enum", "main material", aliases=("fabric", "materials", "made of"),
                      vocabulary=MATERIALS, synonyms=N.MATERIAL_SYNONYMS),
        AttributeSpec("size", "quantity", "physical size or volume with its unit, or a clothing size",
                      aliases=("volume", "dimensions", "screen size", "weight", "clothing size")),
        AttributeSpec("capacity", "quantity", "storage, power or charge with its unit (GB, W, VA, mAh)",
                      aliases=("storage", "memory", "power", "wattage", "battery")),
        AttributeSpec("variety", "text", "variety or flavour, e.g. granny smith, medium fat milk",
                      aliases=("flavour", "flavor", "variant", "cultivar")),
        AttributeSpec("coarse_class", "label", "coarse product class (grocery-store)",
                      aliases=("coarse class",), weight=0.5),
        AttributeSpec("fine_class", "label", "fine product class (grocery-store)", aliases=("fine class",),
                      weight=2.0),
    ]
)  # fmt: skip

# the keys asked for when a catalogue's own attributes name fewer than two
GENERAL_KEYS = ("product_type", "brand", "model", "colour", "material", "size", "capacity")


def resolve_keys(requested: list[str], listings: pd.DataFrame, schema: AttributeSchema = DEFAULT_SCHEMA) -> list[str]:
    """``attributes.keys``, or the keys sellers state in this catalogue (a general set when < 2)."""
    from afmrl.catalog.schema import parse_json_object  # (pandas: not at import time of the schema)

    if requested:
        unknown = [k for k in requested if k not in schema]
        if unknown:
            raise ConfigError(f"unknown attribute key(s) {unknown}; the schema has {list(schema.keys)}",
                              field="attributes.keys")  # fmt: skip
        return list(schema.ordered({k: 1 for k in requested}))
    stated: set[str] = set()
    for a, lid in zip(listings["attributes"], listings["listing_id"], strict=True):
        stated |= set(schema.normalize(parse_json_object(a, record=lid)))
    if len(stated) < 2:
        stated |= set(GENERAL_KEYS)
    return list(schema.ordered({k: 1 for k in stated}))


def serialize_attributes(attrs: Mapping[str, Any] | None, schema: AttributeSchema = DEFAULT_SCHEMA) -> str:
    """``{"colour": "red", "brand": "norvik"} -> "brand: norvik; colour: red"`` (schema order, empty skipped)."""
    items = schema.ordered({k: v for k, v in (attrs or {}).items() if v not in (None, "")})
    return "; ".join(f"{k}: {v}" for k, v in items.items())


def enhanced_text(title: str | None, attrs: Mapping[str, Any] | None, schema: AttributeSchema = DEFAULT_SCHEMA) -> str:
    """The attribute-enhanced listing text: the title, then the serialised attributes."""
    title = (title or "").strip()
    text = serialize_attributes(attrs, schema)
    if not text:
        return title
    return f"{title} | {text}" if title else text
