"""A deterministic synthetic catalogue where fine-grained attributes decide identity.

Products are attribute tuples (category, brand, colour, pattern, size, material). Each base product
gets ``near_duplicates`` variants that differ from it in exactly one attribute, so the nearest
neighbours of a product are different products: retrieval has to look at the attributes. Every
product is listed by several sellers: the image is re-rendered with jitter (crop, rotation,
background, brightness, JPEG quality) and the title is reordered, abbreviated, sometimes missing an
attribute and padded with seller spam words.

Images make the attributes visible: the shape gives the category, the fill colour the colour, an
overlay the pattern, the printed word the brand, the object's scale and a corner label the size,
and the outline style the material. Ground truth goes into ``reference_attributes``; sellers state
only some attributes (``attributes``), at ``provided_attribute_rate``.

Same seed and parameters: the same bytes (tested).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter, ImageFont

from afmrl.atomic import atomic_path
from afmrl.catalog.io import write_catalog
from afmrl.catalog.schema import to_json
from afmrl.catalog.splits import assign_splits
from afmrl.config import SplitConfig, SynthConfig
from afmrl.progress import progress


@dataclass(frozen=True)
class CategorySpec:
    sizes: tuple[str, ...]
    materials: tuple[str, ...]


CATEGORIES: dict[str, CategorySpec] = {
    "bottle": CategorySpec(("330 ml", "500 ml", "750 ml", "1 l", "1.5 l"), ("plastic", "glass", "aluminium")),
    "mug": CategorySpec(("250 ml", "350 ml", "450 ml"), ("ceramic", "steel", "enamel")),
    "t-shirt": CategorySpec(("S", "M", "L", "XL"), ("cotton", "polyester", "linen")),
    "backpack": CategorySpec(("15 l", "20 l", "30 l"), ("nylon", "canvas", "leather")),
    "phone case": CategorySpec(("5.8 in", "6.1 in", "6.7 in"), ("silicone", "leather", "plastic")),
}
BRANDS = (
    "Norvik", "Aldera", "Kestrel", "Brightwell", "Solano", "Tamsin",
    "Orvo", "Quillon", "Vantor", "Marlowe", "Zephra", "Lumen",
)  # fmt: skip
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (200, 30, 40), "blue": (30, 70, 200), "green": (30, 150, 60), "black": (25, 25, 25),
    "white": (240, 240, 240), "yellow": (240, 210, 30), "orange": (245, 130, 20),
    "purple": (120, 50, 160), "grey": (128, 128, 128), "pink": (240, 130, 170),
    "navy": (20, 30, 90), "teal": (0, 128, 128),
}  # fmt: skip
PATTERNS = ("plain", "striped", "dotted", "checked", "zigzag")
MATERIAL_STYLE: dict[str, tuple[tuple[int, int, int], int]] = {
    # outline colour and width: the material's visible cue
    "plastic": ((255, 255, 255), 2), "glass": ((150, 220, 255), 5), "aluminium": ((190, 190, 200), 6),
    "ceramic": ((250, 240, 220), 4), "steel": ((90, 90, 110), 6), "enamel": ((30, 30, 30), 3),
    "cotton": ((235, 235, 210), 3), "polyester": ((0, 200, 200), 2), "linen": ((200, 180, 140), 5),
    "nylon": ((60, 60, 60), 2), "canvas": ((160, 130, 90), 6), "leather": ((100, 55, 20), 7),
    "silicone": ((255, 120, 200), 4),
}  # fmt: skip
ATTRIBUTE_KEYS = ("brand", "colour", "pattern", "size", "material")
ABBREVIATIONS = {
    "black": "blk", "grey": "gry", "purple": "purp", "orange": "orng", "aluminium": "alu",
    "polyester": "poly", "backpack": "bkpk", "t-shirt": "tee", "phone case": "case", "striped": "stripe",
}  # fmt: skip
SPAM = ("FREE SHIPPING", "Best Price", "NEW!!", "Hot Sale", "Top Seller", "100% Original", "Fast Delivery")
SELLERS = ("shopa", "megamart", "bargainhub", "citystore", "webdeals", "outletco")


def _product_key(p: dict[str, str]) -> tuple[str, ...]:
    return tuple(p[k] for k in ("category", *ATTRIBUTE_KEYS))


def _options(category: str, key: str) -> tuple[str, ...]:
    spec = CATEGORIES[category]
    return {"brand": BRANDS, "colour": tuple(COLOURS), "pattern": PATTERNS, "size": spec.sizes,
            "material": spec.materials}[key]  # fmt: skip


def make_products(cfg: SynthConfig) -> pd.DataFrame:
    """Base products and their one-attribute variants (ground truth; no rendering)."""
    rng = random.Random(cfg.seed)
    categories = list(CATEGORIES)
    seen: set[tuple[str, ...]] = set()
    rows: list[dict] = []

    def add(attrs: dict[str, str], variant_of: str | None, changed: str | None) -> str:
        pid = f"syn-p{len(rows):04d}"
        seen.add(_product_key(attrs))
        rows.append({"product_id": pid, "variant_of": variant_of, "changed_attribute": changed, **attrs})
        return pid

    for b in range(cfg.n_base_products):
        category = categories[b % len(categories)]
        while True:
            attrs = {"category": category, **{k: rng.choice(_options(category, k)) for k in ATTRIBUTE_KEYS}}
            if _product_key(attrs) not in seen:
                break
        base_id = add(attrs, None, None)
        keys = list(ATTRIBUTE_KEYS)
        rng.shuffle(keys)
        for v in range(cfg.near_duplicates):
            for attempt in range(len(keys) * 4):
                key = keys[(v + attempt) % len(keys)]
                choices = [o for o in _options(category, key) if o != attrs[key]]
                variant = {**attrs, key: rng.choice(choices)}
                if _product_key(variant) not in seen:
                    add(variant, base_id, key)
                    break
    return pd.DataFrame(rows)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(8, size))


def _shape_mask(category: str, s: int, scale: float) -> Image.Image:
    """White-on-black mask of the product silhouette, centred on an s x s canvas."""
    mask = Image.new("L", (s, s), 0)
    d = ImageDraw.Draw(mask)
    c = s / 2
    h = s * scale / 2  # half-extent

    def box(x0: float, y0: float, x1: float, y1: float) -> list[float]:
        return [c + x0 * h, c + y0 * h, c + x1 * h, c + y1 * h]

    if category == "bottle":
        d.rounded_rectangle(box(-0.45, -0.35, 0.45, 1.0), radius=int(h * 0.15), fill=255)
        d.rectangle(box(-0.18, -0.8, 0.18, -0.3), fill=255)
        d.rectangle(box(-0.24, -1.0, 0.24, -0.78), fill=255)
    elif category == "mug":
        d.rounded_rectangle(box(-0.75, -0.7, 0.45, 0.85), radius=int(h * 0.1), fill=255)
        d.ellipse(box(0.25, -0.4, 1.0, 0.5), fill=255)
        d.ellipse(box(0.45, -0.2, 0.8, 0.3), fill=0)
    elif category == "t-shirt":
        pts = [(-0.4, -0.9), (-1.0, -0.5), (-0.8, -0.1), (-0.55, -0.3), (-0.55, 0.95), (0.55, 0.95),
               (0.55, -0.3), (0.8, -0.1), (1.0, -0.5), (0.4, -0.9), (0.15, -0.75), (-0.15, -0.75)]  # fmt: skip
        d.polygon([(c + x * h, c + y * h) for x, y in pts], fill=255)
    elif category == "backpack":
        d.rounded_rectangle(box(-0.7, -0.75, 0.7, 0.95), radius=int(h * 0.35), fill=255)
        d.arc(box(-0.35, -1.0, 0.35, -0.5), 180, 360, fill=255, width=max(2, int(h * 0.1)))
    elif category == "phone case":
        d.rounded_rectangle(box(-0.5, -0.95, 0.5, 0.95), radius=int(h * 0.2), fill=255)
    else:  # pragma: no cover - CATEGORIES is closed
        raise ValueError(category)
    return mask


def _pattern_layer(pattern: str, s: int, ink: tuple[int, int, int], phase: int) -> Image.Image:
    layer = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    step = max(6, s // 12)
    w = max(2, step // 3)
    if pattern == "striped":
        for x in range(-s, 2 * s, step):
            d.line([(x + phase, 0), (x + phase + s // 3, s)], fill=ink, width=w)
    elif pattern == "dotted":
        for y in range(phase % step, s, step):
            for x in range(phase % step, s, step):
                d.ellipse([x, y, x + w + 1, y + w + 1], fill=ink)
    elif pattern == "checked":
        for y in range(0, s, step):
            for x in range(0, s, step):
                if (x // step + y // step) % 2 == 0:
                    d.rectangle([x, y, x + step - 1, y + step - 1], fill=ink + (150,))
    elif pattern == "zigzag":
        for y in range(phase % step, s, step * 2):
            pts = [(x, y + (step // 2 if (x // step) % 2 else 0)) for x in range(0, s + step, step)]
            d.line(pts, fill=ink, width=w)
    return layer


def render_listing_image(product: dict[str, str], rng: random.Random, size: int) -> Image.Image:
    """Render one seller's photo of a product."""
    big = size * 2
    bg = tuple(int(v) for v in (rng.randint(170, 250), rng.randint(170, 250), rng.randint(170, 250)))
    canvas = Image.new("RGB", (big, big), bg)
    d = ImageDraw.Draw(canvas)
    for _ in range(rng.randint(0, 4)):  # background clutter
        x0, y0 = rng.randint(0, big), rng.randint(0, big)
        tone = tuple(max(0, v - rng.randint(10, 40)) for v in bg)
        d.line([(x0, y0), (rng.randint(0, big), rng.randint(0, big))], fill=tone, width=rng.randint(1, 4))

    sizes = CATEGORIES[product["category"]].sizes
    size_rank = sizes.index(product["size"]) / max(1, len(sizes) - 1)
    scale = (0.5 + 0.3 * size_rank) * rng.uniform(0.93, 1.07)
    mask = _shape_mask(product["category"], big, scale)
    colour = COLOURS[product["colour"]]
    body = Image.new("RGB", (big, big), colour)
    luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    ink = (20, 20, 20) if luminance > 140 else (235, 235, 235)
    if product["pattern"] != "plain":
        layer = _pattern_layer(product["pattern"], big, ink, rng.randint(0, 30))
        body.paste(layer, (0, 0), layer)
    canvas.paste(body, (0, 0), mask)
    outline, width = MATERIAL_STYLE[product["material"]]
    ring = ImageChops.subtract(mask.filter(ImageFilter.MaxFilter(2 * width + 1)), mask)
    canvas.paste(Image.new("RGB", mask.size, outline), (0, 0), ring)
    font = _font(int(big * 0.09))
    d = ImageDraw.Draw(canvas)
    d.text((big / 2, big / 2 + big * 0.05), product["brand"].upper(), fill=ink, font=font, anchor="mm",
           stroke_width=1, stroke_fill=colour)
    d.text((big * 0.97, big * 0.97), product["size"], fill=(20, 20, 20), font=_font(int(big * 0.08)), anchor="rd")

    angle = rng.uniform(-12, 12)
    canvas = canvas.rotate(angle, resample=Image.Resampling.BILINEAR, fillcolor=bg)
    crop = rng.uniform(0.8, 1.0) * big
    x0 = rng.uniform(0, big - crop)
    y0 = rng.uniform(0, big - crop)
    canvas = canvas.crop((int(x0), int(y0), int(x0 + crop), int(y0 + crop)))
    canvas = canvas.resize((size, size), Image.Resampling.BILINEAR)
    canvas = ImageEnhance.Brightness(canvas).enhance(rng.uniform(0.8, 1.2))
    return canvas


