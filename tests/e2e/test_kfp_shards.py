"""The sharded embedding fan-out under kfp.local: shard_plan -> dsl.ParallelFor(embed) -> index with
dsl.Collected, the same components the afmrl pipeline uses, on a small synthetic catalogue and encoder."""

import json
import sys

import pytest
import yaml
from kfp import dsl

from afmrl.config import Config, load_config

from ..conftest import REPO

sys.path.insert(0, str(REPO))

pytestmark = pytest.mark.slow


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def small_catalog(catalog: dsl.Output[dsl.Dataset]):
    """A 30-listing synthetic catalogue (test fixture)."""
    from afmrl.catalog.synth import generate
    from afmrl.config import load_config

    c = load_config(None, ["synth.n_base_products=5", "synth.listings_per_product=2", "synth.image_size=48"])
    generate(c.synth, c.splits, catalog.path)


@dsl.component(base_image="python:3.11", install_kfp_package=False)
def small_encoder(encoder: dsl.Output[dsl.Model]):
    """A dual encoder with small heads (test fixture), laid out like the train task's output."""
    import torch

    from afmrl.config import EncoderConfig
    from afmrl.models.encoders.dual import DualEncoder

    torch.manual_seed(0)
    DualEncoder(EncoderConfig(dim=16, hidden=32, image_size=48)).save_pretrained(f"{encoder.path}/encoder")


def test_pipeline_shards_3_indexes_every_listing_once(tmp_path, monkeypatch):
    from kfp import local

    from components import release

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AFMRL_PROGRESS", "off")
    db = tmp_path / "milvus.db"
    overrides = ["tracking.enabled=false", f"index.uri={db}", "index.batch_size=8"]
    params = yaml.safe_dump(Config().to_dict())

    @dsl.pipeline(name="afmrl-shards")
    def sharded(params_yaml: str, overrides: list, shards: int = 1):
        catalog = small_catalog().outputs["catalog"]
        encoder = small_encoder().outputs["encoder"]
        plan = release.shard_plan(shards=shards)
        with dsl.ParallelFor(plan.output, name="shards") as shard:
            embedded = release.embed(params_yaml=params_yaml, overrides=overrides, catalog=catalog, encoder=encoder,
                                     shard=shard, shards=shards)  # fmt: skip
        release.index(params_yaml=params_yaml, overrides=overrides, catalog=catalog, encoder=encoder,
                      vectors=dsl.Collected(embedded.outputs["vectors"]))  # fmt: skip

    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(tmp_path / "root"))
    sharded(params_yaml=params, overrides=overrides, shards=3)

    root = tmp_path / "root"
    shard_infos = [json.loads(p.read_text()) for p in root.rglob("shard.json")]
    assert sorted(i["shard"] for i in shard_infos) == [0, 1, 2] and all(i["shards"] == 3 for i in shard_infos)
    summary = json.loads(next(root.rglob("summary/index.json")).read_text())
    n = 5 * 3 * 2  # products (base + 2 near-duplicates) x listings per product
    assert sum(i["listings"] for i in shard_infos) == n
    assert (summary["count"], summary["loaded"], summary["embedded"]) == (n, n, 0)

    from afmrl.retrieval.milvus import MilvusIndex

    cfg = load_config(None, [f"index.uri={db}"])
    with MilvusIndex.from_config(cfg.index) as ix:
        ids = [i for page in ix.iter_ids(summary["collection"]) for i in page]
    assert len(ids) == len(set(ids)) == n, "every listing once"
