"""Dedup stage: groups of listings that are the same product, and a review queue.

``run(cfg, catalog_dir, encoder, out_dir)``: every listing of the catalogue is embedded (pretrained MiniLM
text; and the afmrl ``encoder``'s listing embedding when one is given), each listing's ``dedup.top_k``
neighbours in Milvus become candidate pairs, and a classifier on pair features (:mod:`afmrl.dedup`) is fit on
labelled pairs from the catalogue's product ids (listings of ``dedup.label_splits``). Its threshold is
calibrated on out-of-fold scores to ``dedup.target_precision`` (``dedup.threshold_rule``); pairs above it are
grouped (``dedup.grouping``). A pair file (``afmrl dedup --pairs``) can give the labelled pairs instead.
Listings with a product id outside the labelled pairs (the test split) check the decision on pairs the
classifier never saw (``held_out`` precision / recall of "same group" on their neighbour pairs).

Outputs: ``out_dir/groups.parquet`` (``listing_id, group_id, group_size``; every listing, singletons
included), ``out_dir/review.parquet`` (pairs for a human: ``listing_a, listing_b, score, threshold, reason,
title_a, title_b, same_group``), ``out_dir/dedup.json`` (threshold, calibration precision / recall, groups,
held-out figures), ``out_dir/metrics.json`` (the headline figures) and an MLflow run ``dedup``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from afmrl.atomic import atomic_path, write_json_atomic
from afmrl.catalog.io import Catalog, read_catalog
from afmrl.config import Config
from afmrl.dedup.job import decide, prepare
from afmrl.dedup.pairs import product_pairs, read_pairs
from afmrl.errors import DataError
from afmrl.models.encoders import load_encoder
from afmrl.models.encoders.dual import DualEncoder
from afmrl.models.encoders.ref import resolve
from afmrl.models.inputs import image_paths, listing_attributes, listing_texts
from afmrl.progress import progress
from afmrl.tracking.runs import stage_run
from afmrl.tracking.store import preflight

GROUPS_FILE, REVIEW_FILE, SUMMARY_FILE, METRICS_FILE = "groups.parquet", "review.parquet", "dedup.json", "metrics.json"
ENCODE_BATCH = 256


@dataclass
class DedupStageResult:
    summary: dict[str, Any]
    groups_path: Path
    review_path: Path
    summary_path: Path
    details: dict[str, Any] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        s = self.summary
        out = {"threshold": s["threshold"], "calibration_precision": s["calibration"]["precision"],
               "calibration_recall": s["calibration"]["recall"], "groups": s["groups"],
               "grouped_listings": s["grouped_listings"], "review_pairs": s["review_pairs"]}  # fmt: skip
        for key in ("precision", "recall"):
            value = (s.get("held_out") or {}).get(key)
            if value is not None:
                out[f"held_out_{key}"] = value
        return {k: float(v) for k, v in out.items()}


def encoder_vectors(cfg: Config, catalog: Catalog, rows: pd.DataFrame, encoder: str | Path) -> tuple[np.ndarray, str]:
    """The afmrl encoder's listing embeddings of ``rows`` (text + image as the index stage sees them)."""
    ref = resolve(encoder, cfg.tracking, cfg.encoder)
    try:
        model = load_encoder(ref, cfg.encoder)
    finally:
        ref.cleanup()
    enc = model.cfg if isinstance(model, DualEncoder) else cfg.encoder
    out = []
    with progress("dedup: encoder embeddings", len(rows), unit="listing") as advance:
        for lo in range(0, len(rows), ENCODE_BATCH):
            batch = rows.iloc[lo : lo + ENCODE_BATCH]
            texts = listing_texts(batch, listing_attributes(batch, enc, catalog.listings), enc)
            out.append(np.asarray(model.encode_listings(texts, image_paths(catalog, batch["image"])), dtype=np.float32))
            advance(len(batch))
    vectors = np.concatenate(out)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12), ref.ref


