"""The promotion gate on a real registry: better moves champion, worse leaves it, manual moves count."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from afmrl.config import GateRule
from afmrl.errors import DataError
from afmrl.stages import promote
from afmrl.tracking.promotion import evaluate_gate, paired_bootstrap

from .conftest import write_report

NAME = "afmrl-encoder"
RULES = {"listing_R@1": GateRule(min_improvement=0.01, max_regression=0.0, floor=0.2),
         "listing_mAP@10": GateRule(min_improvement=0.01, max_regression=0.01, floor=0.2)}  # fmt: skip


def _client(cfg) -> MlflowClient:
    uri = cfg.tracking.resolved_uri()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _alias(cfg, alias: str) -> int | None:
    from afmrl.tracking.registry import get_alias_version

    mv = get_alias_version(_client(cfg), NAME, alias)
    return int(mv.version) if mv else None


N = 200  # queries of the fabricated reports (registry.gate_min_queries: 200)


def _vec(value: float, n: int = N) -> list[float]:
    """Per-query hits whose mean is ``value``: the first ones hit (paired vectors nest)."""
    hits = round(value * n)
    return [1.0] * hits + [0.0] * (n - hits)


def _per_query(r1: float, map10: float) -> dict[str, list[float]]:
    return {"listing_R@1": _vec(r1), "listing_mAP@10": _vec(map10)}


@pytest.fixture
def rescored(monkeypatch):
    """The champion's re-scoring, faked by version: ``figures[v] = (R@1, mAP@10)`` of version v on the
    candidate's queries (the real re-scoring is tested on a real catalogue below)."""
    figures: dict[int, tuple[float, float]] = {}

    def fake(cfg, report, version, report_path, catalog_dir=None):
        r1, map10 = figures[version]
        return {"listing_R@1": r1, "listing_mAP@10": map10}, _per_query(r1, map10)

    monkeypatch.setattr(promote, "rescore_champion", fake)
    return figures


def _gate(cfg, encoder_dir, tmp_path, tag: str, r1: float, map10: float, figures=None) -> promote.PromotionDecision:
    report = write_report(tmp_path / tag / "report.json", encoder_dir, per_query=_per_query(r1, map10))
    decision = promote.run(cfg, encoder_dir, report, tmp_path / tag / "promote")
    if figures is not None:
        figures[decision.version] = (r1, map10)
    return decision


# ---- the rules (pure) ----


def test_rules_first_model_needs_the_floors():
    assert evaluate_gate({"listing_R@1": 0.5, "listing_mAP@10": 0.4}, None, RULES).promoted
    out = evaluate_gate({"listing_R@1": 0.1, "listing_mAP@10": 0.4}, None, RULES)
    assert not out.promoted and any("below the floor 0.2000" in r for r in out.reasons)
    out = evaluate_gate({"listing_R@1": float("nan"), "listing_mAP@10": 0.4}, None, RULES)
    assert not out.promoted and any("listing_R@1: missing or not finite" in r for r in out.reasons)


def test_rules_against_a_champion():
    champ = {"listing_R@1": 0.50, "listing_mAP@10": 0.40}
    # R@1 +0.02 and mAP -0.005 (tolerated): promote
    assert evaluate_gate({"listing_R@1": 0.52, "listing_mAP@10": 0.395}, champ, RULES).promoted
    # mAP -0.02 is more than max_regression 0.01 even though R@1 improved
    out = evaluate_gate({"listing_R@1": 0.60, "listing_mAP@10": 0.38}, champ, RULES)
    assert not out.promoted and any("listing_mAP@10 regressed by 0.0200" in r for r in out.reasons)
    # +0.005 on both: nothing improved by min_improvement
    out = evaluate_gate({"listing_R@1": 0.505, "listing_mAP@10": 0.405}, champ, RULES)
    assert not out.promoted and "no gating metric improved" in out.reasons[0]
    # a champion without the figure cannot be compared automatically
    out = evaluate_gate({"listing_R@1": 0.9, "listing_mAP@10": 0.9}, {"listing_R@1": 0.5}, RULES)
    assert not out.promoted and any("has no recorded value" in r for r in out.reasons)


