"""Training and evaluation components: AGCL training, exact-search evaluation."""

from kfp import dsl

from components import COMPONENT, GPU_COMPONENT


@dsl.component(**GPU_COMPONENT)
def train_agcl(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], attributes: dsl.Input[dsl.Dataset],
               encoder: dsl.Output[dsl.Model], metrics: dsl.Output[dsl.Metrics]):  # fmt: skip
    """Train the representation model on the extracted attributes (afmrl train agcl); the Model artifact is
    the output folder (encoder/ inside)."""
    from afmrl.config import config_from_text
    from afmrl.stages import train as stage

    result = stage.run(config_from_text(params_yaml, overrides), catalog.path, encoder.path,
                       attributes_file=f"{attributes.path}/attributes.parquet")  # fmt: skip
    for key, value in result.metrics().items():
        metrics.log_metric(key, value)


@dsl.component(**COMPONENT)
def evaluate(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], encoder: dsl.Input[dsl.Model],
             index_summary: dsl.Input[dsl.Dataset], report: dsl.Output[dsl.Dataset],
             metrics: dsl.Output[dsl.Metrics]):  # fmt: skip
    """Retrieval metrics, exact and through the Milvus index (afmrl evaluate); the report folder is a Dataset."""
    from afmrl.config import config_from_text
    from afmrl.stages import evaluate as stage

    result = stage.run(config_from_text(params_yaml, overrides), catalog.path, f"{encoder.path}/encoder", report.path,
                       with_index=True)  # fmt: skip
    for key, value in result.metrics().items():
        metrics.log_metric(key, value)
