"""Release components: Milvus index, promotion gate, publishing (the serving alias)."""

from kfp import dsl

from components import COMPONENT


@dsl.component(**COMPONENT)
def index(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], encoder: dsl.Input[dsl.Model],
          summary: dsl.Output[dsl.Dataset]):  # fmt: skip
    """Embed the gallery and upsert it into Milvus (afmrl index build; index.uri / MILVUS_URI)."""
    from afmrl.stages import run_component

    run_component("index", params_yaml, overrides, catalog.path, f"{encoder.path}/encoder", summary.path)


@dsl.component(**COMPONENT)
def promote(params_yaml: str, overrides: list, encoder: dsl.Input[dsl.Model], report: dsl.Input[dsl.Dataset],
            decision: dsl.Output[dsl.Dataset]) -> bool:  # fmt: skip
    """Register the candidate and gate it against the champion (afmrl promote); returns whether it was promoted,
    which the pipeline branches on."""
    from afmrl.stages import run_component

    result = run_component("promote", params_yaml, overrides, f"{encoder.path}/encoder", f"{report.path}/report.json",
                           decision.path)  # fmt: skip
    return bool(result.promoted)


@dsl.component(**COMPONENT)
def publish(params_yaml: str, overrides: list, decision: dsl.Input[dsl.Dataset], encoder: dsl.Input[dsl.Model],
            outcome: dsl.Output[dsl.Dataset]):  # fmt: skip
    """Point the serving alias at the promoted encoder's collection (afmrl index publish; atomic in Milvus)."""
    from afmrl.stages import run_component

    run_component("publish", params_yaml, overrides, decision.path, f"{encoder.path}/encoder", outcome.path)
