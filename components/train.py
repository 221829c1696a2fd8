"""Training and evaluation components: the representation model, exact-search evaluation."""

from kfp import dsl

from components import COMPONENT, GPU_COMPONENT


@dsl.component(**GPU_COMPONENT)
def train(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], attributes: dsl.Input[dsl.Dataset],
          encoder: dsl.Output[dsl.Model], metrics: dsl.Output[dsl.Metrics], round: int = 1):  # fmt: skip
    """Train the representation model on the extracted attributes (afmrl train); the Model artifact is the
    output folder (encoder/ inside); ``round``: the loop's round (beyond loop.rounds: skipped)."""
    from afmrl.stages import run_component

    run_component("train", params_yaml, overrides, catalog.path, encoder.path, metrics=metrics,
                  attributes_file=f"{attributes.path}/attributes.parquet", round_=round)  # fmt: skip


@dsl.component(**COMPONENT)
def select(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], round1: dsl.Input[dsl.Model],
           round2: dsl.Input[dsl.Model], candidate: dsl.Output[dsl.Model], metrics: dsl.Output[dsl.Metrics]):  # fmt: skip
    """The candidate: the loop's round with the better primary metric on loop.select_split (afmrl select); the
    Model artifact holds encoder/ (the candidate) and rounds/ (every round's encoder and rounds.json)."""
    from afmrl.stages import run_component

    run_component("select", params_yaml, overrides, catalog.path, [round1.path, round2.path], candidate.path,
                  metrics=metrics)  # fmt: skip


@dsl.component(**COMPONENT)
def evaluate(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], encoder: dsl.Input[dsl.Model],
             index_summary: dsl.Input[dsl.Dataset], report: dsl.Output[dsl.Dataset],
             metrics: dsl.Output[dsl.Metrics]):  # fmt: skip
    """Retrieval metrics, exact and through the Milvus index (afmrl evaluate --index), of the candidate and of
    every round of the loop (``encoder``: the select task's artifact); the report folder is a Dataset."""
    from afmrl.stages import run_component

    run_component("evaluate", params_yaml, overrides, catalog.path, f"{encoder.path}/encoder", report.path,
                  metrics=metrics, index=index_summary.path, rounds=f"{encoder.path}/rounds")  # fmt: skip
