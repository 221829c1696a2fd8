"""`afmrl models ...`: build the tiny extractor models used on CPU (tests, smoke runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from afmrl.commands.common import guarded
from afmrl.progress import console

app = typer.Typer(help="Extractor models: tiny Qwen2-VL / Qwen2 built from configs.", no_args_is_help=True)


@app.command("build-tiny")
@guarded
def build_tiny_cmd(
    out: Annotated[Path, typer.Option(help="folder to write (from_pretrained-loadable)")] = Path(
        "outputs/models/tiny-vlm"
    ),
    kind: Annotated[str, typer.Option(help="vlm (Qwen2-VL) or lm (text-only Qwen2)")] = "vlm",
    catalog: Annotated[Path | None, typer.Option(help="catalogue whose text trains the tokenizer")] = None,
    vocab_size: Annotated[int, typer.Option(help="BPE vocabulary size")] = 2048,
    seed: Annotated[int, typer.Option(help="weight initialisation seed")] = 0,
) -> None:
    """Build a tiny random-weight model + tokenizer/processor (teach it the format with `train sft`)."""
    from afmrl.errors import ConfigError
    from afmrl.models.tiny import build_tiny

    if kind not in ("vlm", "lm"):
        raise ConfigError(f"--kind must be vlm or lm, got {kind!r}", field="kind")
    path = build_tiny(kind, out, catalog, vocab_size=vocab_size, seed=seed)
    console.print(f"tiny {kind}: {path}")
