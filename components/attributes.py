"""Attribute components: extraction, the tiny offline MLLM, SFT warm start and RAR."""

from kfp import dsl

from components import COMPONENT, GPU_COMPONENT


@dsl.component(**COMPONENT)
def extract(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], attributes: dsl.Output[dsl.Dataset],
            metrics: dsl.Output[dsl.Metrics], model: dsl.Input[dsl.Model] = None, round: int = 1):  # fmt: skip
    """Extract key attributes (afmrl attributes extract; attributes.backend: rules | mllm); ``model``: an
    extractor (round 2 of the loop: RAR's), ``round``: the loop's round (beyond loop.rounds: skipped)."""
    from afmrl.stages import run_component

    run_component("extract", params_yaml, overrides, catalog.path, attributes.path, metrics=metrics,
                  model=model.path if model is not None else None, round_=round)  # fmt: skip


@dsl.component(**COMPONENT)
def tiny(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], model: dsl.Output[dsl.Model]):
    """A tiny Qwen2-VL from a config (afmrl models tiny; offline clusters: a real model id skips it)."""
    from afmrl.stages import run_component

    run_component("tiny", params_yaml, overrides, catalog.path, model.path)


@dsl.component(**GPU_COMPONENT)
def sft(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], base: dsl.Input[dsl.Model],
        model: dsl.Output[dsl.Model]):  # fmt: skip
    """SFT warm start of the extractor (afmrl models sft)."""
    from afmrl.stages import run_component

    run_component("sft", params_yaml, overrides, catalog.path, base.path, model.path)


@dsl.component(**GPU_COMPONENT)
def rar(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], base: dsl.Input[dsl.Model],
        encoder: dsl.Input[dsl.Model], model: dsl.Output[dsl.Model]):  # fmt: skip
    """RAR: GRPO + LoRA with the retrieval reward of the frozen AGCL encoder (afmrl models rar)."""
    from afmrl.stages import run_component

    run_component("rar", params_yaml, overrides, catalog.path, base.path, f"{encoder.path}/encoder", model.path)
