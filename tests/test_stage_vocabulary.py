"""One name per stage (afmrl.stages.STAGES), the same in dvc.yaml, afmrl/stages/, components/, MLflow and the
CLI; stage commands take only inputs and outputs; dvc.yaml lists every afmrl file a stage runs."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from afmrl.cli import app
from afmrl.stages import STAGES

from .conftest import REPO

DVC = yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
COMPONENT_MODULES = sorted(p.stem for p in (REPO / "components").glob("*.py") if p.stem != "__init__")
# the options of a stage command that are inputs or outputs although not typed as paths: model references
# (a folder, an MLflow URI or a hub id); and `afmrl promote`'s manual path (promote a version by hand)
MODEL_REFERENCES = {"encoder", "base"}
MANUAL_PROMOTION = {"version", "model", "reason"}
# `--round N`: where the stage sits in the AFMRL loop's DAG (dvc.yaml's `<stage>-<N>`), not a parameter
DAG_POSITION = {"round_"}


def _cli_command(words: tuple[str, ...]) -> Any:
    """The click command (typer's) that ``afmrl WORDS...`` runs."""
    command = typer.main.get_command(app)
    for word in words:
        commands = getattr(command, "commands", None)
        assert commands is not None, f"`afmrl {' '.join(words)}`: {command.name!r} has no sub-commands"
        assert word in commands, f"`afmrl {' '.join(words)}`: no command {word!r} under {command.name!r}"
        command = commands[word]
    assert not hasattr(command, "commands"), f"`afmrl {' '.join(words)}` is a group, not a command"
    return command


def _is_path(param: Any) -> bool:
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)  # typer >= 0.26
    if annotation is not None:
        return annotation is Path or annotation == list[Path]
    return type(getattr(param, "type", None)).__name__ == "Path"  # click


def _dvc_words(cmd: str) -> list[str]:
    words = shlex.split(cmd)
    assert words[0] == "afmrl", cmd
    return words[1:]


def _stage_of(dvc_name: str) -> str:
    """A later round of the AFMRL loop runs a stage again as ``<stage>-<round>`` (``extract-2``)."""
    match = re.fullmatch(r"(.+)-(\d+)", dvc_name)
    return match.group(1) if match else dvc_name


def test_dvc_stages_are_the_stages_in_order():
    seen = list(dict.fromkeys(_stage_of(name) for name in DVC))
    assert seen == list(STAGES)


@pytest.mark.parametrize("name", [n for n in DVC if _stage_of(n) != n])
def test_a_later_round_runs_its_stage_with_its_round(name):
    words = _dvc_words(DVC[name]["cmd"])
    round_ = name.rsplit("-", 1)[1]
    assert words[words.index("--round") + 1] == round_, DVC[name]["cmd"]


@pytest.mark.parametrize("name", list(DVC))
def test_dvc_command_calls_the_stage_command_with_no_overrides(name):
    stage = _stage_of(name)
    words = _dvc_words(DVC[name]["cmd"])
    assert "--set" not in words and "-s" not in words, f"dvc stage {name}: parameters come from params.yaml"
    assert tuple(words[: len(STAGES[stage])]) == STAGES[stage], (name, DVC[name]["cmd"])
    command = _cli_command(STAGES[stage])
    assert stage in STAGES[stage], f"the stage's name is a word of its command: {STAGES[stage]}"
    ctx = command.make_context("afmrl", words[len(STAGES[stage]) :], resilient_parsing=False)  # parses
    assert ctx.params, stage


@pytest.mark.parametrize("stage", list(STAGES))
def test_stage_command_takes_only_inputs_and_outputs(stage):
    command = _cli_command(STAGES[stage])
    for param in command.params:
        if param.name == "help":
            continue
        if stage == "promote" and param.name in MANUAL_PROMOTION:
            continue
        is_path = _is_path(param) or param.name in MODEL_REFERENCES | DAG_POSITION
        assert is_path, f"`afmrl {' '.join(STAGES[stage])}` option {param.name}: parameters belong in params.yaml"


def test_renamed_commands_are_gone():
    for old in (("train", "agcl"), ("models", "build-tiny"), ("index", "serve")):
        with pytest.raises(AssertionError):
            _cli_command(old)


@pytest.mark.parametrize("stage", list(STAGES))
def test_component_per_stage_calls_the_stage(stage):
    found = []
    for name in COMPONENT_MODULES:
        module = importlib.import_module(f"components.{name}")
        if hasattr(module, stage):
            found.append(getattr(module, stage))
    assert len(found) == 1, f"components/ must define exactly one component named {stage!r}: {found}"
    (component,) = found
    source = inspect.getsource(component.python_func)
    assert f'run_component("{stage}",' in source, f"component {stage} calls afmrl.stages.{stage}.run"


