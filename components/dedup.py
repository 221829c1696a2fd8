"""De-duplication component: groups of identical listings and the review queue (afmrl dedup)."""

from kfp import dsl

from components import COMPONENT


@dsl.component(**COMPONENT)
def dedup(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], encoder: dsl.Input[dsl.Model],
          groups: dsl.Output[dsl.Dataset], metrics: dsl.Output[dsl.Metrics]):  # fmt: skip
    """Calibrate the duplicate threshold on the catalogue's product ids and group the listings (afmrl dedup):
    groups.parquet, review.parquet and dedup.json in ``groups``."""
    from afmrl.stages import run_component

    run_component("dedup", params_yaml, overrides, catalog.path, f"{encoder.path}/encoder", groups.path,
                  metrics=metrics)  # fmt: skip
