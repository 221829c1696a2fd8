"""Helpers shared by the SFT and RAR trainers (transformers / trl / peft)."""

from __future__ import annotations

import dataclasses
import difflib
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from afmrl.errors import ConfigError
from afmrl.tracking.runs import StageRun

BUILD_INFO = "afmrl_build.json"


class StageRunCallback(TrainerCallback):
    """Send every trainer log (loss, rewards, KL, lengths...) to the stage's MLflow run, step-wise.

    ``extras()`` adds metrics the trainer does not compute (e.g. the valid-JSON rate gathered by the
    reward functions since the last log); everything logged is also kept in ``history``.
    """

    def __init__(self, run: StageRun, extras: Callable[[], dict[str, float]] | None = None) -> None:
        self.run = run
        self.extras = extras
        self.history: list[dict[str, float]] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        merged = dict(logs or {})
        if self.extras is not None:
            merged.update(self.extras())
        logged = self.run.log_step(merged, step=int(state.global_step))  # the numbers, even with tracking off
        self.history.append({"step": int(state.global_step), **logged})


class ConsoleProgressCallback(TrainerCallback):
    """One line per trainer log on afmrl's console (stderr): ``sft step 3/10  loss 1.2345`` (RAR: the reward
    too), so a long SFT or RAR run shows how far it is; ``AFMRL_PROGRESS=off`` silences it."""

    SHOWN = ("loss", "reward", "reward_std", "kl", "learning_rate")

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: list[str] = []

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        from afmrl.progress import console, progress_enabled

        logs = logs or {}
        figures = [f"{k} {logs[k]:.4g}" for k in self.SHOWN if isinstance(logs.get(k), int | float)]
        if not figures:
            return
        total = int(state.max_steps or 0)
        line = f"{self.name} step {int(state.global_step)}" + (f"/{total}" if total > 0 else "") + "  " + "  ".join(figures)
        self.lines.append(line)
        if progress_enabled():
            console.print(line, highlight=False, soft_wrap=True)


def is_tiny(model_path: str | Path) -> bool:
    """A folder built by :mod:`afmrl.models.tiny` (or trained from one): full fine-tuning is cheap."""
    return (Path(str(model_path)) / BUILD_INFO).is_file()


def wants_lora(method: str, model_path: str | Path) -> bool:
    """``sft.method``: ``lora``, ``full``, or ``auto`` (full weights for a tiny model, LoRA otherwise)."""
    return method == "lora" or (method == "auto" and not is_tiny(model_path))


def lora_config(r: int, alpha: int, dropout: float, target_modules: list[str]) -> Any:
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                      bias="none", task_type="CAUSAL_LM")  # fmt: skip


def save_extractor(model: Any, processor: Any, out_dir: str | Path, base: str | Path) -> Path:
    """Save weights + processor as a folder ``load_mllm`` reads; carries the tiny build info over."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    info = Path(str(base)) / BUILD_INFO
    if info.is_file():
        shutil.copy2(info, out / BUILD_INFO)
    return out


def training_device_args(device: str) -> dict[str, Any]:
    """CPU: no bf16, no gradient checkpointing, ``use_cpu`` (FIELD-NOTES: GRPO on CPU)."""
    import torch

    cpu = device == "cpu" or not torch.cuda.is_available()
    bf16 = (not cpu) and torch.cuda.is_bf16_supported()
    return {"use_cpu": cpu, "bf16": bf16, "activation_checkpointing": False,  # (gradient_checkpointing before 5.x)
            "dataloader_num_workers": 0, "report_to": "none", "save_strategy": "no", "disable_tqdm": True}  # fmt: skip


def trl_args(config_cls: type, section: str, given: Mapping[str, Any], device: str, **ours: Any) -> Any:
    """trl's own configuration (``trl.SFTConfig`` / ``trl.GRPOConfig``) from ``<section>.trl``: the
    device settings (:func:`training_device_args`), then the user's keys (trl's field names, defaults
    filled in by the config), then ``ours`` (what afmrl sets itself: ``output_dir``, ``seed``...).

    A key that is not a field of ``config_cls`` is a :class:`ConfigError` naming ``<section>.trl.<key>``;
    so is a value trl rejects (naming ``<section>.trl``)."""
    names = {f.name for f in dataclasses.fields(config_cls) if f.init}
    for key in given:
        if key not in names:
            close = difflib.get_close_matches(key, sorted(names), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"not a field of trl.{config_cls.__name__}{hint}", field=f"{section}.trl.{key}")
    try:
        return config_cls(**{**training_device_args(device), **given, **ours})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"trl.{config_cls.__name__} rejects these settings: {exc}", field=f"{section}.trl") from None
