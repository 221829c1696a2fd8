from __future__ import annotations

import pytest
from typer.testing import CliRunner

from afmrl.cli import app


def test_where_lists_outputs_and_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "eval").mkdir(parents=True)
    (tmp_path / "outputs" / "eval" / "report.json").write_text("{}")
    result = CliRunner().invoke(app, ["--set", "index.uri=outputs/milvus.db", "where"])
    assert result.exit_code == 0, result.output
    lines = {line.split("  ")[0].strip(): line for line in result.output.splitlines()}
    assert "not there yet" not in lines["evaluation report"]
    assert "not there yet" in lines["promotion decision"]
    assert "afmrl ui" in lines["MLflow store"]


def test_every_command_has_help():
    runner = CliRunner()
    for args in (["--help"], ["data", "synth", "--help"], ["data", "ingest", "--help"], ["validate", "--help"], ["train", "--help"],
                 ["attributes", "extract", "--help"], ["models", "tiny", "--help"], ["models", "sft", "--help"],
                 ["models", "rar", "--help"], ["index", "build", "--help"], ["evaluate", "--help"],
                 ["promote", "--help"], ["index", "publish", "--help"], ["index", "info", "--help"],
                 ["trigger", "--help"], ["search", "--help"], ["ui", "--help"]):  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert "Usage" in result.output


def _readme_where_paths() -> list[str]:
    """The outputs the README's first-command paragraph says ``afmrl where`` lists: each backticked path
    between "lists them at the end:" and "(look at it", braces expanded, a bare file name taken to sit in
    the folder named just before it."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    text = " ".join(text.split())
    start = text.index("`afmrl where` lists them at the end:")
    paragraph = text[start + len("`afmrl where` lists them at the end:"): text.index("(look at it", start)]
    paths: list[str] = []
    folder = ""
    for token in re.findall(r"`([^`]+)`", paragraph):
        brace = re.fullmatch(r"(.*)\{([^}]*)\}(.*)", token)
        expanded = [brace[1] + part + brace[3] for part in brace[2].split(",")] if brace else [token]
        for path in expanded:
            if "/" not in path and folder and not path.endswith(".db"):
                path = folder + path
            paths.append(path)
            folder = path if path.endswith("/") else path.rsplit("/", 1)[0] + "/" if "/" in path else folder
    return paths


def test_where_lists_every_output_the_readme_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MILVUS_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    paths = _readme_where_paths()
    assert {"data/validated/quarantine.parquet", "outputs/eval/summary.md", "outputs/models/rar/",
            "outputs/milvus.db", "mlflow.db"} <= set(paths), paths  # fmt: skip
    (tmp_path / "outputs" / "models" / "sft").mkdir(parents=True)
    result = CliRunner().invoke(app, ["where"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    for path in paths:
        hits = [line for line in lines if any(tok == path or tok.endswith("/" + path) for tok in line.split())]
        assert hits, (path, result.output)
    (sft,) = [line for line in lines if "outputs/models/sft/" in line]
    assert "not there yet" not in sft
    (rar,) = [line for line in lines if "outputs/models/rar/" in line]
    assert "not there yet" in rar


def test_third_party_deprecations_are_quiet_and_ours_are_not(monkeypatch):
    import sys
    import warnings

    from afmrl.cli import quiet_third_party_warnings

    monkeypatch.setattr(sys, "warnoptions", [])

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        quiet_third_party_warnings()
        warnings.warn_explicit("`is_gradient_checkpointing` is deprecated", FutureWarning, "modeling_utils.py", 1,
                               module="transformers.modeling_utils")  # fmt: skip
        warnings.warn_explicit("old", DeprecationWarning, "sqlalchemy_store.py", 1, module="mlflow.store.tracking")
        warnings.warn_explicit("The ``noload`` loader strategy is deprecated", DeprecationWarning, "x.py", 1,
                               module="somewhere")  # fmt: skip
        warnings.warn_explicit("ours", FutureWarning, "features.py", 1, module="afmrl.models.features")
    assert [str(w.message) for w in caught] == ["ours"]


@pytest.mark.slow
def test_a_cheap_command_prints_no_future_warning(tmp_path):
    import os
    import subprocess
    import sys

    env = {**os.environ, "AFMRL_PROGRESS": "off"}
    env.pop("PYTHONWARNINGS", None)
    r = subprocess.run([sys.executable, "-m", "afmrl.cli", "--set", "synth.n_base_products=4", "--set",
                        f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}", "data", "ingest", "--out", str(tmp_path / "cat")],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "FutureWarning" not in r.stderr and "DeprecationWarning" not in r.stderr, r.stderr