def held_out(result: Any, ids: list[str], products: list[str | None], rows: np.ndarray,
             neighbour_pairs: set[tuple[int, int]]) -> dict[str, Any]:  # fmt: skip
    """Precision / recall of "same group" on the neighbour pairs among ``rows`` (listings never in a labelled
    pair), labelled by product id."""
    mask = np.zeros(len(ids), dtype=bool)
    mask[rows] = True
    pairs = [(i, j) for i, j in neighbour_pairs if mask[i] and mask[j]]
    if not pairs:
        return {"pairs": 0, "precision": None, "recall": None}
    truth = np.array([products[i] == products[j] for i, j in pairs])
    same = result.decide_pair(pd.Series([ids[i] for i, _ in pairs]), pd.Series([ids[j] for _, j in pairs]))
    tp = int((same & truth).sum())
    return {"pairs": len(pairs), "matches": int(truth.sum()),
            "precision": round(tp / int(same.sum()), 4) if same.any() else None,
            "recall": round(tp / int(truth.sum()), 4) if truth.any() else None}  # fmt: skip


def run(cfg: Config, catalog_dir: str | Path, encoder: str | Path | None, out_dir: str | Path,
        pairs_file: str | Path | None = None) -> DedupStageResult:  # fmt: skip
    """Group the catalogue's listings by product; see the module docstring for the outputs. ``pairs_file``:
    labelled pairs (``ltable_id,rtable_id,label`` by listing id) to calibrate on instead of the product ids."""
    preflight(cfg.tracking)
    dcfg = cfg.dedup
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    catalog = read_catalog(catalog_dir)
    rows = catalog.listings.reset_index(drop=True)
    if len(rows) < 2:
        raise DataError(f"{len(rows)} listing(s): nothing to de-duplicate", file=str(catalog_dir))
    given = read_pairs(pairs_file, set(rows["listing_id"].astype(str))) if pairs_file is not None else None
    if given is not None and given["label"].nunique() < 2:
        raise DataError(f"all {len(given)} pairs have label {int(given['label'].iloc[0])}: both matching and "
                        "non-matching pairs are needed to calibrate", file=str(pairs_file), field="label")  # fmt: skip
    start = time.perf_counter()
    with stage_run(cfg.tracking, "dedup") as run_:
        vectors, encoder_ref = encoder_vectors(cfg, catalog, rows, encoder) if encoder is not None else (None, None)
        run_.log_config(cfg, ("dedup",), catalog=str(catalog_dir), encoder=encoder_ref)
        prep = prepare(rows, dcfg, vectors)
        ids = prep.view.ids
        products = [None if p is None or (isinstance(p, float) and p != p) else str(p) for p in rows["product_id"]]
        labelled = rows["split"].isin(dcfg.label_splits).to_numpy() & np.array([p is not None for p in products])
        candidates = prep.candidate_pairs()
        if given is not None:
            pairs, source = given, str(pairs_file)
            in_pairs = set(pairs["listing_a"]) | set(pairs["listing_b"])
            labelled = np.array([lid in in_pairs for lid in ids])
        else:
            pairs = product_pairs(ids, products, labelled, candidates, dcfg.max_positives_per_product, dcfg.seed)
            source = f"{catalog_dir} (product ids of {', '.join(dcfg.label_splits)})"
        if pairs.empty or pairs["label"].nunique() < 2:
            raise DataError(f"{len(pairs)} labelled pair(s) ({int(pairs['label'].sum()) if len(pairs) else 0} matching): both kinds are needed "
                            "to calibrate", file=source, field="label" if given is not None else "dedup.label_splits")  # fmt: skip
        result = decide(prep, pairs, dcfg, labelled_source=source)
        others = np.flatnonzero(~labelled & np.array([p is not None for p in products]))
        summary = {**result.summary(), "labelled_pairs": int(len(pairs)), "labelled_matches": int(pairs["label"].sum()),
                   "held_out": held_out(result, ids, products, others, candidates), "encoder": encoder_ref,
                   "catalog": str(catalog_dir), "labelled_source": source, "seconds": round(time.perf_counter() - start, 2)}  # fmt: skip
        groups_path, review_path, summary_path = out / GROUPS_FILE, out / REVIEW_FILE, out / SUMMARY_FILE
        with atomic_path(groups_path) as tmp:
            result.groups.to_parquet(tmp, index=False)
        with atomic_path(review_path) as tmp:
            result.review.to_parquet(tmp, index=False)
        write_json_atomic(summary_path, summary)
        stage = DedupStageResult(summary, groups_path, review_path, summary_path)
        write_json_atomic(out / METRICS_FILE, stage.metrics())
        run_.log_metrics(stage.metrics())
        run_.log_artifact(summary_path)
    return stage
