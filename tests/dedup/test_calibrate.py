"""The pair classifier's calibration: thresholds meet their target on constructed scores and labels."""

from __future__ import annotations

import numpy as np
import pytest

from afmrl.dedup.calibrate import fit_scorer, threshold_for_f1, threshold_for_precision
from afmrl.errors import DataError


def _scores(seed: int = 0, n: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.3).astype(np.int64)
    scores = np.clip(rng.normal(0.35 + 0.35 * labels, 0.15), 0, 1)  # overlapping classes
    return scores, labels


def _precision_recall(scores: np.ndarray, labels: np.ndarray, t: float) -> tuple[float, float]:
    pred = scores >= t
    tp = int((pred & (labels == 1)).sum())
    return tp / max(1, int(pred.sum())), tp / int(labels.sum())


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95])
def test_precision_threshold_meets_the_target_with_the_most_recall(target):
    scores, labels = _scores()
    cal = threshold_for_precision(scores, labels, target)
    p, r = _precision_recall(scores, labels, cal.threshold)
    assert cal.target_met and p >= target and abs(p - cal.precision) < 1e-9 and abs(r - cal.recall) < 1e-9
    lower = np.sort(np.unique(scores[scores < cal.threshold]))[-1]  # the next lower threshold falls short
    assert _precision_recall(scores, labels, lower)[0] < target


def test_an_unreachable_precision_merges_nothing():
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    labels = np.array([0, 1, 0, 1])
    cal = threshold_for_precision(scores, labels, 0.99)
    assert not cal.target_met and cal.threshold > scores.max() and cal.recall == 0.0


def test_f1_threshold_is_the_best_on_the_pairs():
    scores, labels = _scores(1)
    cal = threshold_for_f1(scores, labels)
    p, r = _precision_recall(scores, labels, cal.threshold)
    best = max(2 * pp * rr / (pp + rr) for pp, rr in (_precision_recall(scores, labels, t) for t in np.unique(scores))
               if pp + rr > 0)  # fmt: skip
    assert abs(2 * p * r / (p + r) - best) < 1e-9 and abs(cal.f1 - best) < 1e-9


def test_out_of_fold_scores_separate_learnable_pairs_and_are_not_in_sample():
    rng = np.random.default_rng(0)
    labels = (rng.random(600) < 0.4).astype(np.int64)
    one_value = np.where(np.arange(600) == 7, 1.0, np.nan)  # a single value: scikit-learn's binning refuses it
    x = np.column_stack([labels + rng.normal(0, 0.3, 600), rng.normal(0, 1, 600), np.full(600, np.nan), one_value])
    scorer, oof = fit_scorer(x, labels, folds=3, max_iter=50)
    assert list(scorer.columns) == [0, 1]  # the all-NaN and the one-value columns are left out
    assert oof.shape == (600,) and np.mean((oof >= 0.5) == labels) > 0.85
    in_sample = scorer.score(x)
    assert np.abs(in_sample - oof).max() > 0.01  # out of fold really is another model's score
    cal = threshold_for_precision(oof, labels, 0.95)
    assert cal.target_met and cal.recall > 0.5


def test_one_class_is_refused():
    with pytest.raises(DataError, match="both matching and non-matching"):
        fit_scorer(np.zeros((10, 2)), np.ones(10, dtype=np.int64))


def test_prior_estimate_and_reweighed_threshold_follow_a_shifted_share_of_matches():
    from afmrl.dedup.calibrate import estimate_prior

    rng = np.random.default_rng(2)

    def pairs(n: int, prior: float) -> tuple[np.ndarray, np.ndarray]:
        y = (rng.random(n) < prior).astype(np.int64)
        x = rng.normal(1.5 * y, 1.0)  # calibrated posterior at a 50% prior: sigmoid of the log-likelihood ratio
        return 1 / (1 + np.exp(-(1.5 * x - 1.125))), y

    cal_scores, cal_labels = pairs(4000, 0.5)
    test_scores, test_labels = pairs(4000, 0.1)
    q = estimate_prior(test_scores, float(cal_labels.mean()))
    assert abs(q - 0.1) < 0.03
    plain = threshold_for_f1(cal_scores, cal_labels)
    shifted = threshold_for_f1(cal_scores, cal_labels, prior=q)
    assert shifted.threshold > plain.threshold and shifted.prior == q
    f1 = lambda t: 2 * (p := _precision_recall(test_scores, test_labels, t))[0] * p[1] / (p[0] + p[1])  # noqa: E731
    assert f1(shifted.threshold) > f1(plain.threshold)
