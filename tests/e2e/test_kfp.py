"""The Kubeflow pipeline: the checked-in YAML is a fresh compile, and the whole DAG runs locally."""

from __future__ import annotations

import json
import os
import sys

import pytest
import yaml

from afmrl.config import Config, config_from_text, load_config

from ..conftest import REPO, shared_dataset

sys.path.insert(0, str(REPO))

pytestmark = pytest.mark.slow


def _params_default(spec: dict) -> str:
    """Pop the ``params_yaml`` default (the text of the working params.yaml at compile time) from a spec."""
    return spec["root"]["inputDefinitions"]["parameters"]["params_yaml"].pop("defaultValue")


def test_checked_in_yaml_matches_a_fresh_compile(tmp_path):
    from pipelines.afmrl import compile_pipeline

    fresh = yaml.safe_load(compile_pipeline(tmp_path / "afmrl.yaml").read_text())
    checked_in = yaml.safe_load((REPO / "pipelines" / "afmrl.yaml").read_text())
    # the embedded params default is whatever params.yaml holds (a user's edit must not fail this test):
    # it only has to be a valid configuration; the rest of the spec must equal a fresh compile
    for spec in (fresh, checked_in):
        config_from_text(_params_default(spec))
    assert fresh == checked_in, "pipelines/afmrl.yaml is stale: run `python pipelines/afmrl.py` and commit it"


def test_components_install_nothing_at_run_time():
    spec = yaml.safe_load((REPO / "pipelines" / "afmrl.yaml").read_text())
    for name, executor in spec["deploymentSpec"]["executors"].items():
        container = executor["container"]
        assert container["image"].startswith("ghcr.io/afmrl/afmrl:"), name
        assert "pip install" not in " ".join(container.get("command", []) + container.get("args", [])), name


def test_pipeline_runs_locally_with_real_mlflow_and_milvus_lite(tmp_path, monkeypatch):
    from kfp import local

    from pipelines.afmrl import afmrl_pipeline

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AFMRL_PROGRESS", "off")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [
        "synth.n_base_products=6", "synth.listings_per_product=3", "synth.image_size=64", "encoder.image_size=64",
        "train.steps=20", "train.batch_size=8", f"tracking.uri={uri}", f"index.uri={tmp_path / 'milvus.db'}",
        "sft.trl.max_steps=2", "sft.max_listings=8", "rar.trl.max_steps=1", "rar.max_prompts=4", "rar.gallery_size=16",
        "rar.trl.num_generations=2", "rar.trl.per_device_train_batch_size=2", "registry.gate.listing_R@1.floor=0.0",
        "registry.gate.listing_mAP@10.floor=0.0", "registry.gate_min_queries=1",  # a 54-listing catalogue
    ]  # fmt: skip
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    afmrl_pipeline(params_yaml=yaml.safe_dump(Config().to_dict()), overrides=overrides)

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
    from afmrl.stages import STAGES

    assert stages == set(STAGES), "every stage logs one run tagged with its name (publish: the dsl.If branch ran)"
    assert str(MlflowClient().get_model_version_by_alias("afmrl-encoder", "champion").version) == "1"

    from afmrl.retrieval.milvus import MilvusIndex

    cfg = load_config(None, [f"index.uri={tmp_path / 'milvus.db'}"])
    with MilvusIndex.from_config(cfg.index) as index:  # the dsl.If branch switched the serving alias
        assert index.alias_target(cfg.index.alias) == summary["collection"]
    os.environ.pop("AFMRL_PARENT_RUN_ID", None)


def test_data_parameters_and_caching_where_inputs_are_content_addressed(tmp_path):
    """The catalogue is a pipeline parameter; the digest task feeds the ingest task's cache key; tasks whose
    inputs are artifacts of cached tasks cache; the digest and what moves registry aliases never do."""
    from pipelines.afmrl import compile_pipeline

    spec = yaml.safe_load(compile_pipeline(tmp_path / "afmrl.yaml").read_text())
    params = spec["root"]["inputDefinitions"]["parameters"]
    assert {k: params[k].get("defaultValue") for k in ("data_format", "data_path", "data_columns")} == {
        "data_format": "synthetic", "data_path": "", "data_columns": "{}"}  # fmt: skip
    tasks = spec["root"]["dag"]["tasks"]
    source = tasks["ingest"]["inputs"]["parameters"]["source_digest"]["taskOutputParameter"]
    assert source["producerTask"] == "digest"
    for name in ("ingest", "validate", "extract", "train", "tiny", "sft", "rar"):
        assert tasks[name]["cachingOptions"].get("enableCache") is True, name
    for name in ("digest", "promote"):
        assert not tasks[name]["cachingOptions"].get("enableCache"), name
    (publish,) = [dag["dag"]["tasks"]["publish"] for dag in spec["components"].values()
                  if "publish" in dag.get("dag", {}).get("tasks", {})]  # fmt: skip
    assert not publish["cachingOptions"].get("enableCache")
    assert "synth" not in tasks


def test_pipeline_runs_locally_on_the_grocery_store_catalogue(tmp_path, monkeypatch):
    """Your own catalogue through the whole pipeline: data_format=grocery-store (no test split there:
    evaluated on val), a few of its products to keep it quick."""
    from kfp import local

    from pipelines.afmrl import afmrl_pipeline

    grocery = shared_dataset("grocery-store")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AFMRL_PROGRESS", "off")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    overrides = [
        "data.max_products=6", "eval.split=val", "encoder.image_size=64", "train.steps=10", "train.batch_size=8",
        f"tracking.uri={uri}", f"index.uri={tmp_path / 'milvus.db'}", "mllm.max_pixels=3136",
        "sft.trl.max_steps=1", "sft.max_listings=4", "rar.trl.max_steps=1", "rar.max_prompts=2", "rar.gallery_size=8",
        "rar.trl.num_generations=2", "rar.trl.per_device_train_batch_size=2", "registry.gate.listing_R@1.floor=0.0",
        "registry.gate.listing_mAP@10.floor=0.0", "registry.gate_min_queries=1",
    ]  # fmt: skip
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    afmrl_pipeline(params_yaml=yaml.safe_dump(Config().to_dict()), overrides=overrides,
                   data_format="grocery-store", data_path=str(grocery))  # fmt: skip

    root = tmp_path / "root"
    (manifest,) = [json.loads(p.read_text()) for p in root.rglob("catalog/catalog.json")]  # the ingest artifact
    assert manifest["format"] == "grocery-store" and manifest["source"] == str(grocery.resolve())
    reports = [json.loads(p.read_text()) for p in root.rglob("report.json")]
    reports = [r for r in reports if isinstance(r.get("catalog"), dict) and "metrics" in r]
    assert reports, list(root.rglob("*.json"))
    for report in reports:
        catalog = report["catalog"]
        assert (catalog["name"], catalog["format"], report["split"]) == ("grocery-store", "grocery-store", "val")
        assert catalog["source_digest"] == manifest["source_digest"] and len(catalog["digest"]) == 32
        assert set(catalog["splits"]) >= {"gallery", "val", "train"} and catalog["splits"]["gallery"] == 6
        assert catalog["listings"] == sum(catalog["splits"].values()) > 6
        assert 0.0 <= report["metrics"]["listing_R@1"] <= 1.0
    assert list(root.rglob("decision/decision.json"))
    os.environ.pop("AFMRL_PARENT_RUN_ID", None)
