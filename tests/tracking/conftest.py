"""Real MLflow on throwaway SQLite stores: one store is initialised per session and copied per test
(creating the tables takes seconds); one small encoder folder is shared."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from afmrl.config import Config, TrackingConfig, load_config
from afmrl.tracking.runs import PARENT_RUN_ENV, PIPELINE_ID_ENV
from afmrl.tracking.store import prepare_store


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    prepare_store(TrackingConfig(uri=f"sqlite:///{db}"))
    return db


@pytest.fixture
def store_cfg(tmp_path: Path, mlflow_template: Path, monkeypatch: pytest.MonkeyPatch) -> Config:
    """Defaults with tracking on a fresh copy of the template store in ``tmp_path/store``."""
    for var in (PARENT_RUN_ENV, PIPELINE_ID_ENV, "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(mlflow_template, db)
    return load_config(None, [f"tracking.uri=sqlite:///{db}"])


@pytest.fixture(scope="session")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from afmrl.config import EncoderConfig
    from afmrl.models.encoders.dual import DualEncoder

    torch.manual_seed(0)
    return DualEncoder(EncoderConfig(dim=32, hidden=64, image_size=64)).save_pretrained(
        tmp_path_factory.mktemp("encoder") / "encoder"
    )


@pytest.fixture(scope="session")
def tiny_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """24 listings (6 products x 2 variants x 2 sellers), 64 px images, every split present."""
    from afmrl.catalog.synth import generate

    c = load_config(None, ["synth.n_base_products=6", "synth.near_duplicates=1", "synth.listings_per_product=2",
                           "synth.image_size=64", "splits.val_fraction=0.25", "splits.test_fraction=0.25"])  # fmt: skip
    out = tmp_path_factory.mktemp("tiny-catalog")
    generate(c.synth, c.splits, out)
    return out


def write_report(path: Path, encoder: Path | None = None, catalog: Path | None = None,
                 per_query: dict[str, list[float]] | None = None, n_queries: int = 250, **metrics: float) -> Path:
    """An evaluation report as afmrl/stages/evaluate.py writes it (``R1`` -> ``listing_R@1``), bound to
    ``encoder`` (its content digest) and, when given, to ``catalog``; ``per_query``: gate metric -> values
    (their count is the query count, and their means the metrics unless given)."""
    from afmrl.digest import content_hash
    from afmrl.models.encoders.ref import fingerprint
    from afmrl.tracking.datasets import catalog_digest

    names = {"R1": "listing_R@1", "mAP10": "listing_mAP@10"}
    path.parent.mkdir(parents=True, exist_ok=True)
    values = dict(per_query or {})
    figures = {names.get(k, k): v for k, v in metrics.items()}
    for name, vals in values.items():
        figures.setdefault(name, sum(vals) / len(vals))
        n_queries = len(vals)
    ids = [f"q{i}" for i in range(n_queries)]
    doc = {"metrics": figures, "per_category": {}, "counts": {}, "split": "test", "encoder": str(encoder),
           "candidate": {"path": str(encoder), "digest": fingerprint(encoder) if encoder is not None else ""},
           "catalog": {"path": str(catalog or "data/validated"), "digest": catalog_digest(catalog) if catalog else ""},
           "queries": {"n": n_queries, "digest": content_hash(sorted(ids))},
           "per_query": {"query_ids": {"listing": ids}, "values": values}}  # fmt: skip
    path.write_text(json.dumps(doc))
    return path
