"""`afmrl train sft` and `afmrl train rar`: the extractor's warm start and its reinforcement.

The functions are registered on the `train` sub-app in afmrl/cli.py::

    from afmrl.commands import rar as rar_commands
    train_commands.app.command("sft")(rar_commands.train_sft)
    train_commands.app.command("rar")(rar_commands.train_rar)
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from afmrl.commands.common import cfg_of, guarded
from afmrl.progress import console


@guarded
def train_sft(
    ctx: typer.Context,
    catalog: Annotated[Path, typer.Argument(help="catalogue folder (validated)")],
    out: Annotated[Path | None, typer.Option(help="model folder to write (default: sft.output_dir)")] = None,
    base: Annotated[str | None, typer.Option(help="model folder or id to start from (default: mllm.model)")] = None,
) -> None:
    """SFT warm start of the attribute extractor: the JSON answer format (sft.*)."""
    from afmrl.stages import rar

    r = rar.run_sft(cfg_of(ctx), catalog, out, base_model=base)
    console.print(f"extractor: {r.model_dir}  ({r.examples} examples, {r.steps} steps, final loss "
                  f"{r.final_loss:.3f}, {'LoRA' if r.lora else 'full weights'}, {r.seconds:.0f} s)")  # fmt: skip


@guarded
def train_rar(
    ctx: typer.Context,
    catalog: Annotated[Path, typer.Argument(help="catalogue folder (validated)")],
    out: Annotated[Path | None, typer.Option(help="output folder (default: rar.output_dir)")] = None,
    base: Annotated[str | None, typer.Option(help="extractor to reinforce (default: rar.base_model or SFT)")] = None,
) -> None:
    """RAR: GRPO + LoRA on the extractor, reward = retrieval improvement under a frozen encoder (rar.*)."""
    from afmrl.stages import rar

    r = rar.run(cfg_of(ctx), catalog, out, base_model=base)
    console.print(f"adapter: {r.adapter_dir}\nmodel:   {r.model_dir}\n{r.prompts} prompts, gallery {r.gallery}, "
                  f"{r.steps} steps, {r.seconds_per_step:.2f} s/step")  # fmt: skip
