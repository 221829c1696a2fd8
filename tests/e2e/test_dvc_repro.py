"""`dvc repro` runs the pipeline end to end; a second run does nothing; a param change re-runs downstream only."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from afmrl.config import Config

from ..conftest import REPO

pytestmark = pytest.mark.slow


def _dvc(cwd: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "AFMRL_PROGRESS": "off"}  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def test_dvc_repro_end_to_end(tmp_path):
    work = tmp_path / "project"
    work.mkdir()
    shutil.copy(REPO / "dvc.yaml", work)
    shutil.copytree(REPO / "afmrl", work / "afmrl", ignore=shutil.ignore_patterns("__pycache__"))
    params = Config().to_dict()  # the built-in defaults, not the working params.yaml's values
    params["synth"].update(n_base_products=6, listings_per_product=3, image_size=64)
    params["train"].update(steps=30, batch_size=8, checkpoint_every=10)
    params["encoder"].update(image_size=64)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    _dvc(work, "init", "--no-scm", "-q")

    out = _dvc(work, "repro")
    from afmrl.stages import STAGES

    for stage in STAGES:
        assert f"Running stage '{stage}'" in out
    report = json.loads((work / "data/validated/report.json").read_text())
    assert report["rows"] == 6 * 3 * 3 and report["gate_passed"]
    evaluation = json.loads((work / "outputs/eval/report.json").read_text())
    assert 0.0 <= evaluation["metrics"]["listing_R@1"] <= 1.0
    assert (work / "outputs/train/encoder/model.safetensors").exists()
    assert json.loads((work / "outputs/publish/publish.json").read_text())["switched"] in (True, False)
    assert (work / "mlflow.db").exists()

    assert "Running stage" not in _dvc(work, "repro")  # nothing changed: nothing runs

    params["train"]["lr"] = 0.002  # a training parameter: only training and what follows re-run
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    out = _dvc(work, "repro")
    assert "Running stage 'train'" in out and "Running stage 'evaluate'" in out
    assert "Running stage 'synth'" not in out and "Running stage 'validate'" not in out

    metrics = _dvc(work, "metrics", "show")
    assert "fail_share" in metrics and "listing_R@1" in metrics
    for stage in yaml.safe_load((work / "dvc.yaml").read_text())["stages"].values():  # headline figures only
        for entry in stage.get("metrics", []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            figures = json.loads((work / path).read_text())
            assert len([v for v in figures.values() if isinstance(v, int | float)]) <= 10, (path, figures)
