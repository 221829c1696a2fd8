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


def _small_catalog(synth_catalog: Path, root: Path, frame: pd.DataFrame | None = None) -> Path:
    cat = read_catalog(synth_catalog)
    write_catalog(cat.listings if frame is None else frame, root, image_root=cat.image_root)
    return root


def test_bad_attributes_record_is_quarantined_and_extraction_then_runs(tmp_path, cfg, synth_catalog):
    from afmrl.errors import DataError
    from afmrl.stages import extract

    listings = read_catalog(synth_catalog).listings.copy()
    bad_id = listings["listing_id"].iloc[3]
    listings.loc[3, "attributes"] = '{"brand": "norvik", "colour": }'
    root = _small_catalog(synth_catalog, tmp_path / "cat", listings)
    with pytest.raises(DataError) as exc:  # unvalidated, one record aborts extraction: it says which
        extract.run(cfg, root, tmp_path / "extract-raw")
    assert f"record {bad_id}, field attributes: not valid JSON" in str(exc.value)
    result = validate.run(cfg, root, tmp_path / "out")
    quarantine = pd.read_parquet(result.quarantine_path)
    assert quarantine["listing_id"].tolist() == [bad_id]
    assert quarantine["field"].iloc[0] == "attributes"
    assert quarantine["reason"].iloc[0].startswith("invalid attributes: not valid JSON")
    out = extract.run(cfg, tmp_path / "out", tmp_path / "extract")
    assert out.n == len(listings) - 1


@pytest.mark.parametrize(("text", "reason"), [
    (None, None), ("", None), ("{}", None), ('{"brand": ["a", {"b": null}], "n": 1.5}', None),
    ("{", "not valid JSON"), ("[1]", "must be a JSON object, got array"), ("3", "got number"),
    ('"x"', "got string"), ("true", "got boolean"), ("null", "got null"),
    ('{"size": Infinity}', "Infinity is not allowed"), ('{"size": -Infinity}', "-Infinity is not allowed"),
    ('{"a": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    ('{"size": 1' + "0" * 5000 + "}", "not valid JSON"),
])  # fmt: skip
def test_json_object_check(text, reason):
    from afmrl.validation.checks import check_json_object

    got = check_json_object(text)
    assert got is None if reason is None else reason in got, got


@pytest.mark.parametrize("text", ["[" * 100_000 + "]" * 100_000, '{"size": 1' + "0" * 5000 + "}"])
def test_parse_json_object_hostile_text_is_a_data_error(text):
    from afmrl.catalog.schema import parse_json_object
    from afmrl.errors import DataError

    with pytest.raises(DataError, match="record x, field reference_attributes: not valid JSON"):
        parse_json_object(text, record="x", field="reference_attributes")


def test_empty_catalogue_fails_the_gate_after_writing_outputs(tmp_path, cfg, synth_catalog):
    empty = read_catalog(synth_catalog).listings.head(0)
    root = _small_catalog(synth_catalog, tmp_path / "empty", empty)
    with pytest.raises(ValidationFailed) as exc:
        validate.run(cfg, root, tmp_path / "out")
    assert "no listings" in str(exc.value) and str(root) in str(exc.value)
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["rows"] == 0 and report["gate_passed"] is False
    assert (tmp_path / "out" / "quarantine.parquet").exists()


def test_gate_fails_when_no_listing_passes(tmp_path, cfg, synth_catalog):
    listings = read_catalog(synth_catalog).listings.head(3).assign(title="   ")
    root = _small_catalog(synth_catalog, tmp_path / "cat", listings)
    cfg.validate_.max_fail_share = 1.0
    with pytest.raises(ValidationFailed) as exc:
        validate.run(cfg, root, tmp_path / "out")
    assert "no listing passed" in str(exc.value) and "quarantine.parquet" in str(exc.value)
    assert str(root) in str(exc.value)
    assert len(pd.read_parquet(tmp_path / "out" / "quarantine.parquet")) == 3
    assert json.loads((tmp_path / "out" / "report.json").read_text())["gate_passed"] is False


def test_cli_empty_catalogue_exits_2(tmp_path, synth_catalog):
    from typer.testing import CliRunner

    from afmrl.cli import app

    root = _small_catalog(synth_catalog, tmp_path / "empty", read_catalog(synth_catalog).listings.head(0))
    res = CliRunner().invoke(app, ["--set", "tracking.enabled=false", "validate", str(root), "--out",
                                   str(tmp_path / "out")])  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "ValidationFailed" in res.output and "no listings" in res.output
    assert (tmp_path / "out" / "report.json").exists()


def test_prices_without_currency_column_are_valid(tmp_path, cfg, synth_catalog):
    """A catalogue whose currency column is empty: its prices carry no unit, nothing to quarantine."""
    listings = read_catalog(synth_catalog).listings.assign(currency=None)
    root = _small_catalog(synth_catalog, tmp_path / "cat", listings)
    result = validate.run(cfg, root, tmp_path / "out")
    assert result.quarantined == 0
