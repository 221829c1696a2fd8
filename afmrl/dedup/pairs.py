"""Labelled pairs: read from a pair file (``ltable_id,rtable_id,label``), or derived from a catalogue's product
ids (listings of the labelled splits: their index neighbours, same product or not, plus same-product pairs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from afmrl.errors import DataError

PAIR_COLUMNS = ("ltable_id", "rtable_id", "label")


def read_pairs(path: str | Path, known_ids: set[str] | None = None) -> pd.DataFrame:
    """A pair file as ``listing_a, listing_b, label`` (0/1). Missing columns, labels that are not 0/1 and ids
    not among ``known_ids`` are DataErrors naming the file, the record (line) and the column."""
    path = Path(path)
    if not path.is_file():
        raise DataError("pair file not found", file=str(path))
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the pair file as CSV: {exc}", file=str(path)) from None
    missing = [c for c in PAIR_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"missing column(s) {missing}; a pair file has the columns {list(PAIR_COLUMNS)}, found "
                        f"{list(df.columns)}", file=str(path), field=missing[0])  # fmt: skip
    if df.empty:
        raise DataError("no pairs", file=str(path))
    for column in PAIR_COLUMNS:
        values = df[column].str.strip()
        blank = values == ""
        if blank.any():
            raise DataError("empty value", file=str(path), record=f"line {int(np.flatnonzero(blank)[0]) + 2}", field=column)
        df[column] = values
    bad = ~df["label"].isin(["0", "1", "0.0", "1.0", "true", "false", "True", "False"])
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(f"label must be 0 or 1, got {df['label'].iloc[k]!r}", file=str(path),
                        record=f"line {k + 2}", field="label")  # fmt: skip
    if known_ids is not None:
        for column in ("ltable_id", "rtable_id"):
            unknown = ~df[column].isin(known_ids)
            if unknown.any():
                k = int(np.flatnonzero(unknown)[0])
                raise DataError(f"id {df[column].iloc[k]!r} is not a listing of the offers ({int(unknown.sum())} "
                                "such ids)", file=str(path), record=f"line {k + 2}", field=column)  # fmt: skip
    labels = df["label"].str.lower().isin(["1", "1.0", "true"]).astype(np.int64)
    return pd.DataFrame({"listing_a": df["ltable_id"], "listing_b": df["rtable_id"], "label": labels})


def product_pairs(ids: list[str], products: list[str | None], labelled: np.ndarray,
                  neighbour_pairs: set[tuple[int, int]], max_positives_per_product: int,
                  seed: int = 0) -> pd.DataFrame:  # fmt: skip
    """Labelled pairs from product ids: the neighbour pairs whose two listings are both labelled (``labelled``:
    a boolean per row, e.g. the train and val splits with a product id), label = same product, plus up to
    ``max_positives_per_product`` same-product pairs per product that the neighbours missed; where no
    neighbour pair is of two products, random pairs of two products as non-matching ones."""
    rows: set[tuple[int, int]] = {(i, j) for i, j in neighbour_pairs if labelled[i] and labelled[j]}
    by_product: dict[str, list[int]] = {}
    for i, (p, ok) in enumerate(zip(products, labelled, strict=True)):
        if ok and p is not None:
            by_product.setdefault(p, []).append(i)
    rng = np.random.default_rng(seed)
    for members in by_product.values():
        pos = [(members[x], members[y]) for x in range(len(members)) for y in range(x + 1, len(members))]
        if len(pos) > max_positives_per_product:
            pos = [pos[k] for k in rng.choice(len(pos), max_positives_per_product, replace=False)]
        rows.update(pos)
    if len(by_product) >= 2 and all(products[i] == products[j] for i, j in rows):
        # no neighbour pair is of two products (few products with many listings each): as many random
        # pairs of two labelled products as there are matching pairs, so the calibration sees both kinds
        members = [i for group in by_product.values() for i in group]
        wanted, tries = len(rows), 0
        while wanted > 0 and tries < 20 * len(rows):
            i, j = sorted(int(x) for x in rng.choice(members, 2, replace=False))
            tries += 1
            if products[i] != products[j] and (i, j) not in rows:
                rows.add((i, j))
                wanted -= 1
    pairs = sorted(rows)
    return pd.DataFrame({
        "listing_a": [ids[i] for i, _ in pairs], "listing_b": [ids[j] for _, j in pairs],
        "label": np.array([products[i] == products[j] for i, j in pairs], dtype=np.int64),
    })  # fmt: skip
