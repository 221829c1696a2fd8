"""Data components: synthetic catalogue and the validation gate."""

from kfp import dsl

from components import COMPONENT


@dsl.component(**COMPONENT)
def synth(params_yaml: str, overrides: list, catalog: dsl.Output[dsl.Dataset], metrics: dsl.Output[dsl.Metrics]):
    """Write the synthetic catalogue (afmrl data synth)."""
    from afmrl.stages import run_component

    run_component("synth", params_yaml, overrides, catalog.path, metrics=metrics)


@dsl.component(**COMPONENT)
def validate(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], validated: dsl.Output[dsl.Dataset],
             report: dsl.Output[dsl.Metrics]):  # fmt: skip
    """Great Expectations gate (afmrl validate): quarantine bad rows, pass the rest on."""
    from afmrl.stages import run_component

    run_component("validate", params_yaml, overrides, catalog.path, validated.path, metrics=report)