def _stage_run_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "stage_run":
            if len(node.args) >= 2 and isinstance(node.args[1], ast.Constant):
                names.add(node.args[1].value)
    return names


@pytest.mark.parametrize("stage", list(STAGES))
def test_stage_module_runs_and_opens_its_mlflow_run(stage):
    module = importlib.import_module(f"afmrl.stages.{stage}")
    assert callable(getattr(module, "run", None)), f"afmrl/stages/{stage}.py has no run()"
    assert stage in _stage_run_names(REPO / "afmrl" / "stages" / f"{stage}.py"), (
        f"afmrl/stages/{stage}.py must open stage_run(cfg.tracking, {stage!r})")


@pytest.mark.slow
def test_stage_runs_are_tagged_with_the_stage_name(tmp_path, monkeypatch):
    """Where running is cheap (ingest, publish without a promotion), the tag is what MLflow records."""
    from mlflow import MlflowClient

    from afmrl.config import load_config
    from afmrl.stages import ingest, publish
    from afmrl.tracking.runs import PARENT_RUN_ENV, PIPELINE_ID_ENV

    for var in (PARENT_RUN_ENV, PIPELINE_ID_ENV, "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config(None, [f"tracking.uri={uri}", "synth.n_base_products=2", "synth.near_duplicates=0",
                             "synth.listings_per_product=1", "synth.image_size=48"])  # fmt: skip
    result = ingest.run(cfg, tmp_path / "catalogue")
    assert result.listings == 2 and result.listings_path.is_file()
    (tmp_path / "decision.json").write_text(json.dumps({"promoted": False}))
    outcome = publish.run(cfg, tmp_path / "decision.json", tmp_path / "encoder", tmp_path / "publish")
    assert outcome["switched"] is False and (tmp_path / "publish" / "publish.json").is_file()

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id])
    assert sorted(r.data.tags["afmrl.stage"] for r in runs) == ["ingest", "publish"]
    (ingested,) = [r for r in runs if r.data.tags["afmrl.stage"] == "ingest"]
    assert ingested.data.tags["afmrl.data.format"] == "synthetic" and ingested.data.metrics["listings"] == 2
    assert ingested.data.tags["afmrl.data.source_digest"] == result.source_digest


# ---- dvc.yaml deps: every afmrl file a stage runs ----


def _module_file(module: str) -> Path | None:
    base = REPO.joinpath(*module.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _imported(path: Path, module: str) -> tuple[set[str], set[str]]:
    """afmrl modules ``path`` imports anywhere (module level or inside functions): (candidates, required).
    ``from a import b`` requires ``a`` and may import ``a.b`` (b may be a sub-module or a name in a)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    candidates: set[str] = set()
    required: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            required.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            required.add(source)
            candidates.update(f"{source}.{a.name}" for a in node.names)
    return _ours(candidates | required), _ours(required)


def _ours(modules: set[str]) -> set[str]:
    return {m for m in modules if m == "afmrl" or m.startswith("afmrl.")}


def afmrl_files_run_by(module: str) -> set[str]:
    """The afmrl source files importing ``module`` runs (its package __init__ files included), transitively."""
    files: set[str] = set()
    todo, seen = [module], set()
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        parts = mod.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # importing a.b.c runs a and a.b first
        path = _module_file(mod)
        if path is not None:
            files.add(path.relative_to(REPO).as_posix())
            imported, required = _imported(path, mod)
            missing = sorted(m for m in required if _module_file(m) is None)
            assert not missing, f"{path.relative_to(REPO)} imports modules that do not exist: {missing}"
            todo.extend(imported)
    return files


def test_the_import_walk_follows_function_level_imports():
    files = afmrl_files_run_by("afmrl.stages.evaluate")
    assert {"afmrl/__init__.py", "afmrl/stages/__init__.py", "afmrl/stages/evaluate.py",
            "afmrl/stages/index.py", "afmrl/retrieval/index_eval.py"} <= files  # fmt: skip


@pytest.mark.parametrize("name", list(DVC))
def test_dvc_deps_cover_every_afmrl_file_the_stage_runs(name):
    stage = _stage_of(name)
    deps = [str(d).rstrip("/") for d in DVC[name].get("deps", [])]
    for dep in deps:
        if dep.startswith("afmrl"):
            assert (REPO / dep).exists(), f"dvc stage {stage}: dep {dep} does not exist"
    missing = sorted(f for f in afmrl_files_run_by(f"afmrl.stages.{stage}")
                     if not any(f == d or f.startswith(d + "/") for d in deps))  # fmt: skip
    assert not missing, f"dvc.yaml stage {stage} runs these afmrl files but does not list them in deps: {missing}"
