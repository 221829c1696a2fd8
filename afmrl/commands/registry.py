"""`afmrl promote`, `afmrl ui`, `afmrl run start|end`, `afmrl register-extractor`.

Registered in afmrl/cli.py with::

    from afmrl.commands import registry as registry_commands
    app.command("promote")(registry_commands.promote_cmd)
    app.command("ui")(registry_commands.ui_cmd)
    app.command("register-extractor")(registry_commands.register_extractor_cmd)
    app.add_typer(registry_commands.run_app, name="run")

``python -m afmrl.commands.registry ...`` runs the same commands under the root options
(``--params``, ``--set``) without cli.py.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from afmrl.atomic import write_json_atomic, write_text_atomic
from afmrl.commands.common import cfg_of, guarded, root
from afmrl.errors import ConfigError
from afmrl.progress import console

run_app = typer.Typer(help="The pipeline's parent MLflow run (stage runs nest under it).", no_args_is_help=True)


def _emit(doc: dict, out: Path | None) -> None:
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, text)
    sys.stdout.write(text)


@guarded
def promote_cmd(
    ctx: typer.Context,
    encoder: Annotated[Path, typer.Option(help="candidate encoder folder")] = Path("outputs/train/encoder"),
    report: Annotated[Path, typer.Option(help="its evaluation report")] = Path("outputs/eval/report.json"),
    out: Annotated[Path | None, typer.Option(help="folder for decision.json (gate default: outputs/promote)")] = None,
    version: Annotated[int | None, typer.Option(help="promote this registered version by hand (no gate)")] = None,
    model: Annotated[str, typer.Option(help="with --version: encoder or extractor")] = "encoder",
    reason: Annotated[str | None, typer.Option(help="with --version: why (recorded on the version)")] = None,
    catalog: Annotated[
        Path | None, typer.Option(help="the evaluated catalogue, where the report's path is not readable here")
    ] = None,
) -> None:
    """Register the candidate and gate it against the champion (params: registry.*); prints decision.json."""
    from afmrl.stages import promote

    cfg = cfg_of(ctx)
    if version is not None:
        decision = promote.promote_version(cfg, version, reason=reason, model=model, out_dir=out)
    else:
        from afmrl.commands.headline import write_headline

        decision = promote.run(cfg, encoder, report, out or Path("outputs/promote"), catalog=catalog)
        write_headline("promote", (out or Path("outputs/promote")) / promote.DECISION_FILE)  # for `dvc metrics show`
    verdict = "[bold green]promoted[/]" if decision.promoted else "[bold yellow]not promoted[/]"
    console.print(f"{decision.model} v{decision.version}: {verdict} (champion: v{decision.champion_after})"
                  + "".join(f"\n  - {r}" for r in decision.reasons), highlight=False)  # fmt: skip
    _emit(decision.to_dict(), None)


@guarded
def ui_cmd(
    ctx: typer.Context,
    port: Annotated[int, typer.Option(help="port on 127.0.0.1")] = 5000,
    host: Annotated[str, typer.Option(help="interface (keep 127.0.0.1 unless behind a proxy)")] = "127.0.0.1",
    workers: Annotated[int, typer.Option(help="server worker processes")] = 1,
) -> None:
    """Start the MLflow UI on the configured store (tracking.uri / MLFLOW_TRACKING_URI / sqlite:///mlflow.db)."""
    from afmrl.tracking.ui import serve

    def announce(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    code = serve(cfg_of(ctx).tracking, host=host, port=port, workers=workers, announce=announce)
    if code:
        raise typer.Exit(code)


@guarded
def register_extractor_cmd(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="extractor folder (LoRA adapter or model), e.g. outputs/models/rar")],
    alias: Annotated[str | None, typer.Option(help="alias to point at the new version (default: challenger)")] = None,
) -> None:
    """Register the attribute extractor folder as a version of registry.extractor_name."""
    from afmrl.tracking.registry import register_extractor
    from afmrl.tracking.runs import stage_run

    cfg = cfg_of(ctx)
    if not cfg.tracking.enabled:
        raise ConfigError("registering needs the MLflow registry: tracking.enabled is false", field="tracking.enabled")
    with stage_run(cfg.tracking, "register-extractor") as run_:
        version = register_extractor(run_.client, run_.run_id, folder, cfg.registry.extractor_name)
        alias = alias or cfg.registry.challenger_alias
        run_.client.set_registered_model_alias(cfg.registry.extractor_name, alias, version.version)
    uri = f"models:/{cfg.registry.extractor_name}@{alias}"
    console.print(f"{cfg.registry.extractor_name} v{version.version} ({uri})")
    _emit({"model": cfg.registry.extractor_name, "version": int(version.version), "alias": alias, "uri": uri}, None)


