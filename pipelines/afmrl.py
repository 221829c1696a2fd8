"""The afmrl pipeline for Kubeflow Pipelines v2, compiled to pipelines/afmrl.yaml.

    python pipelines/afmrl.py                        # compile (the checked-in YAML; a test keeps them equal)
    kfp run create --experiment-name afmrl --package-file pipelines/afmrl.yaml \\
        -p 'overrides=["tracking.uri=http://afmrl-mlflow.afmrl:5000"]'   # submit to a KFP endpoint

Every task calls one afmrl stage through components/; the DAG is the same as dvc.yaml's.
"""


import json
import sys
from pathlib import Path

import yaml
from kfp import compiler, dsl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components import attributes, data, release, train  # noqa: E402

# params.yaml as one line of JSON (valid YAML): KFP's header comment breaks on multi-line defaults
DEFAULT_PARAMS = json.dumps(yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8")), sort_keys=True)


@dsl.pipeline(name="afmrl", description="AFMRL: synth -> validate -> extract -> train -> tiny -> sft -> rar -> index -> "
                                        "evaluate -> promote -> publish")
def afmrl_pipeline(
    params_yaml: str = DEFAULT_PARAMS,
    overrides: list = [],  # noqa: B006 - KFP pipeline parameters are declared with literal defaults
):
    """``params_yaml``: the text of params.yaml; ``overrides``: ["train.steps=500",
    "tracking.uri=http://afmrl-mlflow.afmrl:5000", "index.uri=http://milvus:19530", ...]. Secrets
    (Milvus token, S3 keys) come from the cluster's Secrets as environment, never as parameters."""
    synth = data.synth(params_yaml=params_yaml, overrides=overrides).set_display_name("synthetic catalogue")
    validated = data.validate(params_yaml=params_yaml, overrides=overrides, catalog=synth.outputs["catalog"])
    catalog = validated.outputs["validated"]
    extracted = attributes.extract(params_yaml=params_yaml, overrides=overrides, catalog=catalog)
    trained = train.train(params_yaml=params_yaml, overrides=overrides, catalog=catalog,
                          attributes=extracted.outputs["attributes"])  # fmt: skip
    tiny = attributes.tiny(params_yaml=params_yaml, overrides=overrides, catalog=catalog)
    warm = attributes.sft(params_yaml=params_yaml, overrides=overrides, catalog=catalog, base=tiny.outputs["model"])
    reinforced = attributes.rar(params_yaml=params_yaml, overrides=overrides, catalog=catalog,
                                base=warm.outputs["model"], encoder=trained.outputs["encoder"])  # fmt: skip
    indexed = release.index(params_yaml=params_yaml, overrides=overrides, catalog=catalog,
                            encoder=trained.outputs["encoder"])  # fmt: skip
    evaluated = train.evaluate(params_yaml=params_yaml, overrides=overrides, catalog=catalog,
                               encoder=trained.outputs["encoder"], index_summary=indexed.outputs["summary"])  # fmt: skip
    gate = release.promote(params_yaml=params_yaml, overrides=overrides, encoder=trained.outputs["encoder"],
                           report=evaluated.outputs["report"])  # fmt: skip
    gate.after(reinforced)
    with dsl.If(gate.outputs["Output"] == True, name="promoted"):  # noqa: E712 - a KFP condition, not Python
        published = release.publish(params_yaml=params_yaml, overrides=overrides, decision=gate.outputs["decision"],
                                    encoder=trained.outputs["encoder"])  # fmt: skip

    for task in (trained, warm, reinforced):  # the training steps: GPU nodes
        task.set_cpu_request("4").set_memory_request("16G").set_memory_limit("64G")
        task.set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
    for task in (extracted, indexed, evaluated):
        task.set_cpu_request("2").set_memory_request("8G")
    for task in (synth, validated, extracted, trained, tiny, warm, reinforced, indexed, evaluated, gate, published):
        task.set_caching_options(False)


def compile_pipeline(path: str | Path = ROOT / "pipelines" / "afmrl.yaml") -> Path:
    compiler.Compiler().compile(afmrl_pipeline, str(path))
    return Path(path)


if __name__ == "__main__":
    print(compile_pipeline())
