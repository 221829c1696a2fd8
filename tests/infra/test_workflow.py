""".github/workflows/retrain.yml: schema-valid (check-jsonschema, vendor.github-workflows), lint-clean,
the right triggers and steps in order, and its decide step run for real against `afmrl trigger`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import pytest
import yaml

from .validators import REPO, check_workflow, yamllint

WORKFLOW = REPO / ".github" / "workflows" / "retrain.yml"


def _wf() -> dict:
    wf = yaml.safe_load(WORKFLOW.read_text())
    wf["on"] = wf.pop(True, wf.get("on"))  # YAML 1.1 reads the key `on` as True
    return wf


def _runs(job: dict) -> list[str]:
    return [s.get("run", "") for s in job["steps"]]


@pytest.mark.slow
def test_workflow_is_schema_valid_and_lint_clean():
    text = WORKFLOW.read_text()
    assert check_workflow(text) == []
    assert yamllint(text) == []


@pytest.mark.slow
def test_check_jsonschema_rejects_broken_workflows():
    text = WORKFLOW.read_text()
    no_runner = text.replace("    runs-on: ubuntu-latest\n", "", 1)
    assert any("runs-on" in p for p in check_workflow(no_runner))
    assert any("jobz" in p for p in check_workflow("name: x\non: push\njobz: {}\n"))
    bad_trigger = text.replace("  workflow_dispatch:\n", "  workflow_dispatched:\n")
    assert check_workflow(bad_trigger)


def test_triggers_data_pointers_params_schedule_and_by_hand():
    on = _wf()["on"]
    assert {"**.dvc", "dvc.lock", "params.yaml"} <= set(on["push"]["paths"])
    assert on["schedule"] and all(len(s["cron"].split()) == 5 for s in on["schedule"])
    assert on["workflow_dispatch"]["inputs"]["force"]["type"] == "boolean"


def test_steps_decide_then_validate_retrain_gate_report():
    wf = _wf()
    decide, retrain = wf["jobs"]["decide"], wf["jobs"]["retrain"]
    for job in (decide, retrain):
        runs = "\n".join(_runs(job))
        assert runs.index('"torch==${TORCH_VERSION}"') < runs.index("pip install -e .")
    assert wf["env"]["TORCH_VERSION"] == "2.13.0"
    assert "afmrl trigger --out" in "\n".join(_runs(decide))
    assert decide["outputs"]["retrain"] == "${{ steps.trigger.outputs.retrain }}"
    assert retrain["needs"] == "decide" and "needs.decide.outputs.retrain == 'true'" in retrain["if"]

    runs = _runs(retrain)

    def at(fragment: str) -> int:  # index of the first step whose script contains (or is) the fragment
        return next(i for i, r in enumerate(runs) if fragment in r or r.strip() == fragment.strip())

    kfp = runs[at("kfp --endpoint")]
    assert "run create" in kfp and "--experiment-name" in kfp and "--package-file pipelines/afmrl.yaml" in kfp
    assert at("dvc repro validate") < at("dvc repro\n") < at("afmrl promote") < at("dvc metrics show")
    assert at("kfp --endpoint") < at("afmrl promote") < at("afmrl trigger --record")
    uploads = [s for s in retrain["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert uploads and uploads[-1]["if"] == "always()" and "reports/" in uploads[-1]["with"]["path"]
    assert any("GITHUB_STEP_SUMMARY" in r for r in runs)


def test_no_expressions_interpolated_into_scripts():
    # ${{ inputs.* }} / ${{ secrets.* }} inside `run:` is a script-injection risk: pass them via env
    for job in _wf()["jobs"].values():
        for run in _runs(job):
            assert "${{ inputs." not in run and "${{ secrets." not in run and "${{ github.event" not in run


@pytest.mark.skipif(
    not (shutil.which("bash") and shutil.which("jq")), reason="needs bash and jq (as on the runners)"
)
@pytest.mark.parametrize("force", ["", "true"])
@pytest.mark.slow
def test_the_decide_step_runs_with_the_real_trigger(tmp_path, force):
    """Run the workflow's decide script in bash, with `afmrl` = the real CLI plus the trigger command."""
    step = next(s for s in _wf()["jobs"]["decide"]["steps"] if s.get("id") == "trigger")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "afmrl"
    shim.write_text(
        textwrap.dedent(f"""\
        #!{sys.executable}
        import typer
        from afmrl.cli import app, root
        from afmrl.commands.trigger import trigger_cmd
        if not any(c.name == "trigger" for c in app.registered_commands):  # until cli.py registers it
            app = typer.Typer()
            app.callback()(root)
            app.command("trigger")(trigger_cmd)
        app()
    """)
    )
    shim.chmod(0o755)
    (tmp_path / "params.yaml").write_text(
        "tracking: {enabled: false}\ntrigger: {data_change: false, state_file: state.json}\n"
    )
    out, summary = tmp_path / "gh_output", tmp_path / "gh_summary"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "FORCE": force,
           "GITHUB_OUTPUT": str(out), "GITHUB_STEP_SUMMARY": str(summary), "AFMRL_PROGRESS": "off"}  # fmt: skip
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", step["run"]], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert out.read_text() == "retrain=true\n"  # nothing recorded yet: the first training
    text = summary.read_text()
    assert "retrain: **true**" in text and "- no previous training recorded" in text
    assert ("forced" in text) == (force == "true")
    assert "drift check skipped" in text  # notes reach the summary