def _size_variant(size: str, rng: random.Random) -> str:
    """The same size as different sellers write it (``1 l``, ``1L``, ``1000 ml``)."""
    if size.endswith(" ml"):
        return size.replace(" ", "") if rng.random() < 0.5 else size
    if size.endswith(" l"):
        litres = float(size[:-2])
        if rng.random() < 0.3:
            return f"{int(litres * 1000)} ml"
        return size.replace(" l", "L") if rng.random() < 0.5 else size
    if size.endswith(" in"):
        return size.replace(" in", '"') if rng.random() < 0.5 else size
    return f"size {size}" if rng.random() < 0.5 else size


def make_title(product: dict[str, str], rng: random.Random) -> str:
    words = {
        "brand": product["brand"],
        "colour": product["colour"],
        "pattern": "" if product["pattern"] == "plain" and rng.random() < 0.5 else product["pattern"],
        "material": product["material"],
        "size": _size_variant(product["size"], rng),
    }
    if rng.random() < 0.3:  # this seller leaves one attribute out of the title
        words[rng.choice(["colour", "pattern", "material", "size"])] = ""
    for key in ("colour", "material", "pattern"):
        if words[key] and rng.random() < 0.25:
            words[key] = ABBREVIATIONS.get(words[key], words[key])
    category = ABBREVIATIONS.get(product["category"], product["category"]) if rng.random() < 0.2 else product["category"]
    middle = [words["colour"], words["pattern"], words["material"]]
    rng.shuffle(middle)
    parts = [words["brand"], *middle, category, words["size"]]
    if rng.random() < 0.3:
        parts = [parts[0], category, *middle, words["size"]]
    title = " ".join(p for p in parts if p)
    if rng.random() < 0.5:  # seller spam, before or after
        spam = rng.choice(SPAM)
        title = f"{spam} | {title}" if rng.random() < 0.3 else f"{title} - {spam}"
    return title.upper() if rng.random() < 0.1 else title


