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
    params["sft"]["trl"].update(max_steps=4)  # the loop's shape, not its quality: few SFT / GRPO steps
    params["rar"]["trl"].update(max_steps=2)
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(REPO / "data" / "sources", work / "data" / "sources")  # data.path: the ingest stage's dep
    _dvc(work, "init", "--no-scm", "-q")

    out = _dvc(work, "repro")
    from afmrl.stages import STAGES

    for stage in STAGES:
        assert f"Running stage '{stage}'" in out
    report = json.loads((work / "data/validated/report.json").read_text())
    assert report["rows"] == 6 * 3 * 3 and report["gate_passed"]
    evaluation = json.loads((work / "outputs/eval/report.json").read_text())
    assert 0.0 <= evaluation["metrics"]["listing_R@1"] <= 1.0
    rounds = evaluation["rounds"]  # the closed loop: round 2 trained on the reinforced extractor's attributes
    assert [r["round"] for r in rounds] == [1, 2] and sum(r["selected"] for r in rounds) == 1
    assert rounds[0]["attributes"]["source"] == "rules" and rounds[1]["attributes"]["source"] == "mllm"
    assert rounds[1]["attributes"]["extractor"]["registered"]["name"] == "afmrl-attribute-extractor"
    assert all(r["eval"]["split"] == evaluation["split"] and r["select"]["split"] == "val" for r in rounds)
    assert (work / "outputs/train/encoder/model.safetensors").exists()
    assert json.loads((work / "outputs/publish/publish.json").read_text())["switched"] in (True, False)
    assert (work / "mlflow.db").exists()

    assert "Running stage" not in _dvc(work, "repro")  # nothing changed: nothing runs

    with (work / "data" / "sources" / "README.md").open("a") as f:  # the data at data.path changed: ingest re-runs;
        f.write("\nedited\n")  # the synthetic catalogue ignores it, so its output is the same and nothing else runs
    from afmrl.orchestration.dvc_status import dvc_data_status

    changes = dvc_data_status(work).changes  # what `afmrl trigger` reads: it fires on the data
    assert [c for c in changes if c.endswith("ingest: input data/sources modified")], changes
    out = _dvc(work, "repro")
    assert "Running stage 'ingest'" in out and "Running stage 'validate'" not in out, out

    params["train"]["lr"] = 0.002  # a training parameter: only training and what follows re-run
    (work / "params.yaml").write_text(yaml.safe_dump(params))
    out = _dvc(work, "repro")
    assert "Running stage 'train'" in out and "Running stage 'evaluate'" in out
    assert "Running stage 'ingest'" not in out and "Running stage 'validate'" not in out

    metrics = _dvc(work, "metrics", "show")
    assert "fail_share" in metrics and "listing_R@1" in metrics
    for stage in yaml.safe_load((work / "dvc.yaml").read_text())["stages"].values():  # headline figures only
        for entry in stage.get("metrics", []):
            path = next(iter(entry)) if isinstance(entry, dict) else entry
            figures = json.loads((work / path).read_text())
            assert len([v for v in figures.values() if isinstance(v, int | float)]) <= 10, (path, figures)
