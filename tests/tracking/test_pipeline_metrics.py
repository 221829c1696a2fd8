"""`afmrl run end` logs what the pipeline ended on to the parent run: the gate metrics and the decision."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from afmrl.tracking.pipeline import pipeline_metrics


def test_pipeline_metrics_reads_the_gate_metrics_and_the_decision(tmp_path):
    report, decision = tmp_path / "report.json", tmp_path / "decision.json"
    assert pipeline_metrics(report, decision, gate=["listing_R@1"]) == {}  # a pipeline stopped early: nothing
    report.write_text(json.dumps({"metrics": {"listing_R@1": 0.5, "listing_mAP@10": float("nan"), "other_R@1": 0.1}}))
    decision.write_text(json.dumps({"promoted": False, "version": 2}))
    assert pipeline_metrics(report, decision, gate=["listing_R@1", "listing_mAP@10"]) == {
        "listing_R_at_1": 0.5, "promoted": 0.0}


@pytest.mark.slow
def test_run_end_logs_gate_metrics_and_decision_to_the_parent_run(store_cfg, tmp_path, monkeypatch):
    from afmrl.commands.registry import standalone_app

    monkeypatch.chdir(tmp_path)
    uri = store_cfg.tracking.resolved_uri()
    (tmp_path / "outputs" / "eval").mkdir(parents=True)
    (tmp_path / "outputs" / "promote").mkdir(parents=True)
    (tmp_path / "outputs" / "eval" / "report.json").write_text(json.dumps(
        {"metrics": {"listing_R@1": 0.75, "listing_mAP@10": 0.625, "listing_R@5": 0.9}}))  # fmt: skip
    (tmp_path / "outputs" / "promote" / "decision.json").write_text(json.dumps({"promoted": True, "version": 1}))
    app, runner = standalone_app(), CliRunner()
    started = runner.invoke(app, ["--set", f"tracking.uri={uri}", "run", "start", "--pipeline-id", "p-1"])
    assert started.exit_code == 0, started.output
    exports = dict(line.removeprefix("export ").split("=", 1) for line in started.stdout.splitlines()
                   if line.startswith("export "))  # fmt: skip
    parent_id = exports["AFMRL_PARENT_RUN_ID"]
    ended = runner.invoke(app, ["--set", f"tracking.uri={uri}", "run", "end", "--run-id", parent_id])
    assert ended.exit_code == 0, ended.output
    expected = {"listing_R_at_1": 0.75, "listing_mAP_at_10": 0.625, "promoted": 1.0}
    assert json.loads(ended.stdout)["metrics"] == expected
    run = MlflowClient(tracking_uri=uri).get_run(parent_id)
    assert run.data.metrics == expected and run.info.status == "FINISHED"
