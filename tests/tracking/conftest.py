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


def write_report(path: Path, **metrics: float) -> Path:
    """An evaluation report as afmrl/retrieval/report.py writes it (``R1`` -> ``listing_R@1``)."""
    names = {"R1": "listing_R@1", "mAP10": "listing_mAP@10"}
    path.parent.mkdir(parents=True, exist_ok=True)
    doc = {"metrics": {names.get(k, k): v for k, v in metrics.items()}, "per_category": {}, "counts": {},
           "catalog": "data/validated", "encoder": "outputs/train/encoder", "split": "test"}  # fmt: skip
    path.write_text(json.dumps(doc))
    return path
