"""Helpers shared by the CLI's command modules (each area's sub-app lives in afmrl/commands/)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from afmrl.config import Config, load_config
from afmrl.errors import AfmrlError, describe_os_error, is_environment_error
from afmrl.progress import console


def cfg_of(ctx: typer.Context) -> Config:
    """The resolved configuration (loaded by the root callback from --params/--set)."""
    return ctx.find_root().obj["config"]


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into one clear line and exit code 2 (no traceback for bad input); so too OS
    errors about a path or the disk (read-only folder, full disk, no permission): the path and the reason."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AfmrlError as exc:
            from afmrl.tracking.redact import scrub  # no credentials on the console, even in errors

            console.print(f"[bold red]error[/] ({type(exc).__name__}): {scrub(exc)}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:  # a read-only folder, a full disk, a path that is not a folder: the path and why
            if not is_environment_error(exc):
                raise
            from rich.markup import escape

            from afmrl.tracking.redact import scrub

            console.print(f"[bold red]error[/] ({type(exc).__name__}): {escape(scrub(describe_os_error(exc)))}",
                          highlight=False, soft_wrap=True)  # fmt: skip
            raise typer.Exit(2) from None

    return wrapper


@guarded
def root(
    ctx: typer.Context,
    params: Annotated[Path, typer.Option("--params", "-p", help="params.yaml to read (the file DVC reads)")] = Path(
        "params.yaml"
    ),
    overrides: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="override a parameter: key.path=value (repeatable)")
    ] = None,
) -> None:
    """afmrl: attribute-guided product embeddings and identical-product search."""
    ctx.obj = {"config": load_config(params, overrides)}


def where_lines(cfg: Config) -> list[str]:
    """Where the main job's outputs are, one line each in pipeline order (printed at the end of the README's
    first command, which lists the same paths; tests/test_cli.py keeps the two equal). Credentials in a
    URI are shown as ***."""
    from afmrl.retrieval.milvus import is_lite, redact_uri
    from afmrl.tracking.redact import scrub

    index_uri = cfg.index.resolved_uri()
    tracking_uri = cfg.tracking.resolved_uri()
    alias = cfg.index.alias
    items = [
        ("input catalogue", "data/catalogue/", "what the ingest stage read (data.format, data.path)"),
        ("validated catalogue", "data/validated/", "rows that passed the gate"),
        ("quarantine", "data/validated/quarantine.parquet", "rows that failed, with reason and field"),
        ("validation report", "data/validated/report.json", ""),
        ("attributes", "data/attributes/", "round 1"),
        ("round 1 encoder", "outputs/rounds/1/", ""),
        ("tiny extractor", "outputs/models/tiny-vlm/", ""),
        ("SFT extractor", "outputs/models/sft/", ""),
        ("RAR extractor", "outputs/models/rar/", ""),
        ("round 2 attributes", "data/attributes-2/", "the RAR extractor's"),
        ("round 2 encoder", "outputs/rounds/2/", ""),
        ("encoder", "outputs/train/encoder/", "the candidate: the better round on validation (rounds/)"),
        ("Milvus index", index_uri, f"alias {alias}; try: afmrl search --text \"...\""),
        ("evaluation report", "outputs/eval/report.json", ""),
        ("evaluation summary", "outputs/eval/summary.md", ""),
        ("promotion decision", "outputs/promote/decision.json", ""),
        ("published", "outputs/publish/publish.json", f"whether alias {alias} moved"),
        ("duplicate groups", "outputs/dedup/", "groups.parquet, review.parquet"),
        ("MLflow store", tracking_uri, "look at it: afmrl ui"),
    ]
    lines = []
    for name, path, hint in items:
        if path.startswith("sqlite:///"):  # the local store: there once its file is
            exists = Path(path[len("sqlite:///"):]).exists()
        elif path.startswith(("http:", "https:", "databricks", "file:")) or (path == index_uri and not is_lite(path)):
            exists = True  # a server: nothing to look for on this machine
        else:
            exists = Path(path).exists()
        shown = scrub(redact_uri(path))
        lines.append(f"{name:20s} {shown}{'' if exists else '  (not there yet)'}" + (f"  ({hint})" if hint else ""))
    return lines
