"""Grocery Store Dataset (Klasson et al., WACV 2019) in its original layout.

No label reaches a model input (the benchmark protocol): labels live in ``product_id`` and
``reference_attributes`` only, which training and retrieval never read as inputs.

- every split file present (``train.txt``, ``val.txt``, ``test.txt``: ``path, fine_id, coarse_id``)
  gives one listing per photo: product_id = fine class, split = the file's split. A shopper's photo
  carries no text: title, description and category are null and attributes are ``{}`` (a method that
  wants attributes extracts them at run time; per-category reports take the category of the
  product's catalogue listing). Its ``reference_attributes`` hold the class attributes, for
  evaluation only;
- every class in ``classes.csv`` gives one catalogue listing (source ``catalogue``, split
  ``gallery``): its iconic image, its name as title, its product description, its category
  (Fruit/Packages/Vegetables) and the attributes a shop would publish (:data:`SHOP_KEYS`: product
  type, brand, variety); ``reference_attributes`` add the coarse and fine class ids;
- attributes come from the class hierarchy: product type (the coarse class) and, for packages,
  brand and variety from the package name.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from afmrl.catalog.io import write_catalog
from afmrl.catalog.schema import to_json
from afmrl.errors import DataError
from afmrl.progress import progress

SPLIT_FILES = ("train", "val", "test")
SHOP_KEYS = ("product_type", "brand", "variety")  # what a shop publishes: never the class ids
MULTI_WORD_BRANDS = ("God-Morgon",)


def readable(name: str) -> str:
    return name.replace("-", " ")


def class_attributes(fine: str, coarse: str, category: str) -> dict[str, str]:
    """Attributes the class hierarchy gives: brand and variety come from package names."""
    attrs = {"coarse_class": coarse, "fine_class": fine, "product_type": readable(coarse).lower()}
    if category == "packages":
        brand = next((b for b in MULTI_WORD_BRANDS if fine.startswith(b + "-")), fine.split("-")[0])
        attrs["brand"] = readable(brand)
        rest = fine[len(brand) + 1 :]
        if rest:
            attrs["variety"] = readable(rest).lower()
    elif fine != coarse:
        attrs["variety"] = readable(fine).lower()
    return attrs


def _read_classes(src: Path) -> list[dict[str, str]]:
    path = src / "classes.csv"
    if not path.exists():
        raise DataError("classes.csv not found: is this the Grocery Store Dataset folder?", file=str(path))
    # split("\n"), not splitlines(): \x0c, \u2028... are no line breaks, so n is the line an editor shows
    lines = path.read_text(encoding="utf-8").split("\n")
    classes = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if len(cells) != 6:
            raise DataError(f"expected 6 columns, got {len(cells)}", file=str(path), record=f"line {n}")
        fine, fine_id, coarse, coarse_id, iconic, desc = cells
        classes.append({"fine": fine, "fine_id": fine_id, "coarse": coarse, "coarse_id": coarse_id,
                        "iconic": iconic.lstrip("/"), "description": desc.lstrip("/")})  # fmt: skip
    return classes


def import_grocery_store(src: str | Path, out_dir: str | Path) -> Path:
    """Import the dataset at ``src`` into a catalogue at ``out_dir`` (images stay in ``src``)."""
    src = Path(src).resolve()
    classes = _read_classes(src)
    by_id = {c["fine_id"]: c for c in classes}
    rows: list[dict] = []
    for c in classes:
        category = Path(c["iconic"]).parts[1].lower() if len(Path(c["iconic"]).parts) > 1 else None
        c["category"] = category
        attrs = class_attributes(c["fine"], c["coarse"], category or "")
        c["attrs"] = to_json(attrs)
        shop = {k: v for k, v in attrs.items() if k in SHOP_KEYS}
        desc_path = src / c["description"]
        description = desc_path.read_text(encoding="utf-8").strip() if desc_path.exists() else None
        rows.append({"listing_id": f"gs-catalogue-{c['fine']}", "product_id": c["fine"], "title": readable(c["fine"]),
                     "description": description, "image": c["iconic"], "category": category,
                     "source": "catalogue", "attributes": to_json(shop), "reference_attributes": c["attrs"],
                     "split": "gallery"})  # fmt: skip

    split_files = [(s, src / f"{s}.txt") for s in SPLIT_FILES if (src / f"{s}.txt").exists()]
    if not split_files:
        raise DataError("no split file (train.txt, val.txt, test.txt) found", file=str(src))
    for split, path in split_files:
        # (physical line, text): blank lines are skipped but still counted, so errors name the right line
        numbered = enumerate(path.read_text(encoding="utf-8").split("\n"), start=1)
        lines = [(n, ln) for n, ln in numbered if ln.strip()]
        with progress(f"grocery-store: {split}", len(lines)) as advance:
            for n, line in lines:
                cells = [c.strip() for c in line.split(",")]
                if len(cells) < 2 or cells[1] not in by_id:
                    raise DataError("expected 'path, fine_id, coarse_id' with a known fine_id",
                                    file=str(path), record=f"line {n}", field="fine_id")  # fmt: skip
                c = by_id[cells[1]]
                rows.append({"listing_id": f"gs-{split}-{Path(cells[0]).stem}", "product_id": c["fine"],
                             "title": None, "description": None, "image": cells[0], "category": None,
                             "source": "grocery-store-photo", "attributes": "{}",
                             "reference_attributes": c["attrs"], "split": split})  # fmt: skip
                advance(1)
    return write_catalog(pd.DataFrame(rows), out_dir, image_root=src,
                         meta={"name": "grocery-store", "source": str(src)})  # fmt: skip
