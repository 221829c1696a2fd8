"""benchmarks/rar.py's bookkeeping: the default evaluation split and the mean/std over seeds."""

from __future__ import annotations

import pandas as pd
import pytest

from ..conftest import load_benchmark

pytestmark = pytest.mark.slow  # importing the benchmark imports trl and every stage


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("rar")


def test_default_split_is_test_where_there_is_one(bench):
    assert bench.default_split(pd.DataFrame({"split": ["train", "val", "test", "gallery"]})) == "test"
    assert bench.default_split(pd.DataFrame({"split": ["train", "val", "gallery"]})) == "val"


def test_metrics_are_means_over_seeds_with_their_std(bench):
    got = bench.aggregate([{"micro_f1": 0.4, "listing_R@1": 0.5, "stopped_early": True, "note": "x"},
                           {"micro_f1": 0.6, "listing_R@1": 0.7, "stopped_early": False, "note": "y"}])
    assert got["micro_f1"] == pytest.approx(0.5) and got["micro_f1_std"] == pytest.approx(0.1414, abs=1e-3)
    assert got["listing_R@1"] == pytest.approx(0.6) and "listing_R@1_std" in got
    assert "note" not in got and "stopped_early" not in got and len(got["per_seed"]) == 2
    one = bench.aggregate([{"micro_f1": 0.4}])
    assert one["micro_f1_std"] == 0.0
    assert bench.PRIMARY == {"synthetic": "listing_R@1", "grocery-store": "photo_to_catalogue_R@1"}


def test_rar_on_the_evaluation_split_is_labelled_transductive(bench):
    assert bench.rar_protocol(["train"], "val") == "inductive"
    assert bench.rar_protocol(["unused", "train"], "test") == "inductive"
    assert bench.rar_protocol(["val"], "val") == "transductive"
    assert bench.rar_protocol(["train", "test"], "test") == "transductive"
    assert bench.rar_protocol(None, "test") == "transductive"  # every listing: the evaluation ones too


def test_unset_flags_take_the_datasets_warm_start(bench):
    import argparse

    def ns(dataset, **given):
        keys = ("extractor", "hidden", "sft_steps", "sft_batch", "sft_set")
        return bench.with_defaults(argparse.Namespace(dataset=dataset, **{k: given.get(k) for k in keys}))

    grocery = ns("grocery-store")  # the photos have no text: the pretrained-tower extractor
    assert (grocery.extractor, grocery.hidden, grocery.sft_steps, grocery.sft_batch) == ("llava", 128, 1000, 16)
    assert "sft.trl.lr_scheduler_type=cosine" in grocery.sft_set
    synthetic = ns("synthetic")
    assert (synthetic.extractor, synthetic.sft_steps, synthetic.hidden) == ("vlm", 3000, bench.GENERIC["hidden"])
    given = ns("grocery-store", extractor="vlm", sft_steps=5, sft_set=["sft.trl.warmup_steps=0"])
    assert (given.extractor, given.sft_steps, given.sft_set, given.hidden) == ("vlm", 5, ["sft.trl.warmup_steps=0"], 128)
