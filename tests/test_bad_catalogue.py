"""The bad-catalogue corpus (tests/data/bad-catalogue): every kind of hostile input is quarantined
by the validation gate with its field and reason, and nothing good is."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from afmrl.catalog import read_catalog, write_catalog
from afmrl.stages import validate

CORPUS = Path(__file__).parent / "data" / "bad-catalogue" / "cases.jsonl"
SPECIAL_PRICES = {"inf": float("inf"), "-inf": float("-inf"), "NaN": float("nan")}


def load_corpus() -> list[dict]:
    return [json.loads(line) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]


def build_catalogue(synth_catalog: Path, tmp_path: Path, cases: list[dict]) -> tuple[Path, list[str]]:
    """The synthetic listings plus one row per corpus case; prices written as given (NaN stays NaN)."""
    cat = read_catalog(synth_catalog)
    root = tmp_path / "bad-catalogue"
    shutil.copytree(synth_catalog / "images", root / "images")
    good = cat.listings.copy()
    template = good.iloc[0].to_dict()
    jpeg = (root / template["image"]).read_bytes()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(jpeg)
    (tmp_path / "secret.jpg").write_bytes(jpeg)  # what '../secret.jpg' would reach
    rows = []
    for case in cases:
        change = {k: v.replace("{outside}", str(outside)) if isinstance(v, str) and k == "image" else v
                  for k, v in case["set"].items()}  # fmt: skip
        if case.get("make_image"):
            data = b"this is not an image" if case["make_image"] == "garbage" else jpeg[: len(jpeg) // 2]
            (root / change["image"]).write_bytes(data)
        rows += [{**template, "listing_id": case["listing_id"], **change}] * case.get("copies", 1)
    frame = pd.concat([good, pd.DataFrame(rows)], ignore_index=True)
    prices = [SPECIAL_PRICES.get(p, p) if isinstance(p, str) else (None if pd.isna(p) else float(p))
              for p in frame["price"]]  # fmt: skip
    frame["price"] = [p if isinstance(p, float) and p == p and abs(p) != float("inf") else None for p in prices]
    path = write_catalog(frame, root)
    # write_catalog stores NaN as null; a feed or another tool can write a real NaN (or inf) into Parquet
    table = pq.read_table(path)
    raw = pa.array(prices, type=pa.float64(), from_pandas=False)
    pq.write_table(table.set_column(table.schema.get_field_index("price"), "price", raw), path)
    return root, good["listing_id"].tolist()


def test_corpus_is_quarantined_with_field_and_reason(tmp_path, cfg, synth_catalog):
    cases = load_corpus()
    root, good_ids = build_catalogue(synth_catalog, tmp_path, cases)
    cfg.validate_.max_fail_share = 1.0
    result = validate.run(cfg, root, tmp_path / "out")
    quarantine = pd.read_parquet(result.quarantine_path)
    bad = [c for c in cases if c["reason"]]
    by_id = quarantine.groupby("listing_id")
    problems = []
    for case in bad:
        lid = case["listing_id"]
        if lid not in by_id.groups:
            problems.append(f"{lid}: not quarantined")
            continue
        rows = by_id.get_group(lid)
        if len(rows) != case.get("copies", 1):
            problems.append(f"{lid}: {len(rows)} rows quarantined, expected {case.get('copies', 1)}")
        for _, row in rows.iterrows():
            if case["reason"] not in row["reason"]:
                problems.append(f"{lid}: reason {row['reason']!r} lacks {case['reason']!r}")
            if case["field"] not in row["field"].split("; "):
                problems.append(f"{lid}: field {row['field']!r} lacks {case['field']!r}")
    expected = {c["listing_id"] for c in bad}
    wrongly = quarantine[~quarantine["listing_id"].isin(expected)]
    problems += [f"{r.listing_id}: good row quarantined ({r.reason})" for r in wrongly.itertuples()]
    assert not problems, "\n".join(problems)

    passed = set(read_catalog(tmp_path / "out").listings["listing_id"])
    assert passed == set(good_ids) | {c["listing_id"] for c in cases if not c["reason"]}
    report = json.loads(result.report_path.read_text())
    assert report["quarantined"] == sum(c.get("copies", 1) for c in bad) and report["gate_passed"]
