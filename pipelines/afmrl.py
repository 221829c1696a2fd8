"""The afmrl pipeline for Kubeflow Pipelines v2, compiled to pipelines/afmrl.yaml.

    python pipelines/afmrl.py                        # compile (the checked-in YAML; a test keeps them equal)
    kfp run create --experiment-name afmrl --package-file pipelines/afmrl.yaml \\
        'overrides=["tracking.uri=http://afmrl-mlflow.afmrl:5000"]' \\
        data_format=offers data_path=s3://shop/feed.csv 'data_columns={"id": "sku", "title": "name"}'

(submit to a KFP endpoint: parameters as key=value). Every task calls one afmrl stage through components/;
the DAG is the same as dvc.yaml's.
"""


import json
import sys
from pathlib import Path

import yaml
from kfp import compiler, dsl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components import attributes, data, release, train  # noqa: E402
from components import dedup as dedup_component  # noqa: E402

# params.yaml as one line of JSON (valid YAML): KFP's header comment breaks on multi-line defaults
DEFAULT_PARAMS = json.dumps(yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8")), sort_keys=True)


@dsl.pipeline(name="afmrl", description="AFMRL: ingest -> validate -> extract -> train -> tiny -> sft -> rar -> "
                                        "extract (round 2) -> train (round 2) -> select -> index -> evaluate -> "
                                        "promote -> publish")
def afmrl_pipeline(
    params_yaml: str = DEFAULT_PARAMS,
    overrides: list = [],  # noqa: B006 - KFP pipeline parameters are declared with literal defaults
    data_format: str = "synthetic",
    data_path: str = "",
    data_columns: str = "{}",
    shards: int = 1,
):
    """``params_yaml``: the text of params.yaml; ``overrides``: ["train.steps=500",
    "tracking.uri=http://afmrl-mlflow.afmrl:5000", "index.uri=http://milvus:19530", ...]. Secrets
    (Milvus token, S3 keys) come from the cluster's Secrets as environment, never as parameters.
    ``data_format`` / ``data_path`` (any URI the cluster reads through fsspec) / ``data_columns`` (a JSON
    mapping, e.g. {"id": "sku", "title": "name", "attr": {"size": "size"}}): the input catalogue, as
    ``data.*`` in params.yaml (an empty path or ``{}`` keeps params_yaml's). ``shards``: parallel embedding
    tasks over the gallery (listings split by a hash of their id)."""
    data_settings = {"data_format": data_format, "data_path": data_path, "data_columns": data_columns}
    source = data.digest(params_yaml=params_yaml, overrides=overrides, **data_settings).set_display_name("source digest")
    ingested = data.ingest(params_yaml=params_yaml, overrides=overrides, **data_settings, source_digest=source.output)
    validated = data.validate(params_yaml=params_yaml, overrides=overrides, catalog=ingested.outputs["catalog"])
    catalog = validated.outputs["validated"]
    extracted = attributes.extract(params_yaml=params_yaml, overrides=overrides, catalog=catalog)
    trained = train.train(params_yaml=params_yaml, overrides=overrides, catalog=catalog,
                          attributes=extracted.outputs["attributes"])  # fmt: skip
    tiny = attributes.tiny(params_yaml=params_yaml, overrides=overrides, catalog=catalog)
    warm = attributes.sft(params_yaml=params_yaml, overrides=overrides, catalog=catalog, base=tiny.outputs["model"])
    reinforced = attributes.rar(params_yaml=params_yaml, overrides=overrides, catalog=catalog,
                                base=warm.outputs["model"], encoder=trained.outputs["encoder"])  # fmt: skip
    # round 2 of the loop (loop.rounds: 2): re-extract with the reinforced extractor, retrain on its attributes
    extracted2 = attributes.extract(params_yaml=params_yaml, overrides=overrides, catalog=catalog,
                                    model=reinforced.outputs["model"], round=2).set_display_name("extract (round 2)")
    trained2 = train.train(params_yaml=params_yaml, overrides=overrides, catalog=catalog,
                           attributes=extracted2.outputs["attributes"], round=2).set_display_name("train (round 2)")
    selected = train.select(params_yaml=params_yaml, overrides=overrides, catalog=catalog,
                            round1=trained.outputs["encoder"], round2=trained2.outputs["encoder"])  # fmt: skip
    candidate = selected.outputs["candidate"]
    # the gallery is embedded in `shards` parallel tasks (each a vectors file); the index task loads them all
    plan = release.shard_plan(shards=shards).set_display_name("shard plan")
    with dsl.ParallelFor(plan.output, name="shards") as shard:
        embedded = release.embed(params_yaml=params_yaml, overrides=overrides, catalog=catalog, encoder=candidate,
                                 shard=shard, shards=shards)  # fmt: skip
        embedded.set_cpu_request("2").set_memory_request("8G").set_caching_options(True)
    indexed = release.index(params_yaml=params_yaml, overrides=overrides, catalog=catalog, encoder=candidate,
                            vectors=dsl.Collected(embedded.outputs["vectors"]))  # fmt: skip
    evaluated = train.evaluate(params_yaml=params_yaml, overrides=overrides, catalog=catalog, encoder=candidate,
                               index_summary=indexed.outputs["summary"])  # fmt: skip
    gate = release.promote(params_yaml=params_yaml, overrides=overrides, encoder=candidate,
                           report=evaluated.outputs["report"], catalog=catalog)  # fmt: skip
    with dsl.If(gate.outputs["Output"] == True, name="promoted"):  # noqa: E712 - a KFP condition, not Python
        published = release.publish(params_yaml=params_yaml, overrides=overrides, decision=gate.outputs["decision"],
                                    encoder=candidate)  # fmt: skip
    # duplicate groups + review queue from the candidate encoder (a temporary Milvus Lite unless dedup.uri)
    deduped = dedup_component.dedup(params_yaml=params_yaml, overrides=overrides, catalog=catalog, encoder=candidate)
    deduped.after(indexed).set_cpu_request("2").set_memory_request("8G").set_caching_options(True)

    for task in (trained, warm, reinforced, trained2):  # the training steps: GPU nodes
        task.set_cpu_request("4").set_memory_request("16G").set_memory_limit("64G")
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
    for task in (extracted, extracted2, selected, indexed, evaluated):
        task.set_cpu_request("2").set_memory_request("8G")
    # KFP's cache where a task's inputs are content-addressed: the ingest task's key is the source digest, and
    # every task after it reads artifacts of cached tasks, so an unchanged catalogue skips them all. Off where a
    # task reads or moves outside state: the digest itself, Milvus (index, evaluate: a collection may be gone),
    # the registry (evaluate re-scores the champion; promote and publish move aliases).
    for task in (ingested, validated, extracted, trained, tiny, warm, reinforced, extracted2, trained2, selected):
        task.set_caching_options(True)
    for task in (source, indexed, evaluated, gate, published):
        task.set_caching_options(False)


def compile_pipeline(path: str | Path = ROOT / "pipelines" / "afmrl.yaml") -> Path:
    compiler.Compiler().compile(afmrl_pipeline, str(path))
    return Path(path)


if __name__ == "__main__":
    print(compile_pipeline())
