"""The Kubeflow pipeline: the checked-in YAML is a fresh compile, and the whole DAG runs locally."""

from __future__ import annotations

import json
import os
import sys

import pytest
import yaml

from ..conftest import REPO

sys.path.insert(0, str(REPO))


def test_checked_in_yaml_matches_a_fresh_compile(tmp_path):
    from pipelines.afmrl import compile_pipeline

    fresh = compile_pipeline(tmp_path / "afmrl.yaml")
    checked_in = REPO / "pipelines" / "afmrl.yaml"
    assert yaml.safe_load(fresh.read_text()) == yaml.safe_load(checked_in.read_text()), (
        "pipelines/afmrl.yaml is stale: run `python pipelines/afmrl.py` and commit it")


def test_components_install_nothing_at_run_time():
    spec = yaml.safe_load((REPO / "pipelines" / "afmrl.yaml").read_text())
    for name, executor in spec["deploymentSpec"]["executors"].items():
        container = executor["container"]
        assert container["image"].startswith("ghcr.io/afmrl/afmrl:"), name
        assert "pip install" not in " ".join(container.get("command", []) + container.get("args", [])), name


@pytest.mark.slow
def test_pipeline_runs_locally_with_real_mlflow_and_milvus_lite(tmp_path, monkeypatch):
    from kfp import local

    from pipelines.afmrl import afmrl_pipeline

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AFMRL_PROGRESS", "off")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [
        "synth.n_base_products=6", "synth.listings_per_product=3", "synth.image_size=64", "encoder.image_size=64",
        "train.steps=20", "train.batch_size=8", f"tracking.uri={uri}", f"index.uri={tmp_path / 'milvus.db'}",
        "sft.max_steps=2", "sft.max_listings=8", "rar.max_steps=1", "rar.max_prompts=4", "rar.gallery_size=16",
        "rar.num_generations=2", "rar.batch_size=2", "registry.gate.listing_R@1.floor=0.0",
        "registry.gate.listing_mAP@10.floor=0.0",
    ]  # fmt: skip
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    afmrl_pipeline(params_yaml=(REPO / "params.yaml").read_text(), overrides=overrides)

    root = tmp_path / "root"
    reports = list(root.rglob("report/report.json"))
    assert len(reports) == 1, list(root.rglob("*.json"))
    metrics = json.loads(reports[0].read_text())["metrics"]
    assert 0.0 <= metrics["listing_R@1"] <= 1.0
    assert metrics["index_listing_R@1"] == pytest.approx(metrics["listing_R@1"])  # Milvus Lite FLAT = exact
    summary = json.loads(next(root.rglob("summary/index.json")).read_text())
    listings = 6 * 3 * 3
    assert summary["count"] == listings
    decision = json.loads(next(root.rglob("decision/decision.json")).read_text())
    assert decision["promoted"] is True and decision["version"] == 1

    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(uri)
    stages = set(mlflow.search_runs(experiment_names=["afmrl"])["tags.afmrl.stage"])
    assert {"validate", "evaluate"} <= stages and any(s.startswith("train") for s in stages)
    assert str(MlflowClient().get_model_version_by_alias("afmrl-encoder", "champion").version) == "1"

    from afmrl.config import load_config
    from afmrl.retrieval.milvus import MilvusIndex

    cfg = load_config(REPO / "params.yaml", [f"index.uri={tmp_path / 'milvus.db'}"])
    with MilvusIndex.from_config(cfg.index) as index:  # the dsl.If branch switched the serving alias
        assert index.alias_target(cfg.index.alias) == summary["collection"]
    os.environ.pop("AFMRL_PARENT_RUN_ID", None)
