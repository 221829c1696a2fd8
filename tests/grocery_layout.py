"""A small Grocery Store Dataset layout (the original's files, tiny images) for protocol tests."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

# fine class, coarse class, category folder, colour of its images
CLASSES = (
    ("Granny-Smith", "Apple", "Fruit", (90, 200, 60)),
    ("Pink-Lady", "Apple", "Fruit", (230, 120, 140)),
    ("Arla-Standard-Milk", "Milk", "Packages", (240, 240, 250)),
    ("Garant-Ecological-Standard-Milk", "Milk", "Packages", (40, 120, 40)),
)
HEADER = ("Class Name (str),Class ID (int),Coarse Class Name (str),Coarse Class ID (int),"
          "Iconic Image Path (str),Product Description Path (str)\n")  # fmt: skip


def _image(path: Path, colour: tuple[int, int, int], shade: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 32), tuple(max(0, c - shade) for c in colour)).save(path, "JPEG")


def write_grocery_layout(root: Path, train_photos: int = 3, val_photos: int = 1) -> Path:
    """``root`` with classes.csv, iconic images and descriptions, train.txt / val.txt and photos."""
    lines = [HEADER]
    coarse_ids: dict[str, int] = {}
    splits: dict[str, list[str]] = {"train": [], "val": []}
    for fine_id, (fine, coarse, folder, colour) in enumerate(CLASSES):
        cid = coarse_ids.setdefault(coarse, len(coarse_ids))
        base = f"iconic-images-and-descriptions/{folder}/{coarse}/{fine}"
        _image(root / base / f"{fine}_Iconic.jpg", colour, 0)
        (root / base / f"{fine}_Description.txt").write_text(f"{fine.replace('-', ' ')}: a {coarse.lower()}.\n")
        lines.append(f"{fine},{fine_id},{coarse},{cid},/{base}/{fine}_Iconic.jpg,/{base}/{fine}_Description.txt\n")
        for split, n in (("train", train_photos), ("val", val_photos)):
            for k in range(n):
                photo = f"{split}/{folder}/{coarse}/{fine}/{fine}_{split}{k:03d}.jpg"
                _image(root / photo, colour, 10 * (k + 1))
                splits[split].append(f"{photo}, {fine_id}, {cid}\n")
    (root / "classes.csv").write_text("".join(lines))
    (root / "train.txt").write_text("".join(splits["train"]))
    (root / "val.txt").write_text("".join(splits["val"]))
    return root
