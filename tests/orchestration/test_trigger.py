"""The retrain trigger: PSI drift on real (synthetic) catalogues, dvc status in a real DVC repo, the
schedule, the pure decision, the state (file and MLflow) and the `afmrl trigger` command."""

from __future__ import annotations

import json
import math
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

from afmrl.catalog.io import read_catalog, write_catalog
from afmrl.config import TriggerConfig, load_config
from afmrl.errors import TriggerError
from afmrl.orchestration import drift as D
from afmrl.orchestration import dvc_status as DV
from afmrl.orchestration import state as S
from afmrl.orchestration import trigger as T

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _cfg(tmp: Path, *extra: str):
    return load_config(
        None, ["tracking.enabled=false", f"trigger.state_file={tmp / 'state' / 'last_training.json'}", *extra]
    )


def _drifted(listings: pd.DataFrame) -> pd.DataFrame:
    """A catalogue that moved: two categories gone into a third, longer titles, prices x4."""
    df = listings.copy()
    df.loc[df["category"].isin(["bottle", "mug"]), "category"] = "phone case"
    df["title"] = df["title"] + " | FREE SHIPPING | Best Price | 100% Original | Fast Delivery"
    df["price"] = df["price"] * 4
    return df


@pytest.fixture(scope="module")
def listings(synth_catalog: Path) -> pd.DataFrame:
    return read_catalog(synth_catalog).listings


@pytest.fixture
def drifted_catalog(tmp_path: Path, synth_catalog: Path, listings: pd.DataFrame) -> Path:
    out = tmp_path / "drifted"
    write_catalog(_drifted(listings), out, image_root=synth_catalog)
    return out


# ------------------------------------------------------------------------------------------ PSI


def test_psi_matches_the_formula():
    assert D.psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    expected = 0.4 * math.log(0.9 / 0.5) + (-0.4) * math.log(0.1 / 0.5)
    assert D.psi([0.5, 0.5], [0.9, 0.1]) == pytest.approx(expected)
    # an empty bin is floored at 1e-4, so a vanished category gives a large but finite PSI
    assert D.psi([0.5, 0.5], [1.0, 0.0]) == pytest.approx(
        0.5 * math.log(1.0 / 0.5) + (1e-4 - 0.5) * math.log(1e-4 / 0.5)
    )
    with pytest.raises(ValueError):
        D.psi([0.5, 0.5], [1.0])


def test_same_catalogue_has_no_drift_and_a_subsample_little(listings):
    features = ["category", "currency", "source", "title_length", "price", "has_image"]
    same = D.catalogue_drift(listings, listings, features)
    assert set(same) == set(features)
    assert all(v == pytest.approx(0.0, abs=1e-12) for v in same.values())
    subsample = listings.iloc[[i for i in range(len(listings)) if i % 10 != 3]]
    assert max(D.catalogue_drift(listings, subsample, features).values()) < 0.1


def test_modified_catalogue_drifts_on_each_changed_feature(listings):
    psi = D.catalogue_drift(listings, _drifted(listings), ["category", "title_length", "price", "currency"])
    assert psi["category"] > 1.0  # two of five categories vanished
    assert psi["title_length"] > 1.0  # every title longer than the reference's longest
    assert psi["price"] > 0.25
    assert psi["currency"] == pytest.approx(0.0, abs=1e-12)  # untouched


