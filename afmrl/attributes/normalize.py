"""One canonical form per attribute value.

Every value is NFKC-normalised, case-folded and whitespace-collapsed; then by kind:

- ``quantity`` (size, capacity): number + unit, converted within its family and written with the
  largest unit the value reaches: ``'1 l' = '1L' = '1000 ml' = '1,0 litre' -> '1 l'``,
  ``'330ml' -> '330 ml'``, ``'6.1"' = '6.1 in' = '6.1 inch' -> '6.1 in'``, ``'1000 GB' -> '1 tb'``,
  ``'2000 g' -> '2 kg'``. Families: volume (ml, cl, l), metric length (mm, cm, m), inches, mass
  (g, kg), ounces and pounds (kept as written), storage (kb, mb, gb, tb), power (w, kw, va, mah,
  v, hz, mhz, ghz). Clothing sizes are letters: ``'size M' = 'medium' -> 'm'``,
  ``'x-large' -> 'xl'``. A value that is not a single quantity is kept as cleaned text.
- ``enum`` (colour, pattern, material, category, product type): a synonym table maps
  abbreviations and spellings to one word (``gray -> grey``, ``blk -> black``, ``alu ->
  aluminium``, ``orng -> orange``, ``poly -> polyester``, ``tee -> t-shirt``, ``stripe ->
  striped``...), first on the whole value, then word by word.
- ``code`` (model numbers): case-folded, spaces removed (``'WH 1000XM3' -> 'wh1000xm3'``).
- ``label`` (class names): hyphens and underscores become spaces (``'Arla-Milk' -> 'arla milk'``).
- ``text`` (brand, variety): the common cleaning only (``'  TAG  Heuer ' -> 'tag heuer'``).

Null-like values (``''``, ``'n/a'``, ``'unknown'``, ``'none'``, ``'null'``, ``'-'``) normalise to
``None``: the attribute is missing, not a value.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

NULL_LIKE = frozenset({"", "n/a", "na", "none", "null", "unknown", "not specified", "unspecified", "-", "?", "nil",
                       "not available", "not applicable", "not visible", "nan"})  # fmt: skip

COLOUR_SYNONYMS = {
    "gray": "grey", "gry": "grey", "blk": "black", "blck": "black", "wht": "white", "purp": "purple",
    "orng": "orange", "grn": "green", "blu": "blue", "ylw": "yellow", "yel": "yellow", "pnk": "pink",
    "navy blue": "navy", "multicolor": "multicolour", "multi-colour": "multicolour", "multi colour": "multicolour",
    "multi-color": "multicolour", "multi color": "multicolour",
}  # fmt: skip
MATERIAL_SYNONYMS = {
    "alu": "aluminium", "aluminum": "aluminium", "alum": "aluminium", "poly": "polyester", "polyster": "polyester",
    "silicon": "silicone", "pu leather": "faux leather", "leatherette": "faux leather", "vegan leather": "faux leather",
    "stainless": "stainless steel", "inox": "stainless steel",
}  # fmt: skip
PATTERN_SYNONYMS = {
    "stripe": "striped", "stripes": "striped", "stripy": "striped", "dot": "dotted", "dots": "dotted",
    "polka dot": "dotted", "polka dots": "dotted", "spotted": "dotted", "check": "checked", "checks": "checked",
    "checkered": "checked", "chequered": "checked", "plaid": "checked", "gingham": "checked", "zig zag": "zigzag",
    "zig-zag": "zigzag", "chevron": "zigzag", "solid": "plain", "uni": "plain",
}  # fmt: skip
CATEGORY_SYNONYMS = {
    "tee": "t-shirt", "tshirt": "t-shirt", "t shirt": "t-shirt", "t-shirts": "t-shirt", "tees": "t-shirt",
    "bkpk": "backpack", "rucksack": "backpack", "backpacks": "backpack", "case": "phone case",
    "phone cover": "phone case", "phone cases": "phone case", "bottles": "bottle", "mugs": "mug",
}  # fmt: skip
CLOTHING_SIZES = {
    "xxs": "xxs", "xs": "xs", "s": "s", "m": "m", "l": "l", "xl": "xl", "xxl": "xxl", "2xl": "xxl", "xxxl": "xxxl",
    "3xl": "xxxl", "small": "s", "medium": "m", "large": "l", "extra small": "xs", "x-small": "xs", "extra large": "xl",
    "x-large": "xl", "xx-large": "xxl", "sm": "s", "med": "m", "lg": "l", "lrg": "l",
}  # fmt: skip

# unit spelling -> (family, factor to the family's base unit)
UNITS: dict[str, tuple[str, Decimal]] = {}


def _units(family: str, factor: str | int, *spellings: str) -> None:
    for s in spellings:
        UNITS[s] = (family, Decimal(str(factor)))


_units("volume", 1, "ml", "milliliter", "milliliters", "millilitre", "millilitres", "mls")
_units("volume", 10, "cl", "centiliter", "centilitre")
_units("volume", 1000, "l", "lt", "ltr", "ltrs", "liter", "liters", "litre", "litres")
_units("length", 1, "mm", "millimeter", "millimeters", "millimetre", "millimetres")
_units("length", 10, "cm", "centimeter", "centimeters", "centimetre", "centimetres")
_units("length", 1000, "m", "meter", "meters", "metre", "metres")
_units("inch", 1, "in", "inch", "inches", '"', "''", "\u201d", "\u2033", "\u2032\u2032", "zoll")  # NFKC: ″ -> ′′
_units("mass", 1, "g", "gr", "gram", "grams", "gramm")
_units("mass", 1000, "kg", "kilo", "kilos", "kilogram", "kilograms")
_units("ounce", 1, "oz", "ounce", "ounces", "fl oz", "fl. oz", "floz")
_units("pound", 1, "lb", "lbs", "pound", "pounds")
_units("storage", 1, "kb")
_units("storage", 1000, "mb")
_units("storage", 1000**2, "gb", "g b", "gig", "gigabyte", "gigabytes")
_units("storage", 1000**3, "tb", "terabyte", "terabytes")
_units("power", 1, "w", "watt", "watts")
_units("power", 1000, "kw")
_units("apparent_power", 1, "va")
_units("apparent_power", 1000, "kva")
_units("charge", 1, "mah")
_units("voltage", 1, "v", "volt", "volts")
_units("frequency", 1, "hz")
_units("frequency", 1000**2, "mhz")
_units("frequency", 1000**3, "ghz")

# how each family is written back: (unit, factor) from the largest down
DISPLAY: dict[str, list[tuple[str, Decimal]]] = {
    "volume": [("l", Decimal(1000)), ("ml", Decimal(1))],
    "length": [("m", Decimal(1000)), ("cm", Decimal(10)), ("mm", Decimal(1))],
    "inch": [("in", Decimal(1))],
    "mass": [("kg", Decimal(1000)), ("g", Decimal(1))],
    "ounce": [("oz", Decimal(1))],
    "pound": [("lb", Decimal(1))],
    "storage": [("tb", Decimal(1000**3)), ("gb", Decimal(1000**2)), ("mb", Decimal(1000)), ("kb", Decimal(1))],
    "power": [("kw", Decimal(1000)), ("w", Decimal(1))],
    "apparent_power": [("kva", Decimal(1000)), ("va", Decimal(1))],
    "charge": [("mah", Decimal(1))],
    "voltage": [("v", Decimal(1))],
    "frequency": [("ghz", Decimal(1000**3)), ("mhz", Decimal(1000**2)), ("hz", Decimal(1))],
}
# families that are sizes (physical) vs capacities (storage, power, charge)
SIZE_FAMILIES = frozenset({"volume", "length", "inch", "mass", "ounce", "pound"})
CAPACITY_FAMILIES = frozenset({"storage", "power", "apparent_power", "charge", "voltage", "frequency"})

_UNIT_ALT = "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))
_NUMBER = r"\d+(?:[.,]\d+)?"
QUANTITY_RE = re.compile(rf"(?<![\w.])({_NUMBER})\s*({_UNIT_ALT})(?![a-z0-9/])", re.IGNORECASE)
_FULL_QUANTITY_RE = re.compile(rf"^\s*({_NUMBER})\s*({_UNIT_ALT})\s*$", re.IGNORECASE)
_SPACE_RE = re.compile(r"\s+")
_EDGE_PUNCT = " \t\n\r.,;:!?'`\u2018\u2019\u201c\u201d()[]{}<>|*_~"


def clean_text(value: object) -> str | None:
    """NFKC, case-fold, collapse whitespace, strip surrounding punctuation; null-like -> None."""
    if value is None:
        return None
    text = unicodedata.normalize("NFKC", str(value)).casefold()
    text = _SPACE_RE.sub(" ", text).strip(_EDGE_PUNCT).strip()
    quoted = text.startswith('"')
    text = text.lstrip('"')
    if text.endswith('"') and (quoted or not text[:-1].rstrip()[-1:].isdigit()):  # keep the inch mark of 6.1"
        text = text[:-1]
    text = text.strip(_EDGE_PUNCT).strip()
    return None if text in NULL_LIKE else text


def _number(raw: str) -> Decimal | None:
    try:
        return Decimal(raw.replace(",", "."))
    except InvalidOperation:
        return None


def _fmt(d: Decimal) -> str:
    d = d.quantize(Decimal("0.001")).normalize()
    text = format(d, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def parse_quantity(text: str) -> tuple[Decimal, str] | None:
    """``'1,5 L' -> (1500, 'volume')``: the value in the family's base unit, or None."""
    m = _FULL_QUANTITY_RE.match(text)
    if not m:
        return None
    number = _number(m.group(1))
    unit = UNITS.get(m.group(2).casefold())
    if number is None or unit is None:
        return None
    family, factor = unit
    return number * factor, family


