"""`afmrl train ...` (representation model) and `afmrl evaluate`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from afmrl.commands.common import cfg_of, guarded
from afmrl.progress import console

app = typer.Typer(help="Training: the representation model (AGCL and baselines), SFT and RAR.", no_args_is_help=True)


@app.command("agcl")
@guarded
def train_agcl(
    ctx: typer.Context,
    catalog: Annotated[Path, typer.Argument(help="catalogue folder (validated)")],
    out: Annotated[Path, typer.Option(help="output folder: encoder/, checkpoints/, training.json")] = Path(
        "outputs/train"
    ),
    cache: Annotated[Path | None, typer.Option(help="backbone feature cache (default: OUT/feature-cache)")] = None,
) -> None:
    """Train the representation model (train.method: agcl | infonce | gist | oracle). Re-run to resume."""
    from afmrl.stages import train

    result = train.run(cfg_of(ctx), catalog, out, cache_dir=cache)
    console.print(f"encoder: {result.encoder_dir}\nsummary: {result.summary_path}  "
                  f"(final loss {result.result.final_loss:.4f}, {result.result.samples_per_s:,.0f} samples/s)")  # fmt: skip


def evaluate_command(
    ctx: typer.Context,
    catalog: Annotated[Path, typer.Argument(help="catalogue folder")],
    encoder: Annotated[Path, typer.Option(help="encoder folder (from `afmrl train agcl`)")] = Path(
        "outputs/train/encoder"
    ),
    out: Annotated[Path, typer.Option(help="report folder")] = Path("outputs/eval"),
    cache: Annotated[Path | None, typer.Option(help="backbone feature cache")] = None,
) -> None:
    """Retrieval metrics (exact search): R@1/5/10, mAP@10, MRR per task, per category; JSON, Markdown, plots."""
    from afmrl.stages import evaluate

    result = evaluate.run(cfg_of(ctx), catalog, encoder, out, cache_dir=cache)
    m = result.result.metrics
    console.print(f"report: {result.report_path}  listing_R@1={m.get('listing_R@1', float('nan')):.3f}")


evaluate_cmd = guarded(evaluate_command)
