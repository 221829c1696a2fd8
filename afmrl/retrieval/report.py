"""Evaluation report: JSON (metrics of record), a Markdown summary and PNG plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from afmrl.atomic import atomic_path, write_json_atomic, write_text_atomic
from afmrl.retrieval.evaluate import EvalResult


def write_report(result: EvalResult, out_dir: str | Path, meta: dict[str, Any]) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report = {"metrics": result.metrics, "per_category": result.per_category, "counts": result.counts, **meta}
    paths = {"json": out / "report.json", "markdown": out / "summary.md"}
    write_json_atomic(paths["json"], report, sort_keys=True)
    write_text_atomic(paths["markdown"], markdown_summary(result, meta))
    paths.update(plot(result, out))
    return paths


def markdown_summary(result: EvalResult, meta: dict[str, Any]) -> str:
    tasks = sorted({k.rsplit("_", 1)[0] for k in result.metrics if k.endswith("_MRR")})
    cols = ["R@1", "R@5", "R@10", "mAP@10", "MRR", "queries"]
    catalog = meta.get("catalog", "")
    catalog = catalog.get("path", "") if isinstance(catalog, dict) else catalog
    lines = [f"# Evaluation: {catalog} (split {meta.get('split', '')})", "",
             "| task | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]  # fmt: skip
    for t in tasks:
        vals = [result.metrics.get(f"{t}_{c}") for c in cols]
        lines.append(f"| {t} | " + " | ".join("" if v is None else (f"{v:.0f}" if c == "queries" else f"{v:.3f}")
                                             for v, c in zip(vals, cols, strict=True)) + " |")  # fmt: skip
    if result.per_category:
        lines += ["", "Per category (listing task):", "", "| category | R@1 | queries |", "|---|---|---|"]
        for c, m in result.per_category.items():
            lines.append(f"| {c} | {m.get('R@1', float('nan')):.3f} | {m.get('queries', 0):.0f} |")
    return "\n".join(lines) + "\n"


def plot(result: EvalResult, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: dict[str, Path] = {}
    fig, ax = plt.subplots(figsize=(6, 4))
    for task in result.tasks:
        ks = np.arange(1, 11)
        has = task.relevant.any(axis=1)
        sim, rel = task.sim[has], task.relevant[has]
        if not len(sim):
            continue
        order = np.argsort(-sim, axis=1)[:, :10]
        hits = np.take_along_axis(rel, order, axis=1)
        ax.plot(ks, [hits[:, :k].any(axis=1).mean() for k in ks], marker="o", label=task.name)
    ax.set_xlabel("k")
    ax.set_ylabel("R@k")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.set_title("Recall@k")
    fig.tight_layout()
    paths["recall_curve"] = out / "recall_at_k.png"
    with atomic_path(paths["recall_curve"]) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)

    if result.tasks:
        task = result.tasks[0]
        has = task.relevant.any(axis=1)
        sim, rel = task.sim[has], task.relevant[has]
        pos = np.where(rel, sim, -np.inf).max(axis=1)
        neg = np.where(rel | ~np.isfinite(sim), -np.inf, sim).max(axis=1)
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.hist(pos[np.isfinite(pos)], bins=40, alpha=0.6, label="best positive")
        ax.hist(neg[np.isfinite(neg)], bins=40, alpha=0.6, label="hardest negative")
        ax.set_xlabel("cosine similarity")
        ax.legend()
        ax.set_title(f"{task.name}: positives vs hardest negatives")
        fig.tight_layout()
        paths["similarity_hist"] = out / "similarity_hist.png"
        with atomic_path(paths["similarity_hist"]) as tmp:
            fig.savefig(tmp, dpi=100)
        plt.close(fig)
    return paths


def round_figures(rounds: list[dict]) -> dict[str, float]:
    """``round<n>.<metric>`` (evaluation split), ``round<n>.attributes_micro_f1``, ``selected_round``: for
    MLflow (the stage's run and the pipeline's parent run)."""
    figures: dict[str, float] = {}
    for r in rounds:
        n = r["round"]
        figures[f"round{n}.{r['eval']['metric']}".replace("@", "_at_")] = float(r["eval"]["value"])
        f1 = (r.get("attributes") or {}).get("micro_f1")
        if isinstance(f1, int | float):
            figures[f"round{n}.attributes_micro_f1"] = float(f1)
        if r.get("selected"):
            figures["selected_round"] = float(n)
    return figures