def make_description(product: dict[str, str], rng: random.Random) -> str:
    sentences = [
        f"{product['brand']} {product['category']} made of {product['material']}.",
        f"Colour: {product['colour']}." if rng.random() < 0.7 else "",
        f"Pattern: {product['pattern']}." if rng.random() < 0.6 else "",
        f"Size: {_size_variant(product['size'], rng)}." if rng.random() < 0.7 else "",
        rng.choice(SPAM) + "." if rng.random() < 0.5 else "",
    ]
    return " ".join(s for s in sentences if s)


def _jpeg_bytes(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, optimize=False)
    return buf.getvalue()


def generate(cfg: SynthConfig, split_cfg: SplitConfig, out_dir: str | Path) -> Path:
    """Write the synthetic catalogue to ``out_dir``; returns the listings table path."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    products = make_products(cfg)
    rng = random.Random(cfg.seed + 1)
    base_price = {pid: round(rng.uniform(5, 80), 2) for pid in products["product_id"]}
    rows = []
    records = products.to_dict("records")
    total = len(records) * cfg.listings_per_product
    with progress("synth: rendering listings", total) as advance:
        for p in records:
            attrs = {k: p[k] for k in ("category", *ATTRIBUTE_KEYS)}
            for j in range(cfg.listings_per_product):
                lid = f"{p['product_id']}-l{j}"
                img = render_listing_image(attrs, rng, cfg.image_size)
                (out / "images" / f"{lid}.jpg").write_bytes(_jpeg_bytes(img, rng.randint(55, 95)))
                provided = {"category": attrs["category"]}
                for k in ATTRIBUTE_KEYS:
                    if rng.random() < cfg.provided_attribute_rate:
                        provided[k] = attrs[k]
                rows.append(
                    {
                        "listing_id": lid,
                        "product_id": p["product_id"],
                        "title": make_title(attrs, rng),
                        "description": make_description(attrs, rng),
                        "image": f"images/{lid}.jpg",
                        "category": attrs["category"],
                        "price": round(base_price[p["product_id"]] * rng.uniform(0.9, 1.1), 2),
                        "currency": rng.choice(cfg.currencies),
                        "source": rng.choice(SELLERS),
                        "attributes": to_json(provided),
                        "reference_attributes": to_json(attrs),
                        "split": None,
                    }
                )
                advance(1)
    frame = pd.DataFrame(rows)
    family = products.set_index("product_id")["variant_of"].fillna(products.set_index("product_id").index.to_series())
    # a product and its near-duplicates share a split: the evaluation gallery holds the hard cases
    listings = assign_splits(frame, split_cfg, groups=frame["product_id"].map(family))
    with atomic_path(out / "products.parquet") as tmp:
        products.to_parquet(tmp, index=False)
    return write_catalog(listings, out, meta={"name": "synthetic", "seed": cfg.seed, "products": len(products)})


def attribute_differences(a: dict[str, str], b: dict[str, str]) -> list[str]:
    """Keys whose values differ between two attribute dicts (used by tests and analysis)."""
    return [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


__all__ = ["ATTRIBUTE_KEYS", "CATEGORIES", "attribute_differences", "generate", "make_products"]
