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
def test_pipeline_runs_locally_with_real_mlflow(tmp_path, monkeypatch):
    from kfp import local

    from pipelines.afmrl import afmrl_pipeline

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AFMRL_PROGRESS", "off")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = ["synth.n_base_products=6", "synth.listings_per_product=3", "synth.image_size=64",
                 "encoder.image_size=64", "train.steps=20", "train.batch_size=8", f"tracking.uri={uri}"]  # fmt: skip
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    afmrl_pipeline(params_yaml=(REPO / "params.yaml").read_text(), overrides=overrides)
    reports = list((tmp_path / "root").rglob("report/report.json"))
    assert len(reports) == 1, list((tmp_path / "root").rglob("*.json"))
    metrics = json.loads(reports[0].read_text())["metrics"]
    assert 0.0 <= metrics["listing_R@1"] <= 1.0
    assert list((tmp_path / "root").rglob("encoder/encoder/model.safetensors"))

    import mlflow

    mlflow.set_tracking_uri(uri)
    stages = set(mlflow.search_runs(experiment_names=["afmrl"])["tags.afmrl.stage"])
    assert {"validate", "evaluate"} <= stages and any(s.startswith("train") for s in stages)
    os.environ.pop("AFMRL_PARENT_RUN_ID", None)
