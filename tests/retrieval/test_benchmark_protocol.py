"""The retrieval benchmark's pure parts: settings, the product-disjoint catalogue, intervals, the table."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from afmrl.catalog.io import read_catalog, write_catalog
from afmrl.tracking.promotion import paired_bootstrap

from ..conftest import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("retrieval")


def test_settings_per_dataset(bench, capsys):
    assert bench.parse_args(["--dataset", "grocery-store", "--data", "x"]).setting == "closed-set"
    args = bench.parse_args(["--dataset", "grocery-store", "--data", "x", "--setting", "product-disjoint"])
    assert args.setting == "product-disjoint"
    assert bench.parse_args(["--dataset", "wdc-products", "--data", "x"]).setting == "product-disjoint"
    with pytest.raises(SystemExit):
        bench.parse_args(["--dataset", "wdc-products", "--data", "x", "--setting", "closed-set"])
    assert "split by product already" in capsys.readouterr().err
    assert bench.parse_args(["--dataset", "offers", "--data", "x"]).methods == ["zero-shot", "infonce", "gist",
                                                                                 "agcl", "oracle"]  # fmt: skip
    assert bench.hard_name("photo_to_catalogue_R@1") == "photo_to_catalogue_hard_R@1"
    # the grocery-store protocol: no eval split forced (test where the catalogue has it), shop attributes
    assert not any(o.startswith("eval.split") for o in bench.DATASETS["grocery-store"]["overrides"])
    assert "encoder.attributes_source=rules" in bench.DATASETS["offers"]["overrides"]
    # text offers: every method's batches hold no two listings of one product; grocery-store's cannot
    # and texts pooled by learned token weights (every method the same head)
    for name in ("offers", "wdc-products"):
        assert "train.no_duplicate_products=true" in bench.DATASETS[name]["overrides"]
        assert "encoder.text_pooling=attention" in bench.DATASETS[name]["overrides"]
    assert not any("no_duplicate" in o for o in bench.DATASETS["grocery-store"]["overrides"])
    args = bench.parse_args(["--dataset", "offers", "--data", "x", "--set", "train.beta=2", "train.steps=5"])
    assert args.set == ["train.beta=2", "train.steps=5"]


def test_mined_baselines_get_the_negatives_agcl_gets(bench):
    spec = bench.DATASETS["offers"]
    agcl = bench.run_overrides(spec, "agcl", "agcl")
    k = next(o for o in agcl if o.startswith("train.mined_negatives="))
    assert k != "train.mined_negatives=0"
    for name, method in (("infonce+mined", "infonce"), ("gist+mined", "gist")):
        extra = bench.run_overrides(spec, name, method)
        assert extra == [k]  # the same K, none of AGCL's own settings
    assert bench.run_overrides(spec, "infonce", "infonce") == []
    assert bench.run_overrides(bench.DATASETS["grocery-store"], "agcl", "agcl") == []  # grocery: AGCL's defaults


def test_text_offer_agcl_spares_weighted_keys_from_the_guide(bench):
    """AGCL's text-offer settings load, and every key the guide spares is one the attribute codes carry."""
    from afmrl.attributes.similarity import code_keys, weights_over_defaults
    from afmrl.config import load_config

    for name in ("offers", "wdc-products"):
        spec = bench.DATASETS[name]
        cfg = load_config(None, [*spec["overrides"], *bench.run_overrides(spec, "agcl", "agcl")])
        assert cfg.train.agcl_guide and cfg.train.guide_spares == ["capacity", "size", "model"]
        assert set(cfg.train.guide_spares) <= set(code_keys(weights_over_defaults(cfg.train.attribute_weights)))


def _grocery_like(tmp_path):
    rows = []
    for p in range(6):
        rows.append({"listing_id": f"cat-{p}", "product_id": f"p{p}", "title": f"product {p}", "split": "gallery",
                     "image": None, "source": "catalogue"})
        for i in range(3):
            rows.append({"listing_id": f"tr-{p}-{i}", "product_id": f"p{p}", "title": "", "split": "train", "image": None})
        for i in range(2):
            rows.append({"listing_id": f"va-{p}-{i}", "product_id": f"p{p}", "title": "", "split": "val", "image": None})
    write_catalog(pd.DataFrame(rows), tmp_path / "work" / "catalog", meta={"name": "tiny"})
    return tmp_path / "work" / "catalog"