def test_quantile_bins_ignore_units_and_unseen_values_count(listings):
    ref = D.profile_catalog(listings, ["price"], bins=5)["features"]["price"]
    assert ref["kind"] == "numeric" and len(ref["shares"]) == len(ref["edges"]) + 2  # + missing bin
    assert sum(ref["shares"]) == pytest.approx(1.0)
    cur = listings.copy()
    cur["price"] = None  # every price missing now: all mass moves to the missing bin
    assert D.feature_psi(ref, D.feature_values(cur, "price")) > 1.0
    new_cat = listings.copy()
    new_cat.loc[: len(new_cat) // 2, "category"] = "lamp"  # a category the model never saw
    assert D.catalogue_drift(listings, new_cat, ["category"])["category"] > 0.25
    with pytest.raises(ValueError, match="unknown drift feature"):
        D.feature_values(listings, "colour")


# ------------------------------------------------------------------------------- pure decision


def _ev(**kw) -> T.Evidence:
    base = {
        "now": NOW,
        "data": DV.DataStatus(),
        "drift": {"category": 0.01},
        "last_trained": NOW - timedelta(days=1),
    }
    return T.Evidence(**(base | kw))


def test_decide_nothing_to_do():
    d = T.decide(TriggerConfig(), _ev())
    assert d.retrain is False and d.reasons == [] and d.triggers == []
    assert d.checks["schedule"]["age_days"] == pytest.approx(1.0)
    assert d.checks["drift"]["max_feature"] == "category"
    doc = json.loads(json.dumps(d.to_dict()))  # machine-readable
    assert doc["retrain"] is False and doc["checks"]["drift"]["max_feature"] == "category"


@pytest.mark.parametrize(
    ("evidence", "kind", "text"),
    [
        (
            {"data": DV.DataStatus(changes=["validate: input data/synthetic modified"])},
            "data",
            "data/synthetic",
        ),
        ({"drift": {"category": 0.4, "price": 0.05}}, "drift", "category 0.400"),
        ({"last_trained": NOW - timedelta(days=9)}, "schedule", "9.0 days"),
        ({"last_trained": None}, "first", "no previous training"),
    ],
)
def test_decide_each_check_fires_alone(evidence, kind, text):
    d = T.decide(TriggerConfig(), _ev(**evidence))
    assert d.retrain is True and d.triggers == [kind]
    assert any(text in r for r in d.reasons), d.reasons


def test_decide_respects_disabled_checks_and_force():
    cfg = TriggerConfig(drift_threshold=None, max_age_days=None, data_change=False)
    ev = _ev(
        data=DV.DataStatus(changes=["x"]), drift={"category": 5.0}, last_trained=NOW - timedelta(days=400)
    )
    d = T.decide(cfg, ev)
    assert d.retrain is False
    assert (
        not d.checks["drift"]["checked"]
        and not d.checks["schedule"]["checked"]
        and not d.checks["data"]["checked"]
    )
    forced = T.decide(cfg, ev, force=True)
    assert forced.retrain is True and forced.triggers == ["forced"]
    # missing inputs (not pulled) are no reason to retrain
    assert (
        T.decide(TriggerConfig(), _ev(data=DV.DataStatus(missing=["s: input raw deleted"]))).retrain is False
    )


def test_parse_dvc_status_shapes():
    status = {
        "train": [{"changed deps": {"data/validated": "modified", "params.yaml": {"train.lr": "modified"}}},
                  {"changed outs": {"models": "deleted"}}, "changed command"],
        "raw.dvc": [{"changed outs": {"raw": "modified"}}],
        "feed.dvc": [{"changed outs": {"feed": "not in cache"}}],
        "validate": [{"changed deps": {"data/synthetic": "deleted"}}, {"changed outs": {"data/validated": "modified"}}],
        "always": ["always changed"],
    }  # fmt: skip
    s = DV.parse_dvc_status(status)
    assert "train: input data/validated modified" in s.changes
    assert "train: parameter train.lr modified" in s.changes
    assert "train: command changed" in s.changes
    assert any(c.startswith("raw.dvc: data raw modified") for c in s.changes)
    assert not any(
        "models" in c or c.startswith(("validate", "always")) for c in s.changes
    )  # outputs, missing
    assert set(s.missing) == {"feed.dvc: data feed not in cache", "validate: input data/synthetic deleted"}


# ------------------------------------------------------------------------------ real DVC repo


@pytest.mark.slow
def test_data_change_in_a_real_dvc_repo(tmp_path, synth_catalog, listings, monkeypatch):
    import subprocess
    import sys

    from dvc.repo import Repo

    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    repo = tmp_path / "repo"
    repo.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=repo, capture_output=True
    )
    assert proc.returncode == 0, proc.stderr
    catalog = repo / "data" / "catalog"
    write_catalog(listings, catalog, image_root=synth_catalog)
    (repo / "dvc.yaml").write_text(
        "stages:\n  prepare:\n    cmd: mkdir -p out && cp data/catalog/listings.parquet out/\n"
        "    deps: [data/catalog]\n    outs: [out]\n"
    )
    monkeypatch.chdir(repo)
    with Repo(str(repo)) as r:
        r.add(str(catalog))
        r.reproduce()
    assert DV.dvc_data_status(repo) == DV.DataStatus()  # everything up to date

    write_catalog(_drifted(listings), catalog, image_root=synth_catalog)  # new data, not yet `dvc add`ed
    s = DV.dvc_data_status(repo)
    assert "prepare: input data/catalog modified" in s.changes
    assert any(c.startswith("data/catalog.dvc: data data/catalog modified") for c in s.changes)
    with Repo(str(repo)) as r:
        r.add(str(catalog))  # the pointer now records it; the stage is still out of date
    s = DV.dvc_data_status(repo)
    assert s.changes == ["prepare: input data/catalog modified"]
    assert DV.dvc_data_status(repo, ["data/catalog.dvc"]).changes == []  # targets narrow the check

    # recorded training on the original catalogue, one day ago: data + drift both fire
    cfg = _cfg(tmp_path, f"trigger.catalog={catalog}")
    S.record_training(cfg, synth_catalog, when=NOW - timedelta(days=1))
    d = T.evaluate(cfg, repo_dir=repo, now=NOW)
    assert d.retrain and d.triggers == ["data", "drift"], d.reasons
    assert d.checks["drift"]["psi"]["category"] > 1.0

    shutil.rmtree(catalog)  # inputs absent locally (not pulled): no change, no drift verdict
    s = DV.dvc_data_status(repo)
    assert s.changes == [] and "prepare: input data/catalog deleted" in s.missing
    d = T.evaluate(cfg, repo_dir=repo, now=NOW)
    assert d.retrain is False and any("not found" in n for n in d.notes)

    assert DV.dvc_data_status(tmp_path / "state") is None  # not a DVC repository: check skipped


