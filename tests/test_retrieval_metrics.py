from __future__ import annotations

import numpy as np
import pytest

from afmrl.retrieval.metrics import retrieval_metrics


def test_metrics_hand_computed():
    sim = np.array([[0.9, 0.8, 0.1, 0.0], [0.1, 0.2, 0.9, 0.3], [0.5, 0.4, 0.3, 0.2]])
    rel = np.array([[True, False, False, False], [False, True, False, True], [False, False, False, False]])
    m = retrieval_metrics(sim, rel, ks=(1, 2))
    assert m["queries"] == 2 and m["queries_without_relevant"] == 1
    # q0: relevant at rank 1; q1: ranking 2 (0.9), 3 (0.3), 1 (0.2), 0 -> first relevant at rank 2
    assert m["R@1"] == pytest.approx(0.5)
    assert m["R@2"] == pytest.approx(1.0)
    assert m["MRR"] == pytest.approx((1 + 1 / 2) / 2)
    # q1 AP@10: hits at ranks 2 and 3 -> (1/2 + 2/3) / 2
    assert m["mAP@10"] == pytest.approx((1 + (0.5 + 2 / 3) / 2) / 2)


def test_perfect_and_worst_rankings():
    rng = np.random.default_rng(0)
    n = 20
    sim = rng.random((n, n))
    np.fill_diagonal(sim, 2.0)
    m = retrieval_metrics(sim, np.eye(n, dtype=bool))
    assert m["R@1"] == 1.0 and m["MRR"] == 1.0 and m["mAP@10"] == 1.0
    np.fill_diagonal(sim, -1.0)
    m = retrieval_metrics(sim, np.eye(n, dtype=bool))
    assert m["R@10"] == 0.0 and m["MRR"] == pytest.approx(1 / n)


def test_a_missing_eval_split_is_an_error_naming_the_splits_present():
    import pandas as pd

    from afmrl.errors import DataError
    from afmrl.retrieval.evaluate import resolve_split

    listings = pd.DataFrame({"split": ["train", "val", "gallery", None]})
    assert resolve_split(listings, "val") == "val"
    with pytest.raises(DataError, match=r"no 'test' split \(its splits: gallery, train, val\).*eval\.split"):
        resolve_split(listings, "test")
