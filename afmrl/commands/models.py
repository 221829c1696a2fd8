"""`afmrl models tiny | sft | rar`: the attribute extractor (tiny offline model, SFT warm start, RAR)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from afmrl.commands.common import cfg_of, guarded
from afmrl.progress import console

app = typer.Typer(help="The attribute extractor: tiny offline model, SFT warm start, RAR.", no_args_is_help=True)


@app.command("tiny")
@guarded
def tiny_cmd(
    ctx: typer.Context,
    catalog: Annotated[Path | None, typer.Option(help="catalogue whose text trains the tokenizer")] = None,
    out: Annotated[Path, typer.Option(help="folder to write (from_pretrained-loadable)")] = Path(
        "outputs/models/tiny-vlm"
    ),
) -> None:
    """Build a tiny random-weight model + tokenizer/processor (params tiny.*; teach it the format with `models sft`)."""
    from afmrl.stages import tiny

    path = tiny.run(cfg_of(ctx), catalog, out)
    console.print(f"tiny {cfg_of(ctx).tiny.kind}: {path}")


@app.command("sft")
@guarded
def sft_cmd(
    ctx: typer.Context,
    catalog: Annotated[Path, typer.Argument(help="catalogue folder (validated)")],
    base: Annotated[str, typer.Option(help="model folder or id to start from")] = "outputs/models/tiny-vlm",
    out: Annotated[Path, typer.Option(help="model folder to write")] = Path("outputs/models/sft"),
) -> None:
    """SFT warm start of the attribute extractor: the JSON answer format (params sft.*)."""
    from afmrl.stages import sft

    r = sft.run(cfg_of(ctx), catalog, base, out)
    console.print(f"extractor: {r.model_dir}  ({r.examples} examples, {r.steps} steps, final loss "
                  f"{r.final_loss:.3f}, {'LoRA' if r.lora else 'full weights'}, {r.seconds:.0f} s)")  # fmt: skip


@app.command("rar")
@guarded
def rar_cmd(
    ctx: typer.Context,
    catalog: Annotated[Path, typer.Argument(help="catalogue folder (validated)")],
    base: Annotated[str, typer.Option(help="extractor to reinforce")] = "outputs/models/sft",
    encoder: Annotated[
        str | None, typer.Option(help="frozen reward encoder: the train stage's encoder folder, a models:/ URI or "
                                 "'pretrained'; default: the registry's champion (models:/afmrl-encoder@champion)")
    ] = None,
    out: Annotated[Path, typer.Option(help="output folder: adapter/, merged model, rar.json")] = Path(
        "outputs/models/rar"
    ),
) -> None:
    """RAR: GRPO + LoRA on the extractor, reward = retrieval improvement under a frozen encoder (params rar.*)."""
    from afmrl.stages import rar

    r = rar.run(cfg_of(ctx), catalog, base, encoder, out)
    console.print(f"adapter: {r.adapter_dir}\nmodel:   {r.model_dir}\n{r.prompts} prompts, gallery {r.gallery}, "
                  f"{r.steps} steps, {r.seconds_per_step:.2f} s/step")  # fmt: skip