def test_product_disjoint_catalogue_stays_in_work_and_holds_products_out(bench, tmp_path):
    source = _grocery_like(tmp_path)
    out = bench.product_disjoint_catalog(source, tmp_path / "work", 0.5, 0, "val")
    assert out.parent == tmp_path / "work"
    df = read_catalog(out).listings
    trained = set(df.loc[df["split"] == "train", "product_id"])
    evaluated = set(df.loc[df["split"] == "val", "product_id"])
    assert trained and evaluated and not trained & evaluated  # products never seen in training
    assert (df["split"] == "gallery").sum() == 6  # the whole shop catalogue is still the gallery
    assert json.loads((out / "catalog.json").read_text())["setting"] == "product-disjoint"
    assert bench.default_eval_split(read_catalog(out)) == "val"


def test_no_category_means_no_hard_batching(bench, tmp_path):
    cat = read_catalog(_grocery_like(tmp_path))
    ok, note = bench.hard_batching(cat)
    assert not ok and "category" in note
    cat.listings["category"] = "fruit"
    assert bench.hard_batching(cat)[0]


def test_interval_against_infonce_averages_seeds_first(bench):
    rng = np.random.default_rng(0)
    base = {"0": (rng.random(200) < 0.5).astype(float).tolist(), "1": (rng.random(200) < 0.5).astype(float).tolist()}
    better = {s: [min(1.0, v + (i % 4 == 0)) for i, v in enumerate(vals)] for s, vals in base.items()}
    per_query = {"infonce": {s: {"m": v} for s, v in base.items()}, "agcl": {s: {"m": v} for s, v in better.items()}}
    iv = bench.interval_vs_baseline(per_query, "agcl", "m")
    ours, theirs = np.mean([better["0"], better["1"]], axis=0), np.mean([base["0"], base["1"]], axis=0)
    assert iv["mean"] == pytest.approx(float((ours - theirs).mean()))
    assert (iv["low"], iv["high"]) == paired_bootstrap(ours, theirs)
    assert 0 < iv["low"] < iv["mean"] < iv["high"]  # a clear gain: the interval excludes 0
    assert bench.interval_vs_baseline(per_query, "agcl", "other") is None
    same = bench.interval_vs_baseline({"infonce": per_query["infonce"], "x": per_query["infonce"]}, "x", "m")
    assert same["low"] == same["high"] == same["mean"] == 0


def test_markdown_table(bench):
    out = {"dataset": "wdc-products", "setting": "product-disjoint", "eval_split": "test", "primary_metric": "listing_R@1",
           "hard_metric": "listing_hard_R@1", "steps": 10, "batch_size": 8, "seeds": [0, 1], "hard_batching": False,
           "hard_batching_note": "no category", "throughput": {}, "seconds": 12.0,
           "machine": {"cpus": 2, "torch": "2", "loadavg_start": [3.0, 0, 0], "loadavg_end": [4.0, 0, 0]},
           "methods": {"zero-shot": {"listing_R@1": 0.8, "listing_hard_R@1": 0.6, "listing_hard_queries": 40.0,
                                     "listing_queries": 90.0, "listing_mAP@10": 0.85,
                                     "primary_minus_infonce": {"mean": 0.01, "low": -0.02, "high": 0.04}},
                       "infonce": {"listing_R@1": 0.79, "listing_R@1_std": 0.01, "listing_hard_R@1": 0.55}}}  # fmt: skip
    md = bench.markdown(out)
    assert "| zero-shot | 0.800 | 0.600 | 0.850 | +0.010 [-0.020, +0.040] | – |" in md
    assert "| infonce | 0.790 ± 0.010 | 0.550 |" in md
    assert "(40 queries)" in md and "(90 queries)" in md and "no +hard runs" in md
    assert "load average 3.0 at the start, 4.0 at the end" in md and "Wall time 12 s" in md
