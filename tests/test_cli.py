from __future__ import annotations

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
    for args in (["--help"], ["data", "synth", "--help"], ["validate", "--help"], ["train", "--help"],
                 ["attributes", "extract", "--help"], ["models", "tiny", "--help"], ["models", "sft", "--help"],
                 ["models", "rar", "--help"], ["index", "build", "--help"], ["evaluate", "--help"],
                 ["promote", "--help"], ["index", "publish", "--help"], ["index", "info", "--help"],
                 ["trigger", "--help"], ["search", "--help"], ["ui", "--help"]):  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 0, (args, result.output)
        assert "Usage" in result.output