def format_quantity(base_value: Decimal, family: str) -> str:
    for unit, factor in DISPLAY[family]:
        if base_value >= factor:
            return f"{_fmt(base_value / factor)} {unit}"
    unit, factor = DISPLAY[family][-1]
    return f"{_fmt(base_value / factor)} {unit}"


def normalize_quantity(value: object) -> str | None:
    text = clean_text(value)
    if text is None:
        return None
    parsed = parse_quantity(text)
    if parsed is None:
        return text
    return format_quantity(*parsed)


def normalize_size(value: object) -> str | None:
    """A quantity (``1000 ml -> 1 l``) or a clothing size (``size M -> m``)."""
    text = clean_text(value)
    if text is None:
        return None
    bare = re.sub(r"^(?:size|sz|gr\.?|taille)\s*:?\s*", "", text)
    if bare in CLOTHING_SIZES:
        return CLOTHING_SIZES[bare]
    return normalize_quantity(bare)


def normalize_enum(value: object, synonyms: dict[str, str]) -> str | None:
    """Whole-value synonym first (``navy blue -> navy``), then word by word (``gray blue -> grey blue``)."""
    text = clean_text(value)
    if text is None:
        return None
    if text in synonyms:
        return synonyms[text]
    if text in synonyms.values():  # already canonical ("phone case" must not become "phone phone case")
        return text
    words = [synonyms.get(w, w) for w in text.split(" ")]
    return " ".join(words)


_CODE_SEPARATORS = re.compile(r"[\s\-_./]+")


def normalize_code(value: object) -> str | None:
    """A model number as one token, separators out: ``WH-1000XM3``, ``wh 1000 xm3``, ``WH1000XM3`` -> ``wh1000xm3``."""
    text = clean_text(value)
    if text is None:
        return None
    return _CODE_SEPARATORS.sub("", text) or None


def normalize_label(value: object) -> str | None:
    text = clean_text(value)
    if text is None:
        return None
    return _SPACE_RE.sub(" ", text.replace("-", " ").replace("_", " ")).strip() or None


def find_quantities(text: str) -> list[tuple[str, str, int]]:
    """Every ``number unit`` in free text: (canonical value, family, start offset)."""
    out = []
    for m in QUANTITY_RE.finditer(text):
        parsed = parse_quantity(f"{m.group(1)} {m.group(2)}")
        if parsed:
            out.append((format_quantity(*parsed), parsed[1], m.start()))
    return out