# ----------------------------------------------------------------------------- state + schedule


def test_recorded_state_drives_schedule_and_drift(tmp_path, synth_catalog, drifted_catalog):
    cfg = _cfg(tmp_path, f"trigger.catalog={synth_catalog}", "trigger.data_change=false")
    first = T.evaluate(cfg, now=NOW)
    assert first.retrain and first.triggers == ["first"]

    path = S.record_training(cfg, when=NOW - timedelta(days=2))
    state = S.read_state_file(path)
    assert state.trained_at == NOW - timedelta(days=2) and set(state.profile["features"]) == {
        "category", "title_length", "price"
    }  # fmt: skip
    fresh = T.evaluate(cfg, now=NOW)
    assert fresh.retrain is False, fresh.reasons
    assert fresh.checks["drift"]["max_psi"] == pytest.approx(0.0, abs=1e-9)

    assert T.evaluate(cfg, now=NOW + timedelta(days=6)).triggers == ["schedule"]
    drift = T.evaluate(cfg, catalog=drifted_catalog, now=NOW)
    assert drift.triggers == ["drift"]
    explicit = T.evaluate(cfg, catalog=drifted_catalog, reference=synth_catalog, now=NOW)
    assert explicit.checks["drift"]["psi"] == drift.checks["drift"]["psi"]  # profile == the catalogue itself

    path.write_text("{not json")
    with pytest.raises(TriggerError, match="not valid JSON"):
        T.evaluate(cfg, now=NOW)
    path.write_text(json.dumps({"trained_at": "yesterday"}))
    with pytest.raises(TriggerError, match="ISO 8601"):
        T.evaluate(cfg, now=NOW)


@pytest.mark.slow
def test_mlflow_is_the_fallback_state_source(tmp_path, synth_catalog):
    from afmrl.tracking.runs import stage_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config(
        None,
        [f"tracking.uri={uri}", "tracking.experiment=trigger-test", f"trigger.catalog={synth_catalog}",
         f"trigger.state_file={tmp_path / 'absent.json'}", "trigger.data_change=false"],
    )  # fmt: skip
    assert S.state_from_mlflow(cfg.tracking, "train") is None  # no store yet (and none is created)
    assert not (tmp_path / "mlflow.db").exists()
    with stage_run(cfg.tracking, "train") as run_:
        S.record_training(cfg, when=NOW, run=run_)  # what a training stage does at its end
    (tmp_path / "absent.json").unlink()  # only MLflow knows now
    state = S.load_state(cfg)
    assert state is not None and state.source.startswith("mlflow run ")
    assert state.trained_at == NOW and state.profile["features"]["category"]["kind"] == "categorical"
    d = T.evaluate(cfg, now=NOW + timedelta(days=1))
    assert d.retrain is False and "drift reference: profile recorded" in " ".join(d.notes)


# ------------------------------------------------------------------------------------- the CLI


def _app() -> typer.Typer:
    from afmrl.cli import root
    from afmrl.commands.trigger import trigger_cmd

    app = typer.Typer()
    app.callback()(root)
    app.command("trigger")(trigger_cmd)
    return app


def test_cli_prints_and_writes_the_decision(tmp_path, synth_catalog, drifted_catalog):
    params = tmp_path / "params.yaml"
    params.write_text(
        "tracking: {enabled: false}\n"
        f"trigger: {{catalog: '{synth_catalog}', data_change: false, state_file: '{tmp_path / 's.json'}'}}\n"
    )
    runner = CliRunner()
    app = _app()
    rec = runner.invoke(
        app, ["--params", str(params), "trigger", "--record", "--now", "2026-03-01T00:00:00Z"]
    )
    assert rec.exit_code == 0, rec.output
    assert json.loads((tmp_path / "s.json").read_text())["trained_at"] == "2026-03-01T00:00:00Z"

    out = tmp_path / "reports" / "trigger.json"
    res = runner.invoke(app, ["--params", str(params), "trigger", "--catalog", str(drifted_catalog),
                              "--now", "2026-03-02T00:00:00Z", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["retrain"] is True and doc["triggers"] == ["drift"] and doc["reasons"]
    assert json.loads(res.stdout[res.stdout.index("{") :]) == doc  # the same JSON on stdout

    calm = runner.invoke(app, ["--params", str(params), "trigger", "--now", "2026-03-02T00:00:00Z"])
    assert calm.exit_code == 0 and json.loads(calm.stdout[calm.stdout.index("{") :])["retrain"] is False

    bad = runner.invoke(app, ["--params", str(params), "trigger", "--now", "soon"])
    assert bad.exit_code == 2 and "ISO 8601" in bad.output
