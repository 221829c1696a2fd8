"""The dedup stage on a tiny synthetic catalogue: Milvus Lite neighbours, calibration on product ids, outputs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from afmrl.catalog.io import read_catalog
from afmrl.config import load_config
from afmrl.stages import dedup


@pytest.mark.slow
def test_stage_groups_a_synthetic_catalogue(synth_catalog, tmp_path, one_thread):
    cfg = load_config(None, [f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", "dedup.top_k=5", "dedup.max_iter=50",
                             "dedup.target_precision=0.9", "dedup.folds=3"])  # fmt: skip
    result = dedup.run(cfg, synth_catalog, "pretrained", tmp_path / "out")
    listings = read_catalog(synth_catalog).listings
    groups = pd.read_parquet(result.groups_path)
    review = pd.read_parquet(result.review_path)
    summary = json.loads(result.summary_path.read_text())
    assert sorted(groups["listing_id"]) == sorted(listings["listing_id"])  # every listing, singletons included
    assert (groups.groupby("group_id")["listing_id"].count() == groups.groupby("group_id")["group_size"].first()).all()
    assert summary["calibration"]["rule"] == "precision>=0.9" and summary["labelled_pairs"] > 0
    if summary["calibration"]["target_met"]:
        assert summary["calibration"]["precision"] >= 0.9
    assert {"listing_a", "listing_b", "score", "threshold", "reason"} <= set(review.columns)
    assert "cos_encoder" in summary["features"] and "cos_text" in summary["features"]
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["threshold"] == summary["threshold"]
    # grouped listings of one group are mostly one product (precision-first calibration)
    merged = groups.merge(listings[["listing_id", "product_id"]], on="listing_id")
    multi = merged[merged["group_size"] > 1]
    if len(multi):
        purity = multi.groupby("group_id")["product_id"].agg(lambda s: s.value_counts().iloc[0] / len(s)).mean()
        assert purity >= 0.7

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=cfg.tracking.resolved_uri())
    runs = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id])
    assert [r.data.tags["afmrl.stage"] for r in runs] == ["dedup"]
    assert runs[0].data.metrics["threshold"] == pytest.approx(summary["threshold"])
