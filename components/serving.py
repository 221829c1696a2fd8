"""Serving components: Milvus index, promotion gate, serving alias."""

from kfp import dsl

from components import COMPONENT


@dsl.component(**COMPONENT)
def index(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], encoder: dsl.Input[dsl.Model],
          summary: dsl.Output[dsl.Dataset]):  # fmt: skip
    """Embed the gallery and upsert it into Milvus (afmrl index build; index.uri / MILVUS_URI)."""
    from afmrl.config import config_from_text
    from afmrl.stages import index as stage

    stage.run(config_from_text(params_yaml, overrides), catalog.path, f"{encoder.path}/encoder", summary.path)


@dsl.component(**COMPONENT)
def promote(params_yaml: str, overrides: list, encoder: dsl.Input[dsl.Model], report: dsl.Input[dsl.Dataset],
            decision: dsl.Output[dsl.Dataset]) -> bool:  # fmt: skip
    """Register the candidate and gate it against the champion (afmrl promote); returns whether it was promoted,
    which the pipeline branches on."""
    from afmrl.config import config_from_text
    from afmrl.stages import promote as stage

    result = stage.run(config_from_text(params_yaml, overrides), f"{encoder.path}/encoder",
                       f"{report.path}/report.json", decision.path)  # fmt: skip
    return bool(result.promoted)


@dsl.component(**COMPONENT)
def serve(params_yaml: str, overrides: list, encoder: dsl.Input[dsl.Model]):
    """Point the serving alias at the promoted encoder's collection (atomic in Milvus)."""
    from afmrl.config import config_from_text
    from afmrl.stages import index as stage

    stage.set_serving_alias(config_from_text(params_yaml, overrides), encoder=f"{encoder.path}/encoder")
