"""Helpers shared by the CLI's command modules (each area's sub-app lives in afmrl/commands/)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from afmrl.config import Config, load_config
from afmrl.errors import AfmrlError
from afmrl.progress import console


def cfg_of(ctx: typer.Context) -> Config:
    """The resolved configuration (loaded by the root callback from --params/--set)."""
    return ctx.find_root().obj["config"]


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn library errors into one clear line and exit code 2 (no traceback for bad input)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AfmrlError as exc:
            from afmrl.tracking.redact import scrub  # no credentials on the console, even in errors

            console.print(f"[bold red]error[/] ({type(exc).__name__}): {scrub(exc)}", highlight=False, soft_wrap=True)
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
    """Where the main job's outputs are (printed at the end of the README's first command)."""
    import os

    index_uri = cfg.index.uri or os.environ.get("MILVUS_URI") or "outputs/milvus.db"
    items = [
        ("MLflow store", cfg.tracking.resolved_uri(), "look at it: afmrl ui"),
        ("Milvus index", index_uri, f"alias {cfg.index.alias}; try: afmrl search --text \"...\""),
        ("evaluation report", "outputs/eval/report.json", "and outputs/eval/summary.md"),
        ("promotion decision", "outputs/promote/decision.json", ""),
        ("published", "outputs/publish/publish.json", f"whether alias {cfg.index.alias} moved"),
        ("validated catalogue", "data/validated/listings.parquet", "quarantine: data/validated/quarantine.parquet"),
    ]
    lines = []
    for name, path, hint in items:
        exists = path.startswith(("sqlite:", "http")) or Path(path).exists()
        lines.append(f"{name:20s} {path}{'' if exists else '  (not there yet)'}" + (f"  ({hint})" if hint else ""))
    return lines
