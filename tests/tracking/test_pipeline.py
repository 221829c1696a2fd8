"""One pipeline run end to end on a real store: parent run with nested stage runs, datasets and
provenance; the promoted encoder loads as ``models:/afmrl-encoder@champion`` in a fresh process and
returns the embeddings the evaluation computed in this one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from afmrl.catalog.io import read_catalog
from afmrl.config import load_config
from afmrl.retrieval.embed import embed_listings
from afmrl.stages import evaluate, promote, train
from afmrl.tracking.datasets import catalog_digest
from afmrl.tracking.pipeline import pipeline_run
from afmrl.tracking.registry import load_encoder_cached

pytestmark = pytest.mark.slow

FRESH_PROCESS = """
import sys, mlflow, numpy as np, pandas as pd
frame = pd.read_parquet(sys.argv[1])
model = mlflow.pyfunc.load_model("models:/afmrl-encoder@champion")
np.save(sys.argv[2], model.predict(frame))
print(model.metadata.signature.outputs.to_dict())
"""


def test_pipeline_run_and_champion_in_a_fresh_process(store_cfg, tiny_catalog, tmp_path):
    uri = store_cfg.tracking.resolved_uri()
    cfg = load_config(None, [
        f"tracking.uri={uri}", "encoder.dim=32", "encoder.hidden=64", "encoder.image_size=64",
        "train.steps=3", "train.batch_size=8", "train.warmup_steps=1", "train.log_every=1",
        "registry.gate.listing_R@1.floor=0", "registry.gate.listing_mAP@10.floor=0",
        "registry.gate_min_queries=1"])  # fmt: skip
    cache = tmp_path / "cache"
    with pipeline_run(cfg, catalog=tiny_catalog) as parent_id:
        trained = train.run(cfg, tiny_catalog, tmp_path / "train", cache_dir=cache)
        evaluated = evaluate.run(cfg, tiny_catalog, trained.encoder_dir, tmp_path / "eval", cache_dir=cache)
        decision = promote.run(cfg, trained.encoder_dir, evaluated.report_path, tmp_path / "promote")
    assert decision.promoted and decision.version == 1
    assert json.loads((tmp_path / "promote/decision.json").read_text())["promoted"] is True

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["train.steps"] == "3" and parent.data.params["encoder.dim"] == "32"
    assert parent.data.params["registry.gate.listing_R_at_1.floor"] == "0.0"
    assert parent.data.tags["afmrl.promoted"] == "true" and parent.data.tags["afmrl.encoder_version"] == "1"
    (data_input,) = parent.inputs.dataset_inputs
    assert data_input.dataset.digest == catalog_digest(tiny_catalog)
    children = client.search_runs([parent.info.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'")
    assert sorted(c.info.run_name for c in children) == ["evaluate", "promote", "train"]
    pid = parent.data.tags["afmrl.pipeline_run_id"]
    assert all(c.data.tags["afmrl.pipeline_run_id"] == pid for c in children)
    assert parent.data.tags["afmrl.stages"].count(":FINISHED") == 3
    by_name = {c.info.run_name: c for c in children}
    assert by_name["train"].data.tags["afmrl.stage"] == "train" and by_name["train"].data.tags["afmrl.method"] == "agcl"
    train_inputs = by_name["train"].inputs.dataset_inputs
    assert [t.value for t in train_inputs[0].tags] == ["training"]
    assert "loss" in by_name["train"].data.metrics

    # what the evaluation embedded, in this process
    catalog = read_catalog(tiny_catalog)
    rows = catalog.listings.head(8).reset_index(drop=True)
    rows.loc[0, "image"] = None  # one text-only listing
    model = load_encoder_cached(trained.encoder_dir)  # the weights the promote stage packaged, loaded once
    expected = embed_listings(model, catalog, rows, model.cfg, cache_dir=None).listing

    frame = pd.DataFrame({
        "title": rows["title"], "description": rows["description"], "attributes": rows["attributes"],
        "image": [str((catalog.image_root / p).resolve()) if p else None for p in rows["image"]]})  # fmt: skip
    frame.to_parquet(tmp_path / "input.parquet")
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "AFMRL_PROGRESS": "off"}
    proc = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(tmp_path / "input.parquet"),
                           str(tmp_path / "out.npy")], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = np.load(tmp_path / "out.npy")
    assert served.shape == (8, 32) and served.dtype == np.float32
    np.testing.assert_allclose(served, expected, atol=1e-5)
    assert not np.allclose(served[1], served[2])
