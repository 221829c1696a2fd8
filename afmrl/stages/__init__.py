"""Stages: one module each, ``afmrl/stages/<name>.py`` with ``run(cfg, inputs..., outputs...)``.

A stage's name is the same everywhere: the dvc.yaml stage, this module, the Kubeflow component
function in components/, the ``afmrl.stage`` tag of its MLflow run and a word of its CLI command
(``STAGES``: name -> the command's words after ``afmrl``; tests/test_stage_vocabulary.py holds them
equal). The CLI commands, DVC stages and components only parse their arguments and call ``run``;
inputs and outputs are arguments, every other parameter comes from params.yaml (``--set`` on the CLI,
``overrides`` in Kubeflow).
"""

from __future__ import annotations

from typing import Any

STAGES: dict[str, tuple[str, ...]] = {
    "ingest": ("data", "ingest"),
    "validate": ("validate",),
    "extract": ("attributes", "extract"),
    "train": ("train",),
    "tiny": ("models", "tiny"),
    "sft": ("models", "sft"),
    "rar": ("models", "rar"),
    "select": ("select",),
    "index": ("index", "build"),
    "evaluate": ("evaluate",),
    "promote": ("promote",),
    "publish": ("index", "publish"),
    "dedup": ("dedup",),
}


def run_component(stage: str, params_yaml: str, overrides: list[str] | None, *args: Any, metrics: Any = None,
                  **kwargs: Any) -> Any:  # fmt: skip
    """What every Kubeflow component does: the configuration from params.yaml's text and the overrides,
    then ``afmrl.stages.<stage>.run(cfg, *args, **kwargs)``; the result's figures go to ``metrics`` (a
    KFP ``Metrics`` artifact) when given. Returns the stage's result."""
    import importlib

    from afmrl.config import config_from_text

    if stage not in STAGES:
        raise KeyError(f"unknown stage {stage!r}; stages: {list(STAGES)}")
    module = importlib.import_module(f"afmrl.stages.{stage}")
    result = module.run(config_from_text(params_yaml, overrides), *args, **kwargs)
    if metrics is not None:
        figures = result.numeric_metrics() if hasattr(result, "numeric_metrics") else result.metrics()
        for key, value in figures.items():
            metrics.log_metric(key, value)
    return result
