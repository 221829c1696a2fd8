"""`afmrl serve`: the search service and its web page (registered in afmrl/cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from afmrl.commands.common import cfg_of, guarded
from afmrl.config import ServeConfig
from afmrl.errors import ConfigError
from afmrl.progress import console


@guarded
def serve_cmd(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="address (default: serve.host)")] = None,
    port: Annotated[int | None, typer.Option(help="port, 0 for any free one (default: serve.port)")] = None,
    encoder: Annotated[str | None, typer.Option(help="pin an encoder (folder or MLflow URI) instead of following "
                                                     "the registry's champion")] = None,  # fmt: skip
    catalog: Annotated[Path | None, typer.Option(help="catalogue folder for listing images (default: the "
                                                      "index's)")] = None,  # fmt: skip
    dedup: Annotated[Path | None, typer.Option(help="the dedup job's folder or Parquet for the review page (default: serve.dedup, outputs/dedup)")] = None,
) -> None:
    """Serve identical-product search over HTTP: POST /search, GET /listings/{id}/similar, /health, /metrics,
    and the pages / and /dedup. Loads models:/afmrl-encoder@champion once and follows it without a restart."""
    from afmrl.serving.server import serve

    cfg = cfg_of(ctx)
    updates = {k: v for k, v in {"host": host, "port": port, "encoder": encoder,
                                 "catalog": str(catalog) if catalog else None,
                                 "dedup": str(dedup) if dedup else None}.items() if v is not None}  # fmt: skip
    try:
        section = ServeConfig.model_validate({**cfg.serve.model_dump(), **updates})
    except ValidationError as exc:
        raise ConfigError(f"serve: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}", field="serve") from None
    cfg = cfg.model_copy(update={"serve": section})

    def ready(address: str, state) -> None:  # noqa: ANN001
        s = state.current
        console.print(f"afmrl serve: {address}  (collection {s.collection}, encoder {s.encoder_ref}"
                      f"{f' v{s.version}' if s.version else ''}, {state.index.where})\n"
                      f"  page: {address}/   duplicate review: {address}/dedup   API: {address}/docs",
                      highlight=False, soft_wrap=True)  # fmt: skip

    serve(cfg, on_ready=ready)
