"""Synthetic catalogue stage: the embedded default data (params ``synth.*``, ``splits.*``).

``run(cfg, out_dir)`` writes ``listings.parquet``, ``catalog.json``, ``products.parquet`` and the
rendered images to ``out_dir`` (:func:`afmrl.catalog.synth.generate`: same seed, same bytes) and logs
an MLflow run ``synth`` with the parameters and the counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from afmrl.catalog.synth import generate
from afmrl.config import Config
from afmrl.tracking.runs import stage_run


@dataclass
class SynthResult:
    out_dir: Path
    listings_path: Path
    listings: int
    products: int

    def metrics(self) -> dict[str, float]:
        return {"listings": float(self.listings), "products": float(self.products)}


def run(cfg: Config, out_dir: str | Path) -> SynthResult:
    import pandas as pd

    out = Path(out_dir)
    with stage_run(cfg.tracking, "synth") as run_:
        run_.log_config(cfg, ("synth", "splits"), out=str(out))
        path = generate(cfg.synth, cfg.splits, out)
        result = SynthResult(out, path, len(pd.read_parquet(path, columns=["listing_id"])),
                             len(pd.read_parquet(out / "products.parquet", columns=["product_id"])))  # fmt: skip
        run_.log_metrics(result.metrics())
    return result
