"""Per-query values of the gate metrics: their mean is the metric of record, row for row."""

from __future__ import annotations

import numpy as np
import pytest

from afmrl.retrieval.evaluate import EvalResult, TaskData, per_query, per_query_metrics
from afmrl.retrieval.metrics import retrieval_metrics


def test_per_query_means_are_the_metrics():
    rng = np.random.default_rng(0)
    sim = rng.normal(size=(30, 40)).astype(np.float32)
    rel = rng.random((30, 40)) < 0.08
    rel[3] = False  # a query without a relevant item is not scored
    task = TaskData("listing", sim, rel, ["c"] * 30, np.arange(30))
    metrics = retrieval_metrics(sim, rel, (1, 5, 10))
    for measure in ("R@1", "R@5", "R@10", "mAP@10"):
        values = per_query(task, measure)
        assert len(values) == rel.any(axis=1).sum()
        assert values.mean() == pytest.approx(metrics[measure], abs=1e-6)
    with pytest.raises(ValueError):
        per_query(task, "MRR")

    result = EvalResult(metrics, {}, {}, [task])
    doc = per_query_metrics(result, ["listing_R@1", "listing_mAP@10", "listing_MRR", "photo_to_catalogue_R@1"],
                            [f"id{i}" for i in range(30)])  # fmt: skip
    assert set(doc["values"]) == {"listing_R@1", "listing_mAP@10"}
    assert "id3" not in doc["query_ids"]["listing"] and len(doc["query_ids"]["listing"]) == len(doc["values"]["listing_R@1"])
