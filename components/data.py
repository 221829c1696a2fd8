"""Data components: synthetic catalogue and the validation gate."""

from kfp import dsl

from components import COMPONENT


@dsl.component(**COMPONENT)
def synth(params_yaml: str, overrides: list, catalog: dsl.Output[dsl.Dataset]):
    """Write the synthetic catalogue (afmrl data synth)."""
    from afmrl.catalog.synth import generate
    from afmrl.config import config_from_text

    cfg = config_from_text(params_yaml, overrides)
    generate(cfg.synth, cfg.splits, catalog.path)


@dsl.component(**COMPONENT)
def validate(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], validated: dsl.Output[dsl.Dataset],
             report: dsl.Output[dsl.Metrics]):  # fmt: skip
    """Great Expectations gate (afmrl validate): quarantine bad rows, pass the rest on."""
    from afmrl.config import config_from_text
    from afmrl.stages import validate as stage

    result = stage.run(config_from_text(params_yaml, overrides), catalog.path, validated.path)
    for key, value in result.metrics().items():
        report.log_metric(key, value)
