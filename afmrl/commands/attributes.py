"""`afmrl attributes ...`: attribute extraction (rules or MLLM backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from afmrl.commands.common import cfg_of, guarded
from afmrl.progress import console

app = typer.Typer(help="Key attributes: extraction with the rules or the MLLM backend.", no_args_is_help=True)


@app.command("extract")
@guarded
def extract_cmd(
    ctx: typer.Context,
    catalog: Annotated[Path, typer.Argument(help="catalogue folder (validated)")],
    out: Annotated[Path, typer.Option(help="folder for attributes.parquet and report.json")] = Path(
        "data/attributes"
    ),
    model: Annotated[
        Path | None, typer.Option(help="extractor folder (e.g. outputs/models/rar): the mllm backend with this model")
    ] = None,
    round_: Annotated[int, typer.Option("--round", help="the AFMRL loop round (beyond loop.rounds: skipped)")] = 1,
) -> None:
    """Extract attributes of every listing (attributes.backend: rules | mllm; mllm.* for the model)."""
    from afmrl.commands.headline import write_headline
    from afmrl.stages import extract

    r = extract.run(cfg_of(ctx), catalog, out, model=model, round_=round_)
    write_headline("extract", r.report_path)  # metrics.json: what `dvc metrics show` prints
    if r.skipped:
        console.print(f"round {round_} skipped (loop.rounds < {round_}): {r.report_path}")
        return
    line = f"attributes: {r.table_path} ({r.n} listings, {r.generated} generated, {r.cache_hits} from cache"
    line += f", valid JSON {r.valid_rate:.1%})\nreport:     {r.report_path}"
    if "attributes" in r.metrics:
        m = r.metrics["attributes"]
        line += f"\nvs reference: micro F1 {m['micro']['f1']:.3f}, macro F1 {m['macro_f1']:.3f}"
    console.print(line)