def test_rules_need_enough_queries():
    good = {"listing_R@1": 0.5, "listing_mAP@10": 0.4}
    assert evaluate_gate(good, None, RULES, n_queries=200, min_queries=200).promoted
    out = evaluate_gate(good, None, RULES, n_queries=45, min_queries=200)
    assert not out.promoted and any("only 45 evaluation queries" in r for r in out.reasons)


def test_rules_with_intervals_need_a_lower_bound_above_min_improvement():
    champ = {"listing_R@1": 0.50, "listing_mAP@10": 0.40}
    cand = {"listing_R@1": 0.53, "listing_mAP@10": 0.40}
    # the point gain (+0.03) is above min_improvement, but the interval reaches below it: noise
    noisy = {"listing_R@1": (-0.01, 0.07), "listing_mAP@10": (-0.02, 0.02)}
    out = evaluate_gate(cand, champ, RULES, intervals=noisy)
    assert not out.promoted and "lower bound exceeds its min_improvement" in out.reasons[0]
    assert out.checks["listing_R@1"].interval == [-0.01, 0.07]
    clear = {"listing_R@1": (0.015, 0.05), "listing_mAP@10": (-0.02, 0.02)}
    assert evaluate_gate(cand, champ, RULES, intervals=clear).promoted
    # max_regression still holds on the point figures
    worse = {"listing_R@1": 0.53, "listing_mAP@10": 0.38}
    assert not evaluate_gate(worse, champ, RULES, intervals=clear).promoted


def test_paired_bootstrap():
    same = [1.0, 0.0, 1.0, 1.0, 0.0] * 40
    assert paired_bootstrap(same, same) == (0.0, 0.0)
    cand, champ = [1.0] * 200, [1.0] * 100 + [0.0] * 100
    low, high = paired_bootstrap(cand, champ, n_boot=500)
    assert 0.4 < low < 0.5 < high < 0.6
    assert paired_bootstrap(cand, champ, n_boot=500) == (low, high), "seeded: the same decision every time"
    with pytest.raises(ValueError):
        paired_bootstrap([1.0, 0.0], [1.0])


# ---- on a registry ----


def test_report_of_another_encoder_is_refused(store_cfg, encoder_dir, tmp_path):
    import torch

    from afmrl.commands.registry import standalone_app
    from afmrl.config import EncoderConfig
    from afmrl.models.encoders.dual import DualEncoder

    torch.manual_seed(1)
    other = DualEncoder(EncoderConfig(dim=32, hidden=64, image_size=64)).save_pretrained(tmp_path / "b" / "encoder")
    report = write_report(tmp_path / "a" / "report.json", encoder_dir, per_query=_per_query(0.9, 0.9))
    uri = store_cfg.tracking.resolved_uri()
    result = CliRunner().invoke(standalone_app(), ["--set", f"tracking.uri={uri}", "promote", "--encoder", str(other),
                                                   "--report", str(report), "--out", str(tmp_path / "out")])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "evaluated another encoder" in result.output
    assert not (tmp_path / "out" / "decision.json").exists() and _alias(store_cfg, "challenger") is None


