"""`afmrl train` (the representation model: train.method agcl | infonce | gist | oracle) and `afmrl evaluate`.

Registered in afmrl/cli.py with ``app.command("train")(train_cmd)``, ``app.command("select")(select_cmd)`` and
``app.command("evaluate")(evaluate_cmd)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from afmrl.commands.common import cfg_of, guarded
from afmrl.progress import console


@guarded
def train_cmd(
    ctx: typer.Context,
    catalog: Annotated[Path, typer.Argument(help="catalogue folder (validated)")],
    out: Annotated[Path, typer.Option(help="output folder: encoder/, checkpoints/, training.json")] = Path(
        "outputs/train"
    ),
    attributes: Annotated[
        Path | None, typer.Option(help="the extract stage's attributes.parquet (default: encoder.attributes_source)")
    ] = None,
    cache: Annotated[Path | None, typer.Option(help="backbone feature cache (default: OUT/feature-cache)")] = None,
    round_: Annotated[int, typer.Option("--round", help="the AFMRL loop round (beyond loop.rounds: skipped)")] = 1,
) -> None:
    """Train the representation model (params train.*: train.method agcl | infonce | gist | oracle). Re-run to resume."""
    from afmrl.stages import train

    result = train.run(cfg_of(ctx), catalog, out, cache_dir=cache, attributes_file=attributes, round_=round_)
    if result.result is None:
        console.print(f"round {round_} skipped (loop.rounds < {round_}): {result.summary_path}")
        return
    console.print(f"encoder: {result.encoder_dir}\nsummary: {result.summary_path}  "
                  f"(final loss {result.result.final_loss:.4f}, {result.result.samples_per_s:,.0f} samples/s)")  # fmt: skip


@guarded
def evaluate_cmd(
    ctx: typer.Context,
    catalog: Annotated[Path, typer.Argument(help="catalogue folder")],
    encoder: Annotated[Path, typer.Option(help="encoder folder (from `afmrl train`)")] = Path("outputs/train/encoder"),
    out: Annotated[Path, typer.Option(help="report folder")] = Path("outputs/eval"),
    index: Annotated[
        Path | None, typer.Option(help="the index stage's index.json: also score retrieval through Milvus")
    ] = None,
    cache: Annotated[Path | None, typer.Option(help="backbone feature cache")] = None,
    rounds: Annotated[
        Path | None, typer.Option(help="the select stage's rounds/ folder: score every round of the loop too")
    ] = None,
) -> None:
    """Retrieval metrics (exact search): R@1/5/10, mAP@10, MRR per task, per category; JSON, Markdown, plots."""
    from afmrl.commands.headline import write_headline
    from afmrl.stages import evaluate

    result = evaluate.run(cfg_of(ctx), catalog, encoder, out, cache_dir=cache, index=index, rounds=rounds)
    write_headline("evaluate", result.report_path)  # metrics.json: what `dvc metrics show` prints
    m = result.result.metrics
    console.print(f"report: {result.report_path}  listing_R@1={m.get('listing_R@1', float('nan')):.3f}")


@guarded
def select_cmd(
    ctx: typer.Context,
    catalog: Annotated[Path, typer.Argument(help="catalogue folder (validated)")],
    round_dirs: Annotated[list[Path], typer.Option("--round", help="a round's train folder, in round order")],
    out: Annotated[Path, typer.Option(help="output folder: encoder/ (the candidate) and rounds/")] = Path(
        "outputs/train"
    ),
    cache: Annotated[Path | None, typer.Option(help="backbone feature cache")] = None,
) -> None:
    """The candidate: the loop's round with the better primary metric on loop.select_split (params loop.*)."""
    from afmrl.stages import select

    result = select.run(cfg_of(ctx), catalog, round_dirs, out, cache_dir=cache)
    for r in result.rounds:
        mark = "  <- candidate" if r["selected"] else ""
        console.print(f"round {r['round']}: {r['select']['metric']}={r['select']['value']:.3f} on "
                      f"{r['select']['split']} (attributes: {(r.get('attributes') or {}).get('source')}){mark}")  # fmt: skip
    console.print(f"candidate: {result.encoder_dir}\nrounds:    {result.rounds_path}")
