from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from afmrl.catalog import read_catalog, write_catalog
from afmrl.config import load_config
from afmrl.errors import ValidationFailed
from afmrl.stages import validate

BAD = {  # listing_id -> expected reason fragment
    "bad-corrupt": "cannot be decoded",
    "bad-truncated": "cannot be decoded",
    "bad-missing-file": "image file not found",
    "bad-no-title": "missing title",
    "bad-empty-title": "empty title",
    "bad-negative": "negative price",
    "bad-currency": "unknown currency",
    "bad-utf8": "import issue: title: not valid UTF-8",
    "bad-fffd": "title is not valid UTF-8 text",
    "bad-escape": "escapes the catalogue's image root",
    "bad-absolute": "is absolute",
}


@pytest.fixture
def dirty_catalog(tmp_path, synth_catalog) -> tuple[Path, list[str]]:
    """A synthetic catalogue with one row for each kind of bad input, plus a duplicated id."""
    cat = read_catalog(synth_catalog)
    root = tmp_path / "dirty"
    shutil.copytree(synth_catalog / "images", root / "images")
    good = cat.listings.copy()
    template = good.iloc[0].to_dict()
    jpeg = (root / good["image"].iloc[0]).read_bytes()
    (root / "images" / "corrupt.jpg").write_bytes(b"this is not an image")
    (root / "images" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (tmp_path / "secret.jpg").write_bytes(jpeg)
    changes = {
        "bad-corrupt": {"image": "images/corrupt.jpg"},
        "bad-truncated": {"image": "images/truncated.jpg"},
        "bad-missing-file": {"image": "images/nope.jpg"},
        "bad-no-title": {"title": None},
        "bad-empty-title": {"title": ""},
        "bad-negative": {"price": -1.0},
        "bad-currency": {"currency": "XXX"},
        "bad-utf8": {"title": "Caf\ufffd mug", "import_issues": "title: not valid UTF-8 (byte 0xe9 at character 3)"},
        "bad-fffd": {"title": "Caf\ufffd mug"},
        "bad-escape": {"image": "../secret.jpg"},
        "bad-absolute": {"image": str(tmp_path / "secret.jpg")},
    }
    bad_rows = [{**template, "listing_id": lid, **change} for lid, change in changes.items()]
    dup = {**template, "title": "a second listing with the same id"}
    frame = pd.concat([good, pd.DataFrame(bad_rows), pd.DataFrame([dup])], ignore_index=True)
    write_catalog(frame, root)
    return root, good["listing_id"].tolist()


def test_every_bad_input_is_quarantined_with_its_reason(tmp_path, cfg, dirty_catalog):
    root, good_ids = dirty_catalog
    cfg.validate_.max_fail_share = 1.0
    result = validate.run(cfg, root, tmp_path / "out")
    quarantine = pd.read_parquet(result.quarantine_path).set_index("listing_id")
    for lid, fragment in BAD.items():
        assert fragment in quarantine.loc[lid, "reason"], (lid, quarantine.loc[lid, "reason"])
    dup_id = good_ids[0]
    assert (quarantine.loc[[dup_id], "reason"].str.contains("duplicate listing_id")).all()
    passed = read_catalog(tmp_path / "out").listings
    assert set(passed["listing_id"]) == set(good_ids) - {dup_id}
    assert len(passed) + len(quarantine) == len(read_catalog(root).listings)  # nothing dropped silently
    report = json.loads(result.report_path.read_text())
    assert report["quarantined"] == len(BAD) + 2 and report["gate_passed"]
    # passed rows still resolve their images from the validated catalogue
    out_cat = read_catalog(tmp_path / "out")
    assert (out_cat.image_root / passed["image"].iloc[0]).is_file()


def test_gate_fails_above_threshold_but_keeps_outputs(tmp_path, cfg, dirty_catalog):
    root, _ = dirty_catalog
    cfg.validate_.max_fail_share = 0.01
    with pytest.raises(ValidationFailed) as exc:
        validate.run(cfg, root, tmp_path / "out")
    assert "max_fail_share" in str(exc.value) and "quarantine.parquet" in str(exc.value)
    assert (tmp_path / "out" / "quarantine.parquet").exists()
    assert json.loads((tmp_path / "out" / "report.json").read_text())["gate_passed"] is False


@pytest.mark.slow
def test_validate_logs_to_mlflow(tmp_path, synth_catalog):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    c = load_config(None, [f"tracking.uri={uri}", "tracking.experiment=test-validate"])
    validate.run(c, synth_catalog, tmp_path / "out")
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["test-validate"])
    assert len(runs) == 1
    assert runs["metrics.quarantined"].iloc[0] == 0
    assert runs["metrics.rows"].iloc[0] == len(read_catalog(synth_catalog).listings)
    assert runs["tags.afmrl.stage"].iloc[0] == "validate"


@pytest.mark.slow
def test_cli_reports_gate_failure_without_traceback(tmp_path, dirty_catalog):
    root, _ = dirty_catalog
    proc = subprocess.run(
        [sys.executable, "-m", "afmrl.cli", "--set", "tracking.enabled=false", "validate", str(root),
         "--out", str(tmp_path / "out")],  # fmt: skip
        capture_output=True, text=True, cwd=tmp_path, env={**__import__("os").environ, "AFMRL_PROGRESS": "off"},
    )  # fmt: skip
    assert proc.returncode == 2
    assert "ValidationFailed" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "out" / "quarantine.parquet").exists()
