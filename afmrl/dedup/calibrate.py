"""The pair classifier and its threshold, learnt from labelled pairs only.

:func:`fit_scorer` fits gradient-boosted trees (scikit-learn's HistGradientBoostingClassifier: NaN-aware,
fast on CPU) on the labelled pairs' features and returns the out-of-fold probabilities of those pairs
(k-fold, each pair scored by a model that never saw it), so the threshold is chosen on scores that
behave like scores of unseen pairs. :func:`threshold_for_precision` picks the lowest threshold whose
out-of-fold precision reaches the target (the most recall at that precision); :func:`threshold_for_f1`
the one with the best F1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.model_selection import StratifiedKFold
from threadpoolctl import threadpool_limits

from afmrl.errors import DataError

# OpenMP threads of the trees: small models on shared CPUs fit far faster on one thread than with threads
# spinning against other processes (measured: minutes instead of seconds under load)
THREADS = 1


@dataclass
class Calibration:
    """A decision threshold and how it does on the labelled pairs (out of fold)."""

    threshold: float
    precision: float
    recall: float
    f1: float
    rule: str
    target_met: bool
    pairs: int
    positives: int
    prior: float | None = None  # the share of matches the figures are re-weighed to (None: the labelled pairs')

    def to_json(self) -> dict[str, float | int | str | bool]:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in self.__dict__.items()}


def _model(seed: int, max_iter: int, learning_rate: float) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(max_iter=max_iter, learning_rate=learning_rate, max_leaf_nodes=31,
                                          min_samples_leaf=20, l2_regularization=1.0, early_stopping=False,
                                          random_state=seed)  # fmt: skip


def check_labels(labels: np.ndarray, what: str = "labelled pairs") -> None:
    """At least two matching and two non-matching pairs (out-of-fold scores need two folds of each)."""
    n_pos = int((labels == 1).sum())
    if min(n_pos, len(labels) - n_pos) < 2:
        raise DataError(f"{what}: need both matching and non-matching pairs (two of each at least) to calibrate, "
                        f"got {n_pos} of {len(labels)} matching", field="label")  # fmt: skip


@dataclass
class PairScorer:
    """A fitted classifier and the feature columns it uses: those with at least two distinct values among the
    pairs it learnt from (a column with no value there, e.g. a category when the data has none, says nothing;
    scikit-learn's binning also refuses a column with fewer than two values)."""

    model: HistGradientBoostingClassifier
    columns: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, seed: int, max_iter: int, learning_rate: float) -> PairScorer:
        columns = np.array([j for j in range(x.shape[1]) if len(np.unique(x[np.isfinite(x[:, j]), j])) >= 2],
                           dtype=np.int64)  # fmt: skip
        if len(columns) == 0:
            raise DataError(f"no pair feature takes two values among the {len(y)} labelled pairs: nothing to learn from",
                            field="label")  # fmt: skip
        return cls(_model(seed, max_iter, learning_rate).fit(x[:, columns], y), columns)

    def score(self, features: np.ndarray) -> np.ndarray:
        """Match probability of each row of ``features``."""
        if len(features) == 0:
            return np.zeros(0, dtype=np.float64)
        with threadpool_limits(THREADS, user_api="openmp"):
            return self.model.predict_proba(features[:, self.columns])[:, 1]


def fit_scorer(features: np.ndarray, labels: np.ndarray, *, folds: int = 5, seed: int = 0, max_iter: int = 300,
               learning_rate: float = 0.05) -> tuple[PairScorer, np.ndarray]:  # fmt: skip
    """The classifier fit on every labelled pair, and each pair's out-of-fold match probability."""
    labels = np.asarray(labels, dtype=np.int64)
    check_labels(labels)
    n_splits = max(2, min(folds, int(np.bincount(labels).min())))
    oof = np.zeros(len(labels), dtype=np.float64)
    with threadpool_limits(THREADS, user_api="openmp"):
        for train, held in StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(features, labels):
            fold = PairScorer.fit(features[train], labels[train], seed, max_iter, learning_rate)
            oof[held] = fold.score(features[held])
        final = PairScorer.fit(features, labels, seed, max_iter, learning_rate)
    return final, oof


def estimate_prior(scores: np.ndarray, train_prior: float, iterations: int = 200) -> float:
    """The share of matches among unlabelled pairs, from the classifier's probabilities for them (EM of Saerens,
    Latinne and Decaestecker, 2002: re-weigh the posteriors by the prior ratio until the prior is stable)."""
    scores = np.clip(np.asarray(scores, dtype=np.float64), 1e-6, 1 - 1e-6)
    if len(scores) == 0:
        return train_prior
    q = train_prior
    for _ in range(iterations):
        w = scores * q / train_prior
        posterior = w / (w + (1 - scores) * (1 - q) / (1 - train_prior))
        new = float(posterior.mean())
        if abs(new - q) < 1e-7:
            break
        q = new
    return float(np.clip(q, 1e-4, 1 - 1e-4))


def _curve(scores: np.ndarray, labels: np.ndarray, prior: float | None = None,
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Precision, recall and F1 when deciding ``score >= t`` for each distinct score t (descending); with
    ``prior``, as they would be among pairs with that share of matches (matches and non-matches re-weighed)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    w1, w0 = 1.0, 1.0
    if prior is not None:
        base = float(y.mean())
        w1, w0 = prior / base, (1 - prior) / (1 - base)
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]  # the last index of each distinct score
    tp = w1 * np.cumsum(y)[last].astype(np.float64)
    taken = tp + w0 * np.cumsum(1 - y)[last].astype(np.float64)
    precision = tp / taken
    recall = tp / max(1e-12, w1 * int(y.sum()))
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return s[last], precision, recall, f1


def threshold_for_precision(scores: np.ndarray, labels: np.ndarray, target: float,
                            prior: float | None = None) -> Calibration:  # fmt: skip
    """The lowest threshold whose precision on the labelled pairs (re-weighed to ``prior`` when given) is >=
    ``target``; when none reaches it, the threshold above every score (nothing merged), ``target_met`` false."""
    labels = np.asarray(labels, dtype=np.int64)
    t, p, r, f = _curve(np.asarray(scores, dtype=np.float64), labels, prior)
    ok = np.flatnonzero(p >= target)
    if len(ok) == 0:
        return Calibration(float(np.nextafter(t.max(), np.inf)), 0.0, 0.0, 0.0, f"precision>={target}", False,
                           len(labels), int(labels.sum()), prior)  # fmt: skip
    k = ok[-1]  # the lowest such threshold: the most recall
    return Calibration(float(t[k]), float(p[k]), float(r[k]), float(f[k]), f"precision>={target}", True,
                       len(labels), int(labels.sum()), prior)  # fmt: skip


def threshold_for_f1(scores: np.ndarray, labels: np.ndarray, prior: float | None = None) -> Calibration:
    """The threshold with the best F1 on the labelled pairs (re-weighed to ``prior`` when given; halfway to the
    next lower score, for margin)."""
    labels = np.asarray(labels, dtype=np.int64)
    t, p, r, f = _curve(np.asarray(scores, dtype=np.float64), labels, prior)
    k = int(np.argmax(f))
    threshold = float((t[k] + t[k + 1]) / 2) if k + 1 < len(t) else float(t[k])
    return Calibration(threshold, float(p[k]), float(r[k]), float(f[k]), "max_f1", True, len(labels),
                       int(labels.sum()), prior)  # fmt: skip
