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
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["synth"].update(n_base_products=5, listings_per_product=2, image_size=64)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    _dvc(work, "init", "--no-scm", "-q")

    out = _dvc(work, "repro")
    assert "Running stage 'synth'" in out and "Running stage 'validate'" in out
    report = json.loads((work / "data/validated/report.json").read_text())
    assert report["rows"] == 5 * 3 * 2 and report["gate_passed"]
    assert (work / "mlflow.db").exists()

    assert "Running stage" not in _dvc(work, "repro")  # nothing changed: nothing runs

    params["validate"]["max_fail_share"] = 0.5
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    out = _dvc(work, "repro")
    assert "Running stage 'validate'" in out and "Running stage 'synth'" not in out

    metrics = _dvc(work, "metrics", "show")
    assert "fail_share" in metrics
