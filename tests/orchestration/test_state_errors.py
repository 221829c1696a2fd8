"""The last training read from MLflow: a run that recorded no profile still counts (its time), but a
record that is there and broken, or a store that cannot be read, is a TriggerError with the cause --
never silently "no profile"."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from afmrl.config import load_config
from afmrl.errors import TriggerError
from afmrl.orchestration import state as S

pytestmark = pytest.mark.slow  # a real MLflow store
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _cfg(tmp_path: Path, synth_catalog: Path):
    return load_config(None, [f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", "tracking.experiment=state-errors",
                              f"trigger.catalog={synth_catalog}", f"trigger.state_file={tmp_path / 'absent.json'}",
                              "trigger.data_change=false"])  # fmt: skip


def _log_record(tmp_path: Path, cfg, text: str | None) -> str:
    from afmrl.tracking.runs import stage_run

    with stage_run(cfg.tracking, "train") as run_:
        if text is not None:
            art = tmp_path / "art" / S.STATE_ARTIFACT_NAME
            art.parent.mkdir(exist_ok=True)
            art.write_text(text)
            run_.log_artifact(art, artifact_path=S.STATE_ARTIFACT_DIR)
        return run_.run_id


def test_a_run_without_a_record_counts_with_no_profile(tmp_path, synth_catalog):
    cfg = _cfg(tmp_path, synth_catalog)
    run_id = _log_record(tmp_path, cfg, None)
    state = S.state_from_mlflow(cfg.tracking, "train")
    assert state is not None and state.profile is None and run_id in state.source


@pytest.mark.parametrize("text, match", [
    ("{not json", "not valid JSON"),
    (json.dumps({"trained_at": "yesterday"}), "ISO 8601"),
    (json.dumps(["not", "a", "record"]), "not a training record"),
])  # fmt: skip
def test_a_broken_record_is_an_error_naming_the_run(tmp_path, synth_catalog, text, match):
    cfg = _cfg(tmp_path, synth_catalog)
    run_id = _log_record(tmp_path, cfg, text)
    with pytest.raises(TriggerError, match=match) as info:
        S.state_from_mlflow(cfg.tracking, "train")
    assert run_id in str(info.value)


def test_an_unreadable_store_is_an_error_with_the_cause(tmp_path, synth_catalog):
    cfg = _cfg(tmp_path, synth_catalog)
    (tmp_path / "mlflow.db").write_bytes(b"this is not an SQLite database" * 100)
    with pytest.raises(TriggerError, match="MLflow") as info:
        S.state_from_mlflow(cfg.tracking, "train")
    assert info.value.__cause__ is not None
