"""The duplicate review page's data: the de-duplication job's groups and review queue (Parquet).

``serve.dedup`` (``afmrl serve --dedup PATH``; default ``outputs/dedup``, where the ``dedup`` stage writes
``groups.parquet`` and ``review.parquet``) is a folder holding the job's Parquet files, or one of them; a table with ``listing_a`` / ``listing_b`` is the review queue (pairs a person should look at:
``score``, ``threshold``, ``reason``, titles), a table with ``group_id`` the groups (``listing_id``,
``group_id``, ``group_size``). What is absent is reported as absent (the page shows an empty state),
never an error of the service.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

MAX_PAIRS = 500
MAX_GROUPS = 200


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _clean(value.item())
    return value


def _tables(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(path.glob("*.parquet"))
    return sorted({path, *path.parent.glob("*.parquet")}) if path.is_file() else []


def load_dedup(path: str | Path | None) -> dict[str, Any]:
    """``{"source", "available", "message", "pairs", "groups", "n_pairs", "n_groups"}`` for the page."""
    empty: dict[str, Any] = {"source": str(path) if path else None, "available": False, "pairs": [], "groups": [],
                             "n_pairs": 0, "n_groups": 0}  # fmt: skip
    if not path:
        return {**empty, "message": "no de-duplication output given: start the service with --dedup PATH "
                                    "(the dedup job's folder or its Parquet files)"}  # fmt: skip
    p = Path(path)
    files = _tables(p)
    if not files:
        return {**empty, "message": f"{p} does not exist (yet): run the de-duplication job (afmrl dedup ... --out "
                                    f"{p}), or start the service with --dedup PATH (its output folder)"}  # fmt: skip
    pairs: list[dict[str, Any]] = []
    groups: dict[str, list[str]] = {}
    n_pairs = 0
    for file in files:
        try:
            schema = pq.read_schema(file)
        except Exception:  # not Parquet, half written: skip it, say nothing about it being a pair file
            continue
        names = set(schema.names)
        if {"listing_a", "listing_b"} <= names:
            table = pq.read_table(file).to_pylist()
            table.sort(key=lambda r: -(r.get("score") or 0.0))
            n_pairs += len(table)
            pairs.extend({k: _clean(v) for k, v in r.items()} for r in table[: MAX_PAIRS - len(pairs)])
        elif {"listing_id", "group_id"} <= names:
            for r in pq.read_table(file, columns=["listing_id", "group_id"]).to_pylist():
                groups.setdefault(str(r["group_id"]), []).append(str(r["listing_id"]))
    multi = sorted(([g, ids] for g, ids in groups.items() if len(ids) > 1), key=lambda x: (-len(x[1]), x[0]))
    out = {**empty, "available": bool(pairs or groups), "pairs": pairs, "n_pairs": n_pairs, "n_groups": len(multi),
           "groups": [{"group_id": g, "listings": ids} for g, ids in multi[:MAX_GROUPS]]}  # fmt: skip
    if not out["available"]:
        out["message"] = f"{p} holds no review queue or groups table"
    return out