@run_app.command("start")
@guarded
def run_start(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="run name")] = "pipeline",
    catalog: Annotated[Path | None, typer.Option(help="input catalogue, logged as a dataset")] = None,
    pipeline_id: Annotated[str | None, typer.Option(help="orchestrator's run id (default: generated)")] = None,
    out: Annotated[Path | None, typer.Option(help="also write {run_id, pipeline_run_id} here")] = None,
) -> None:
    """Open the parent run; prints `export` lines: `eval "$(afmrl run start)"; dvc repro; afmrl run end`."""
    from afmrl.tracking.pipeline import new_pipeline_run_id, start_pipeline_run
    from afmrl.tracking.runs import PARENT_RUN_ENV, PIPELINE_ID_ENV

    cfg = cfg_of(ctx)
    pid = pipeline_id or os.environ.get(PIPELINE_ID_ENV) or new_pipeline_run_id(name)
    run_id = start_pipeline_run(cfg, name, catalog, pid)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(out, {"run_id": run_id, "pipeline_run_id": pid})
    console.print(f"pipeline run {pid}: MLflow run {run_id}")
    sys.stdout.write(f"export {PARENT_RUN_ENV}={shlex.quote(run_id)}\nexport {PIPELINE_ID_ENV}={shlex.quote(pid)}\n")


@run_app.command("end")
@guarded
def run_end(
    ctx: typer.Context,
    run_id: Annotated[str | None, typer.Option(help="parent run id (default: $AFMRL_PARENT_RUN_ID)")] = None,
    status: Annotated[str | None, typer.Option(help="FINISHED or FAILED (default: FAILED if a stage failed)")] = None,
    report: Annotated[Path, typer.Option(help="evaluation report: its gate metrics go to the parent run")] = Path(
        "outputs/eval/report.json"
    ),
    decision: Annotated[Path, typer.Option(help="promotion decision: promoted (0/1) goes to the parent run")] = Path(
        "outputs/promote/decision.json"
    ),
) -> None:
    """Close the parent run, logging the gate metrics and the decision where their files exist; prints its
    status, the stages under it and those metrics as JSON."""
    from afmrl.tracking.pipeline import end_pipeline_run, pipeline_metrics
    from afmrl.tracking.runs import PARENT_RUN_ENV

    run_id = run_id or os.environ.get(PARENT_RUN_ENV)
    if not run_id:
        raise ConfigError(f"no parent run: pass --run-id or set {PARENT_RUN_ENV}", field="--run-id")
    if status is not None and status.upper() not in ("FINISHED", "FAILED", "KILLED"):
        raise ConfigError(f"--status {status!r}: FINISHED, FAILED or KILLED", field="--status")
    cfg = cfg_of(ctx)
    metrics = pipeline_metrics(report, decision, gate=cfg.registry.gate)
    _emit(end_pipeline_run(cfg.tracking, run_id, status, metrics=metrics), None)


def standalone_app() -> typer.Typer:
    """These commands under afmrl's root options, for use before (or without) cli.py's registration."""
    app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)
    app.callback()(root)
    app.command("promote")(promote_cmd)
    app.command("ui")(ui_cmd)
    app.command("register-extractor")(register_extractor_cmd)
    app.add_typer(run_app, name="run")
    return app


if __name__ == "__main__":
    standalone_app()()
