"""The command modules, mounted the way afmrl/cli.py mounts them (a root callback that loads the config)."""

from __future__ import annotations

import json
from typing import Annotated

import pytest
import typer
from typer.testing import CliRunner

from afmrl.commands import attributes as attributes_commands
from afmrl.commands import models as models_commands
from afmrl.commands.common import guarded
from afmrl.config import load_config


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    root = typer.Typer(no_args_is_help=True)

    @root.callback()
    @guarded
    def _root(ctx: typer.Context, overrides: Annotated[list[str] | None, typer.Option("--set")] = None) -> None:
        ctx.obj = {"config": load_config(None, ["tracking.enabled=false", *(overrides or [])])}

    root.add_typer(attributes_commands.app, name="attributes")
    root.add_typer(models_commands.app, name="models")
    return root


def test_attributes_extract_command(app, synth_catalog, tmp_path):
    res = CliRunner().invoke(app, ["attributes", "extract", str(synth_catalog), "--out", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["backend"] == "rules" and report["listings"] > 0


def test_bad_input_is_one_line_and_exit_2(app, tmp_path):
    res = CliRunner().invoke(app, ["attributes", "extract", str(tmp_path / "missing")])
    assert res.exit_code == 2
    res = CliRunner().invoke(app, ["--set", "attributes.keys=[nope]", "attributes", "extract", str(tmp_path)])
    assert res.exit_code == 2
    res = CliRunner().invoke(app, ["--set", "tiny.kind=nope", "models", "tiny", "--out", str(tmp_path / "m")])
    assert res.exit_code == 2 and "tiny.kind" in res.output


def test_models_tiny_and_help(app, tmp_path):
    res = CliRunner().invoke(app, ["--set", "tiny.kind=lm", "--set", "tiny.vocab_size=300", "models", "tiny", "--out",
                                   str(tmp_path / "m")])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert (tmp_path / "m" / "config.json").is_file() and (tmp_path / "m" / "tokenizer.json").is_file()
    assert json.loads((tmp_path / "m" / "afmrl_build.json").read_text())["kind"] == "tiny-qwen2-lm"
    for cmd in ("sft", "rar"):
        res = CliRunner().invoke(app, ["models", cmd, "--help"])
        assert res.exit_code == 0 and "catalog" in res.output.lower() and "--base" in res.output
