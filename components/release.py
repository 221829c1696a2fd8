"""Release components: sharded embedding and the Milvus index, promotion gate, publishing (the serving alias)."""

from typing import List  # noqa: UP035 - KFP's component signature parser reads typing.List

from kfp import dsl

from components import COMPONENT


@dsl.component(**COMPONENT)
def shard_plan(shards: int) -> list:
    """The shard numbers 0 .. shards-1, for the embedding fan-out (dsl.ParallelFor)."""
    from afmrl.retrieval.shards import shard_list

    return shard_list(shards)


@dsl.component(**COMPONENT)
def embed(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], encoder: dsl.Input[dsl.Model],
          shard: int, shards: int, vectors: dsl.Output[dsl.Dataset]):  # fmt: skip
    """Embed one shard of the gallery into a vectors file (the index stage in shard mode; no Milvus)."""
    from afmrl.stages import run_component

    run_component("index", params_yaml, overrides, catalog.path, f"{encoder.path}/encoder", vectors.path, shard=shard,
                  shards=shards)  # fmt: skip


@dsl.component(**COMPONENT)
def index(params_yaml: str, overrides: list, catalog: dsl.Input[dsl.Dataset], encoder: dsl.Input[dsl.Model],
          vectors: dsl.Input[List[dsl.Dataset]], summary: dsl.Output[dsl.Dataset]):  # noqa: UP006 # fmt: skip
    """Load the shards' vectors into the encoder's collection in Milvus (afmrl index build; index.uri /
    MILVUS_URI): listings already there with the same content digest stay, the rest are upserted."""
    from afmrl.stages import run_component

    run_component("index", params_yaml, overrides, catalog.path, f"{encoder.path}/encoder", summary.path,
                  vectors=[v.path for v in vectors])  # fmt: skip


@dsl.component(**COMPONENT)
def promote(params_yaml: str, overrides: list, encoder: dsl.Input[dsl.Model], report: dsl.Input[dsl.Dataset],
            catalog: dsl.Input[dsl.Dataset], decision: dsl.Output[dsl.Dataset]) -> bool:  # fmt: skip
    """Register the candidate and gate it against the champion, re-scored on the evaluated catalogue (afmrl
    promote); returns whether it was promoted, which the pipeline branches on."""
    from afmrl.stages import run_component

    result = run_component("promote", params_yaml, overrides, f"{encoder.path}/encoder", f"{report.path}/report.json",
                           decision.path, catalog=catalog.path)  # fmt: skip
    return bool(result.promoted)


@dsl.component(**COMPONENT)
def publish(params_yaml: str, overrides: list, decision: dsl.Input[dsl.Dataset], encoder: dsl.Input[dsl.Model],
            outcome: dsl.Output[dsl.Dataset]):  # fmt: skip
    """Point the serving alias at the promoted encoder's collection (afmrl index publish; atomic in Milvus)."""
    from afmrl.stages import run_component

    run_component("publish", params_yaml, overrides, decision.path, f"{encoder.path}/encoder", outcome.path)
