"""De-duplication benchmark: entity matching scored on labelled test pairs by the job's own grouping.

    python benchmarks/dedup.py --data OFFERS.csv --columns id=id,title=title[,brand=...,attr.NAME=...] \\
        --calibration-pairs CAL.csv --pairs TEST.csv --out dedup.json

Runs from any folder. The offers CSV (one file holding every shop's offers, ids unique) is imported with
afmrl's offers importer (``--columns`` as in ``afmrl data import offers``). Pair files have the columns
``ltable_id,rtable_id,label``. The job (afmrl.dedup: MiniLM + TF-IDF + code/brand/attribute/price features,
Milvus Lite neighbours, gradient-boosted trees) learns and calibrates on the calibration pairs only
(threshold: the best out-of-fold F1, ``--rule precision`` for ``--target-precision``); the test pairs'
labels are read only to score. A test pair counts as a predicted match when its two offers end in the same
group (the test pairs are decided as candidate pairs next to the index neighbours). Writes precision,
recall, F1 (and the threshold, the calibration's out-of-fold figures, timings, the machine and its load)
to ``--out`` and a Markdown row next to it (``.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("AFMRL_PROGRESS", "off")

import numpy as np  # noqa: E402

from afmrl.catalog.importers.offers import import_offers, parse_column_mapping  # noqa: E402
from afmrl.catalog.io import read_catalog  # noqa: E402
from afmrl.config import DedupConfig, SplitConfig  # noqa: E402
from afmrl.dedup.job import decide, prepare  # noqa: E402
from afmrl.dedup.pairs import read_pairs  # noqa: E402
from afmrl.errors import AfmrlError  # noqa: E402


def scores(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    tp = int((predicted & (labels == 1)).sum())
    fp = int((predicted & (labels == 0)).sum())
    fn = int((~predicted & (labels == 1)).sum())
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f, 4), "tp": tp, "fp": fp, "fn": fn}


def load() -> str:
    try:
        return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "load average unknown"


def run(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    cfg = DedupConfig(threshold_rule=args.rule, target_precision=args.target_precision, top_k=args.top_k,
                      grouping=args.grouping, seed=args.seed)  # fmt: skip
    load_before = load()
    with tempfile.TemporaryDirectory(prefix="afmrl-dedup-bench-") as tmp:
        import_offers(args.data, Path(tmp) / "offers", parse_column_mapping(args.columns), SplitConfig())
        listings = read_catalog(Path(tmp) / "offers").listings
    known = set(listings["listing_id"].astype(str))
    calibration = read_pairs(args.calibration_pairs, known)
    test = read_pairs(args.pairs, known)
    t_prep = time.perf_counter()
    prep = prepare(listings, cfg)
    t_decide = time.perf_counter()
    result = decide(prep, calibration, cfg, labelled_source=str(args.calibration_pairs),
                    extra_pairs=test[["listing_a", "listing_b"]])  # the ids only: the labels stay unread  # fmt: skip
    predicted = result.decide_pair(test["listing_a"], test["listing_b"])
    end = time.perf_counter()
    out = {
        **scores(predicted, test["label"].to_numpy()),
        "threshold": round(result.calibration.threshold, 6),
        "rule": result.calibration.rule,
        "calibration_oof": result.calibration.to_json(),
        "test_pairs": int(len(test)), "test_positives": int(test["label"].sum()),
        "calibration_pairs": int(len(calibration)), "offers": int(len(listings)),
        "groups": result.summary()["groups"], "candidate_pairs": result.candidates,
        "features": result.feature_names, "config": cfg.model_dump(),
        "seconds": {"total": round(end - start, 1), "import": round(t_prep - start, 1),
                    "embed_neighbours": round(t_decide - t_prep, 1), "fit_decide_group": round(end - t_decide, 1)},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_before": load_before, "load_after": load()},
        "command": " ".join(["python", "benchmarks/dedup.py", *sys.argv[1:]]),
    }  # fmt: skip
    return out


def markdown(out: dict) -> str:
    return ("| precision | recall | F1 | threshold | test pairs | wall time | machine |\n|---|---|---|---|---|---|---|\n"
            f"| {out['precision']:.3f} | {out['recall']:.3f} | {out['f1']:.3f} | {out['threshold']:.3f} | "
            f"{out['test_pairs']:,} ({out['test_positives']:,} matches) | {out['seconds']['total']:.0f} s | "
            f"{out['machine']['cpus']} CPUs, {out['machine']['load_before']} |\n")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path, help="offers CSV (every shop's offers, ids unique)")
    ap.add_argument("--columns", required=True, help="column mapping: id=...,title=...[,brand=...,attr.NAME=...]")
    ap.add_argument("--calibration-pairs", required=True, type=Path, help="labelled pairs to learn and calibrate on")
    ap.add_argument("--pairs", required=True, type=Path, help="labelled test pairs (scored only)")
    ap.add_argument("--out", required=True, type=Path, help="JSON result")
    ap.add_argument("--rule", choices=["f1", "precision"], default="f1", help="threshold rule (default: best F1)")
    ap.add_argument("--target-precision", type=float, default=0.95)
    ap.add_argument("--top-k", type=int, default=10, help="index neighbours per offer")
    ap.add_argument("--grouping", choices=["average", "scored_average", "components"], default="scored_average")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        out = run(args)
    except AfmrlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    args.out.with_suffix(".md").write_text(markdown(out), encoding="utf-8")
    print(markdown(out), end="")
    print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
