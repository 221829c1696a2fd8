"""RAR stage: reinforce the attribute extractor with GRPO, reward = retrieval improvement.

``run(cfg, catalog_dir, out_dir)``: the extractor ``rar.base_model`` (default: the SFT output) is
trained with LoRA against a frozen representation model (``rar.encoder``); outputs and logged
metrics are described in :mod:`afmrl.training.rar`. ``run_sft`` is the warm start before it.
"""

from __future__ import annotations

from pathlib import Path

from afmrl.config import Config
from afmrl.training.rar import RARResult, run_rar
from afmrl.training.sft import SFTResult
from afmrl.training.sft import run_sft as _run_sft


def run(cfg: Config, catalog_dir: str | Path, out_dir: str | Path | None = None,
        base_model: str | None = None, encoder: str | Path | None = None) -> RARResult:  # fmt: skip
    """``encoder``: the frozen reward encoder (overrides ``rar.encoder``, e.g. the AGCL stage's output)."""
    if encoder is not None:
        cfg = cfg.model_copy(update={"rar": cfg.rar.model_copy(update={"encoder": str(encoder)})})
    return run_rar(cfg, catalog_dir, out_dir, base_model=base_model)


def run_sft(cfg: Config, catalog_dir: str | Path, out_dir: str | Path | None = None,
            base_model: str | None = None) -> SFTResult:  # fmt: skip
    return _run_sft(cfg, catalog_dir, out_dir, base_model=base_model)
