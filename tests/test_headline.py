"""`dvc metrics show` prints headline figures: small metrics.json files, the full reports plain outs."""

from __future__ import annotations

import json

import yaml

from afmrl.commands.headline import METRICS_FILE, write_headline

from .conftest import REPO


def _numbers(path):
    doc = json.loads(path.read_text())
    assert all(isinstance(v, int | float) for v in doc.values()), doc
    return doc


def test_dvc_metrics_are_the_headline_files_and_the_reports_plain_outs():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    named = {name: [next(iter(m)) if isinstance(m, dict) else m for m in s.get("metrics", [])]
             for name, s in stages.items()}  # fmt: skip
    assert {k: v for k, v in named.items() if v} == {
        "validate": ["data/validated/metrics.json"], "extract": ["data/attributes/metrics.json"],
        "extract-2": ["data/attributes-2/metrics.json"],  # round 2's attributes (the reinforced extractor's)
        "evaluate": ["outputs/eval/metrics.json"], "promote": ["outputs/promote/metrics.json"],
        "dedup": ["outputs/dedup/metrics.json"]}  # fmt: skip
    outs = {next(iter(o)) if isinstance(o, dict) else o for s in stages.values() for o in s.get("outs", [])}
    assert {"data/validated/report.json", "data/attributes/report.json", "outputs/eval/report.json",
            "outputs/promote/decision.json"} <= outs  # fmt: skip


def test_each_headline_holds_at_most_ten_numbers(tmp_path):
    per_key = {f"acc.{k}": 0.5 for k in range(40)}
    validated = tmp_path / "validated"
    validated.mkdir()
    (validated / "report.json").write_text(json.dumps({
        "rows": 10, "passed": 9, "quarantined": 1, "fail_share": 0.1, "gate_passed": True,
        "reasons": {"negative price": 1}, "expectations": [{"x": 1}] * 30}))  # fmt: skip
    attrs = tmp_path / "attributes"
    attrs.mkdir()
    metric = {"micro": {"f1": 0.9, "precision": 1.0, "recall": 0.8}, "macro_f1": 0.7, **per_key}
    (attrs / "report.json").write_text(json.dumps({"valid_json_rate": 1.0, "listings": 10,
                                                   "metrics": {"attributes": metric, "extracted": metric}}))  # fmt: skip
    ev = tmp_path / "eval"
    ev.mkdir()
    report = {"metrics": {"listing_R@1": 0.5, "listing_mAP@10": 0.6, "listing_MRR": 0.6, "text_to_image_R@1": 0.1,
                          **{f"listing_R@1_{c}": 0.2 for c in range(30)}},
              "per_category": {f"c{c}": 0.5 for c in range(30)}, "queries": {"n": 240, "digest": "abc"}}  # fmt: skip
    (ev / "report.json").write_text(json.dumps(report))
    promote = tmp_path / "promote"
    promote.mkdir()
    (promote / "decision.json").write_text(json.dumps({
        "promoted": True, "version": 3, "reasons": ["better"], "checks": {"listing_R@1": {"delta": 0.1}},
        "report": str(ev / "report.json")}))  # fmt: skip

    figures = {kind: _numbers(write_headline(kind, src)) for kind, src in [
        ("validate", validated / "report.json"), ("extract", attrs / "report.json"),
        ("evaluate", ev / "report.json"), ("promote", promote / "decision.json")]}  # fmt: skip
    assert all(len(f) <= 10 for f in figures.values()), figures
    assert figures["validate"] == {"fail_share": 0.1, "passed": 9, "quarantined": 1, "gate_passed": 1}
    assert figures["extract"] == {"valid_json_rate": 1.0, "attributes_micro_f1": 0.9, "extracted_micro_f1": 0.9}
    assert figures["evaluate"] == {"listing_R@1": 0.5, "listing_mAP@10": 0.6, "n_queries": 240}
    assert figures["promote"] == {"promoted": 1, "version": 3, "n_queries": 240}
    assert (promote / METRICS_FILE).exists()
    assert write_headline("evaluate", tmp_path / "absent" / "report.json") is None
