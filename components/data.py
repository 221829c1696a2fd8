"""Data components: the source digest, the input catalogue (ingest) and the validation gate."""

from kfp import dsl

from components import COMPONENT


@dsl.component(**COMPONENT)
def digest(params_yaml: str, overrides: list, data_format: str, data_path: str, data_columns: str) -> str:
    """The content digest of the input catalogue's source (the ingest task's cache key; never cached itself)."""
    from afmrl.stages.ingest import source_fingerprint

    return source_fingerprint(params_yaml, overrides, data_format, data_path, data_columns)


@dsl.component(**COMPONENT)
def ingest(params_yaml: str, overrides: list, data_format: str, data_path: str, data_columns: str, source_digest: str,
           catalog: dsl.Output[dsl.Dataset], metrics: dsl.Output[dsl.Metrics]):  # fmt: skip
    """The input catalogue from data_format / data_path / data_columns (afmrl data ingest; empty: params.yaml's)."""
    from afmrl.stages import run_component

    run_component("ingest", params_yaml, overrides, catalog.path, data_format=data_format, data_path=data_path,
                  data_columns=data_columns, digest=source_digest, metrics=metrics)  # fmt: skip


@dsl.component(**COMPONENT)
def validate(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], validated: dsl.Output[dsl.Dataset],
             report: dsl.Output[dsl.Metrics]):  # fmt: skip
    """Great Expectations gate (afmrl validate): quarantine bad rows, pass the rest on."""
    from afmrl.stages import run_component

    run_component("validate", params_yaml, overrides, catalog.path, validated.path, metrics=report)
