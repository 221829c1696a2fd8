"""The promotion gate: is a candidate encoder better than the current champion?

Rules (``registry.gate``: metric -> ``min_improvement``, ``max_regression``, ``floor``; metrics are
keys of the evaluation report's ``metrics``, higher is better):

1. every gating metric must be present and finite in the candidate's report;
2. every metric with a ``floor`` must be >= it (for the first model this is the only bar);
3. with a champion, no metric may drop by more than its ``max_regression`` (candidate - champion
   >= -max_regression), and
4. at least one metric must improve by at least its ``min_improvement`` (and by more than 0); when the
   promote stage re-scores the champion on the candidate's queries, "improve" means the lower bound of
   the paired bootstrap 95% interval of candidate - champion exceeds ``min_improvement``;
5. the report must hold at least ``registry.gate_min_queries`` queries.

The champion is whatever version the ``champion`` alias points at when the gate runs, however it got
there (the gate, ``afmrl promote --version N``, or the MLflow UI); its figures are the gating metrics
recorded on that version when it was registered (tag ``afmrl.metrics``), else its run's metrics.
A champion without a figure for a gating metric blocks automatic promotion (a person decides).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from afmrl.config import GateRule

METRICS_TAG = "afmrl.metrics"
EPS = 1e-9


@dataclass
class MetricCheck:
    metric: str
    candidate: float | None
    champion: float | None
    delta: float | None
    min_improvement: float
    max_regression: float
    floor: float | None
    passed: bool = True
    improved: bool = False
    interval: list[float] | None = None  # 95% paired bootstrap interval of candidate - champion


@dataclass
class GateOutcome:
    promoted: bool
    reasons: list[str]
    checks: dict[str, MetricCheck] = field(default_factory=dict)

    def checks_dict(self) -> dict[str, dict[str, Any]]:
        return {k: asdict(v) for k, v in self.checks.items()}


def _finite(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def paired_bootstrap(candidate: Any, champion: Any, n_boot: int = 2000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float]:  # fmt: skip
    """Percentile interval of mean(candidate - champion) over ``n_boot`` resamples of the same queries."""
    cand, champ = np.asarray(candidate, dtype=np.float64), np.asarray(champion, dtype=np.float64)
    if cand.shape != champ.shape or cand.ndim != 1 or not len(cand):
        raise ValueError("paired bootstrap needs two equally long, non-empty per-query vectors")
    diff = cand - champ
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, 256):  # chunks: n_boot x n_queries indices at once would be large
        stop = min(start + 256, n_boot)
        means[start:stop] = diff[rng.integers(0, len(diff), size=(stop - start, len(diff)))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def evaluate_gate(candidate: dict[str, Any], champion: dict[str, Any] | None, rules: dict[str, GateRule],
                  champion_label: str = "the champion", intervals: dict[str, tuple[float, float]] | None = None,
                  n_queries: int | None = None, min_queries: int = 1) -> GateOutcome:  # fmt: skip
    """Apply the rules; ``champion`` None means there is none yet (floors and the query count decide).
    ``intervals`` (metric -> 95% interval of candidate - champion on the same queries): when given, a
    metric counts as improved only if the interval's lower bound exceeds its ``min_improvement``."""
    failures: list[str] = []
    if n_queries is not None and n_queries < min_queries:
        failures.append(f"only {n_queries} evaluation queries, fewer than registry.gate_min_queries={min_queries}: "
                        "too few to decide on")  # fmt: skip
    passes: list[str] = []
    checks: dict[str, MetricCheck] = {}
    for metric, rule in rules.items():
        cand = _finite(candidate.get(metric))
        champ = _finite(champion.get(metric)) if champion is not None else None
        check = MetricCheck(metric, cand, champ, None, rule.min_improvement, rule.max_regression, rule.floor)
        checks[metric] = check
        if cand is None:
            check.passed = False
            failures.append(f"{metric}: missing or not finite in the candidate's report")
            continue
        if rule.floor is not None and cand < rule.floor - EPS:
            check.passed = False
            failures.append(f"{metric}={_fmt(cand)} is below the floor {_fmt(rule.floor)}")
        elif rule.floor is not None and champion is None:
            passes.append(f"{metric}={_fmt(cand)} meets the floor {_fmt(rule.floor)}")
        if champion is None:
            continue
        if champ is None:
            check.passed = False
            failures.append(f"{metric}: {champion_label} has no recorded value, so the candidate cannot be compared "
                            "(promote by hand with `afmrl promote --version N`)")  # fmt: skip
            continue
        check.delta = cand - champ
        interval = intervals.get(metric) if intervals is not None else None
        if intervals is not None:
            check.interval = list(interval) if interval is not None else None
        if check.delta < -rule.max_regression - EPS:
            check.passed = False
            failures.append(f"{metric} regressed by {_fmt(-check.delta)} ({_fmt(champ)} -> {_fmt(cand)}), more than "
                            f"max_regression {_fmt(rule.max_regression)}")  # fmt: skip
        elif intervals is not None:
            if interval is not None and interval[0] > rule.min_improvement + EPS:
                check.improved = True
                passes.append(f"{metric} improved by {_fmt(check.delta)} ({_fmt(champ)} -> {_fmt(cand)}), 95% interval "
                              f"[{interval[0]:+.4f}, {interval[1]:+.4f}] above min_improvement {_fmt(rule.min_improvement)}")
            else:
                shown = f"[{interval[0]:+.4f}, {interval[1]:+.4f}]" if interval is not None else "(no interval)"
                passes.append(f"{metric} changed by {check.delta:+.4f} ({_fmt(champ)} -> {_fmt(cand)}), 95% interval "
                              f"{shown}: not clearly above min_improvement {_fmt(rule.min_improvement)}")
        elif check.delta > EPS and check.delta >= rule.min_improvement - EPS:
            check.improved = True
            passes.append(f"{metric} improved by {_fmt(check.delta)} ({_fmt(champ)} -> {_fmt(cand)}), at least "
                          f"min_improvement {_fmt(rule.min_improvement)}")  # fmt: skip
        else:
            passes.append(f"{metric} changed by {check.delta:+.4f} ({_fmt(champ)} -> {_fmt(cand)}): within "
                          f"max_regression {_fmt(rule.max_regression)}")  # fmt: skip
    if champion is None:
        if not failures:
            return GateOutcome(True, ["no champion yet: promoted on the floors", *passes], checks)
        return GateOutcome(False, ["no champion yet and the floors or the query count are not met", *failures], checks)
    if not failures and not any(c.improved for c in checks.values()):
        what = "whose 95% interval's lower bound exceeds" if intervals is not None else "by"
        failures.append(f"no gating metric improved on {champion_label} {what} its min_improvement (" + ", ".join(
            f"{c.metric} {c.delta:+.4f} < {_fmt(c.min_improvement)}" for c in checks.values()
            if c.delta is not None) + ")")  # fmt: skip
    if failures:
        return GateOutcome(False, failures, checks)
    return GateOutcome(True, passes, checks)
