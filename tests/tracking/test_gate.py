"""The promotion gate on a real registry: better moves champion, worse leaves it, manual moves count."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from afmrl.config import GateRule
from afmrl.stages import promote
from afmrl.tracking.promotion import evaluate_gate

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


def _gate(cfg, encoder_dir, tmp_path, tag: str, r1: float, map10: float) -> promote.PromotionDecision:
    report = write_report(tmp_path / tag / "report.json", R1=r1, mAP10=map10)
    return promote.run(cfg, encoder_dir, report, tmp_path / tag / "promote")


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


# ---- on a registry ----


@pytest.mark.slow
def test_gate_promotes_better_rejects_worse(store_cfg, encoder_dir, tmp_path):
    first = _gate(store_cfg, encoder_dir, tmp_path, "v1", 0.50, 0.40)
    assert first.promoted and first.version == 1 and first.champion_before is None
    assert _alias(store_cfg, "champion") == 1

    better = _gate(store_cfg, encoder_dir, tmp_path, "v2", 0.60, 0.45)
    assert better.promoted and better.champion_before == 1 and better.champion_after == 2
    assert _alias(store_cfg, "champion") == 2 and _alias(store_cfg, "challenger") == 2
    on_disk = json.loads((tmp_path / "v2/promote/decision.json").read_text())
    assert on_disk["promoted"] is True and on_disk["version"] == 2
    assert on_disk["checks"]["listing_R@1"]["delta"] == pytest.approx(0.10)

    worse = _gate(store_cfg, encoder_dir, tmp_path, "v3", 0.55, 0.45)
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
def test_gate_compares_with_a_champion_moved_by_hand(store_cfg, encoder_dir, tmp_path):
    from afmrl.commands.registry import standalone_app

    assert _gate(store_cfg, encoder_dir, tmp_path, "v1", 0.50, 0.40).promoted
    assert _gate(store_cfg, encoder_dir, tmp_path, "v2", 0.70, 0.50).promoted
    # someone rolls back in the MLflow UI (the UI calls this same API)
    _client(store_cfg).set_registered_model_alias(NAME, "champion", "1")

    # 0.60 beats v1 (0.50) but not v2 (0.70): promoted only if the gate reads the alias as it is now
    third = _gate(store_cfg, encoder_dir, tmp_path, "v3", 0.60, 0.45)
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
