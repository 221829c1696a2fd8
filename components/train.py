"""Training and evaluation components: the representation model, exact-search evaluation."""

from kfp import dsl

from components import COMPONENT, GPU_COMPONENT


@dsl.component(**GPU_COMPONENT)
def train(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], attributes: dsl.Input[dsl.Dataset],
          encoder: dsl.Output[dsl.Model], metrics: dsl.Output[dsl.Metrics]):  # fmt: skip
    """Train the representation model on the extracted attributes (afmrl train); the Model artifact is the
    output folder (encoder/ inside)."""
    from afmrl.stages import run_component

    run_component("train", params_yaml, overrides, catalog.path, encoder.path, metrics=metrics,
                  attributes_file=f"{attributes.path}/attributes.parquet")  # fmt: skip


@dsl.component(**COMPONENT)
def evaluate(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], encoder: dsl.Input[dsl.Model],
             index_summary: dsl.Input[dsl.Dataset], report: dsl.Output[dsl.Dataset],
             metrics: dsl.Output[dsl.Metrics]):  # fmt: skip
    """Retrieval metrics, exact and through the Milvus index (afmrl evaluate --index); the report folder is a
    Dataset."""
    from afmrl.stages import run_component

    run_component("evaluate", params_yaml, overrides, catalog.path, f"{encoder.path}/encoder", report.path,
                  metrics=metrics, index=index_summary.path)  # fmt: skip