@pytest.mark.slow
def test_decision_is_on_disk_before_the_alias_moves(store_cfg, encoder_dir, tmp_path):
    """The process dies between writing decision.json and moving @champion: the alias has not moved."""
    report = write_report(tmp_path / "report.json", encoder_dir, per_query=_per_query(0.9, 0.9))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AFMRL_"))}
    env[promote.CRASH_AFTER_DECISION_ENV] = "1"
    uri = store_cfg.tracking.resolved_uri()
    proc = subprocess.run([sys.executable, "-m", "afmrl.cli", "--set", f"tracking.uri={uri}", "promote", "--encoder",
                           str(encoder_dir), "--report", str(report), "--out", str(tmp_path / "out")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    doc = json.loads((tmp_path / "out" / "decision.json").read_text())
    assert doc["promoted"] is True and doc["n_queries"] == N and doc["intervals"] == {}
    assert _alias(store_cfg, "champion") is None, "the crash came before the alias move"


@pytest.mark.slow
def test_champion_is_rescored_on_the_same_queries(store_cfg, encoder_dir, tiny_catalog, tmp_path):
    """The same encoder twice: re-scored on the candidate's queries, the difference is exactly 0 (noise):
    not promoted; and the default query minimum refuses a 4-query evaluation."""
    from afmrl.config import load_config
    from afmrl.stages import evaluate

    uri = store_cfg.tracking.resolved_uri()
    few = load_config(None, [f"tracking.uri={uri}", "registry.gate.listing_R@1.floor=0",
                             "registry.gate.listing_mAP@10.floor=0"])  # fmt: skip
    ev = evaluate.run(few, tiny_catalog, encoder_dir, tmp_path / "eval")
    report = json.loads(ev.report_path.read_text())
    assert report["candidate"]["digest"] and report["catalog"]["digest"] and report["catalog"]["listings"] == 24
    n = report["queries"]["n"]
    assert n == len(report["per_query"]["values"]["listing_R@1"]) == len(report["per_query"]["query_ids"]["listing"])
    assert sum(report["per_query"]["values"]["listing_R@1"]) / n == pytest.approx(report["metrics"]["listing_R@1"])
    assert report["rows"]["candidate"]["listing_R@1"] == report["metrics"]["listing_R@1"]
    assert report["rows"]["zero-shot"]["listing_queries"] == n  # the pretrained towers, on the same queries
    refused = promote.run(few, encoder_dir, ev.report_path, tmp_path / "p0")
    assert not refused.promoted and any(f"only {n} evaluation queries" in r for r in refused.reasons)

    cfg = few.model_copy(update={"registry": few.registry.model_copy(update={"gate_min_queries": 1})})
    assert promote.run(cfg, encoder_dir, ev.report_path, tmp_path / "p1").promoted
    again = promote.run(cfg, encoder_dir, ev.report_path, tmp_path / "p2")
    assert not again.promoted and again.champion_after == 2 and _alias(cfg, "champion") == 2  # v1: refused
    doc = json.loads((tmp_path / "p2" / "decision.json").read_text())
    assert doc["n_queries"] == n and doc["intervals"] == {"listing_R@1": [0.0, 0.0], "listing_mAP@10": [0.0, 0.0]}
    assert "lower bound exceeds" in doc["reasons"][0]
    assert doc["rows"]["champion"] == doc["rows"]["candidate"]  # re-scored by the same code: the same figures

    # the next evaluation carries the champion's row beside the candidate's and the zero-shot one
    ev2 = evaluate.run(cfg, tiny_catalog, encoder_dir, tmp_path / "eval2")
    rows = json.loads(ev2.report_path.read_text())["rows"]
    assert rows["champion"]["version"] == 2
    assert rows["champion"]["listing_R@1"] == rows["candidate"]["listing_R@1"]  # the same encoder, same queries
    # the catalogue handed over where the report's path is not readable (a Kubeflow pod): re-scored on it
    moved = tmp_path / "moved-catalogue"
    shutil.copytree(tiny_catalog, moved)
    doc2 = json.loads(ev2.report_path.read_text())
    doc2["catalog"]["path"] = str(tmp_path / "gone")
    (tmp_path / "elsewhere.json").write_text(json.dumps(doc2))
    with pytest.raises(DataError, match="is not there"):
        promote.run(cfg, encoder_dir, tmp_path / "elsewhere.json", tmp_path / "p3")
    handed = promote.run(cfg, encoder_dir, tmp_path / "elsewhere.json", tmp_path / "p4", catalog=moved)
    assert handed.rows["champion"] == handed.rows["candidate"]


@pytest.mark.slow
def test_gate_promotes_better_rejects_worse(store_cfg, encoder_dir, tmp_path, rescored):
    first = _gate(store_cfg, encoder_dir, tmp_path, "v1", 0.50, 0.40, rescored)
    assert first.promoted and first.version == 1 and first.champion_before is None
    assert _alias(store_cfg, "champion") == 1

    better = _gate(store_cfg, encoder_dir, tmp_path, "v2", 0.60, 0.45, rescored)
    assert better.promoted and better.champion_before == 1 and better.champion_after == 2
    assert _alias(store_cfg, "champion") == 2 and _alias(store_cfg, "challenger") == 2
    on_disk = json.loads((tmp_path / "v2/promote/decision.json").read_text())
    assert on_disk["promoted"] is True and on_disk["version"] == 2
    assert on_disk["checks"]["listing_R@1"]["delta"] == pytest.approx(0.10)
    assert on_disk["n_queries"] == N and set(on_disk["intervals"]) == {"listing_R@1", "listing_mAP@10"}
    low, high = on_disk["intervals"]["listing_R@1"]
    assert 0.01 < low < 0.10 < high
    assert on_disk["rows"]["champion"] == {"listing_R@1": 0.50, "listing_mAP@10": 0.40}

    worse = _gate(store_cfg, encoder_dir, tmp_path, "v3", 0.55, 0.45, rescored)
    assert not worse.promoted and worse.version == 3
    assert _alias(store_cfg, "champion") == 2, "a rejected candidate must leave the champion alone"
    assert _alias(store_cfg, "challenger") == 3
    on_disk = json.loads((tmp_path / "v3/promote/decision.json").read_text())
    assert on_disk == {**on_disk, "promoted": False, "version": 3, "champion_before": 2, "champion_after": 2}
    assert any("listing_R@1 regressed by 0.0500" in r for r in on_disk["reasons"])

    client = _client(store_cfg)
    v2, v3 = client.get_model_version(NAME, "2"), client.get_model_version(NAME, "3")
    assert v2.tags["afmrl.decision"] == "promoted" and v2.tags["afmrl.compared_with"] == "v1"
    assert v3.tags["afmrl.decision"] == "rejected" and "regressed" in v3.tags["afmrl.reasons"]
    assert float(v3.tags["afmrl.delta.listing_R_at_1"]) == pytest.approx(-0.05)
    assert json.loads(v3.tags["afmrl.metrics"])["listing_R@1"] == 0.55
    run = client.get_run(on_disk["run_id"])
    assert run.data.tags["afmrl.decision"] == "rejected" and run.data.metrics["promoted"] == 0.0


@pytest.mark.slow
def test_first_model_below_the_floor_is_not_promoted(store_cfg, encoder_dir, tmp_path):
    d = _gate(store_cfg, encoder_dir, tmp_path, "v1", 0.10, 0.40)
    assert not d.promoted and d.champion_after is None
    assert _alias(store_cfg, "champion") is None and _alias(store_cfg, "challenger") == 1
    assert any("listing_R@1=0.1000 is below the floor" in r for r in d.reasons)


@pytest.mark.slow
def test_gate_compares_with_a_champion_moved_by_hand(store_cfg, encoder_dir, tmp_path, rescored):
    from afmrl.commands.registry import standalone_app

    assert _gate(store_cfg, encoder_dir, tmp_path, "v1", 0.50, 0.40, rescored).promoted
    assert _gate(store_cfg, encoder_dir, tmp_path, "v2", 0.70, 0.50, rescored).promoted
    # someone rolls back in the MLflow UI (the UI calls this same API)
    _client(store_cfg).set_registered_model_alias(NAME, "champion", "1")

    # 0.60 beats v1 (0.50) but not v2 (0.70): promoted only if the gate reads the alias as it is now
    third = _gate(store_cfg, encoder_dir, tmp_path, "v3", 0.60, 0.45, rescored)
    assert third.champion_before == 1 and third.promoted and _alias(store_cfg, "champion") == 3

    # and by hand from the CLI: `afmrl promote --version 2`
    uri = store_cfg.tracking.resolved_uri()
    result = CliRunner().invoke(standalone_app(), ["--set", f"tracking.uri={uri}", "promote", "--version", "2",
                                                   "--reason", "rollback drill"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert _alias(store_cfg, "champion") == 2
    doc = json.loads(result.stdout[result.stdout.index("{"):])
    assert doc["decision"] == "manual" and doc["champion_before"] == 3 and doc["version"] == 2
    assert "rollback drill" in _client(store_cfg).get_model_version(NAME, "2").tags["afmrl.reasons"]

    missing = CliRunner().invoke(standalone_app(), ["--set", f"tracking.uri={uri}", "promote", "--version", "9"])
    assert missing.exit_code == 2 and "has no version 9" in missing.output
