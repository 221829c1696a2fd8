"""The promotion gate: is a candidate encoder better than the current champion?

Rules (``registry.gate``: metric -> ``min_improvement``, ``max_regression``, ``floor``; metrics are
keys of the evaluation report's ``metrics``, higher is better):

1. every gating metric must be present and finite in the candidate's report;
2. every metric with a ``floor`` must be >= it (for the first model this is the only bar);
3. with a champion, no metric may drop by more than its ``max_regression`` (candidate - champion
   >= -max_regression), and
4. at least one metric must improve by at least its ``min_improvement`` (and by more than 0).

The champion is whatever version the ``champion`` alias points at when the gate runs, however it got
there (the gate, ``afmrl promote --version N``, or the MLflow UI); its figures are the gating metrics
recorded on that version when it was registered (tag ``afmrl.metrics``), else its run's metrics.
A champion without a figure for a gating metric blocks automatic promotion (a person decides).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

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


def evaluate_gate(candidate: dict[str, Any], champion: dict[str, Any] | None, rules: dict[str, GateRule],
                  champion_label: str = "the champion") -> GateOutcome:  # fmt: skip
    """Apply the rules; ``champion`` None means there is none yet (floors decide)."""
    failures: list[str] = []
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
        if check.delta < -rule.max_regression - EPS:
            check.passed = False
            failures.append(f"{metric} regressed by {_fmt(-check.delta)} ({_fmt(champ)} -> {_fmt(cand)}), more than "
                            f"max_regression {_fmt(rule.max_regression)}")  # fmt: skip
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
        return GateOutcome(False, ["no champion yet and a floor is not met", *failures], checks)
    if not failures and not any(c.improved for c in checks.values()):
        failures.append(f"no gating metric improved on {champion_label} by its min_improvement (" + ", ".join(
            f"{c.metric} {c.delta:+.4f} < {_fmt(c.min_improvement)}" for c in checks.values()
            if c.delta is not None) + ")")  # fmt: skip
    if failures:
        return GateOutcome(False, failures, checks)
    return GateOutcome(True, passes, checks)


def recorded_metrics(client: Any, version: Any) -> dict[str, float]:
    """The figures a registered version was promoted (or rejected) on: its ``afmrl.metrics`` tag, else
    the metrics of the run that registered it (``@`` written as ``_at_`` there)."""
    tag = (version.tags or {}).get(METRICS_TAG)
    if tag:
        try:
            doc = json.loads(tag)
        except json.JSONDecodeError:
            doc = {}
        if isinstance(doc, dict):
            return {k: float(v) for k, v in doc.items() if _finite(v) is not None}
    if version.run_id:
        metrics = client.get_run(version.run_id).data.metrics
        return {**metrics, **{k.replace("_at_", "@"): v for k, v in metrics.items()}}
    return {}
