"""Attribute components: extraction, the tiny offline MLLM, SFT warm start and RAR."""

from kfp import dsl

from components import COMPONENT, GPU_COMPONENT


@dsl.component(**COMPONENT)
def extract(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], attributes: dsl.Output[dsl.Dataset],
            metrics: dsl.Output[dsl.Metrics]):  # fmt: skip
    """Extract key attributes (afmrl attributes extract; attributes.backend: rules | mllm)."""
    from afmrl.config import config_from_text
    from afmrl.stages import extract as stage

    result = stage.run(config_from_text(params_yaml, overrides), catalog.path, attributes.path)
    for key, value in result.numeric_metrics().items():
        metrics.log_metric(key, value)


@dsl.component(**COMPONENT)
def build_tiny_mllm(catalog: dsl.Input[dsl.Dataset], model: dsl.Output[dsl.Model]):
    """A tiny Qwen2-VL from a config (offline clusters; set mllm.model to a real id to skip it)."""
    from afmrl.models.tiny import build_tiny

    build_tiny("vlm", model.path, catalog.path)


@dsl.component(**GPU_COMPONENT)
def sft(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], base: dsl.Input[dsl.Model],
        model: dsl.Output[dsl.Model]):  # fmt: skip
    """SFT warm start of the extractor (afmrl train sft)."""
    from afmrl.config import config_from_text
    from afmrl.stages import rar as stage

    stage.run_sft(config_from_text(params_yaml, overrides), catalog.path, model.path, base_model=base.path)


@dsl.component(**GPU_COMPONENT)
def rar(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], base: dsl.Input[dsl.Model],
        encoder: dsl.Input[dsl.Model], model: dsl.Output[dsl.Model]):  # fmt: skip
    """RAR: GRPO + LoRA with the retrieval reward of the frozen AGCL encoder (afmrl train rar)."""
    from afmrl.config import config_from_text
    from afmrl.stages import rar as stage

    stage.run(config_from_text(params_yaml, overrides), catalog.path, model.path, base_model=base.path,
              encoder=f"{encoder.path}/encoder")  # fmt: skip
