"""The AFMRL loop's rounds: skipped rounds, provenance and lineage, the candidate selection, and the figures a
report, its headline and the pipeline's parent run carry."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from afmrl.commands.headline import evaluate_headline
from afmrl.config import load_config
from afmrl.errors import DataError
from afmrl.retrieval.evaluate import primary_metric
from afmrl.retrieval.report import round_figures
from afmrl.stages.promote import lineage_tags
from afmrl.training.rounds import (
    attributes_provenance,
    extractor_info,
    is_skipped,
    read_rounds,
    round_skipped,
)

ROUNDS = [
    {"round": 1, "selected": False, "attributes": {"source": "rules", "model": "rules-abc", "micro_f1": 0.9,
                                                    "extractor": {"model": "rules-abc", "registered": None}},
     "eval": {"split": "test", "metric": "listing_R@1", "value": 0.5}},
    {"round": 2, "selected": True, "attributes": {"source": "mllm", "model": "outputs/models/rar@f00",
                                                   "micro_f1": None,
                                                   "extractor": {"model": "outputs/models/rar",
                                                                 "registered": {"name": "x-extractor", "version": 3}}},
     "eval": {"split": "test", "metric": "listing_R@1", "value": 0.75}},
]  # fmt: skip


def test_a_round_beyond_loop_rounds_is_skipped():
    assert not round_skipped(2, 2) and round_skipped(1, 2) and not round_skipped(1, 1)
    with pytest.raises(ValueError):
        round_skipped(2, 0)


def test_primary_metric_prefers_photo_to_catalogue_and_needs_one():
    assert primary_metric({"listing_R@1": 0.5, "photo_to_catalogue_R@1": 0.4}) == "photo_to_catalogue_R@1"
    assert primary_metric({"listing_R@1": 0.5, "photo_to_catalogue_R@1": float("nan")}) == "listing_R@1"
    with pytest.raises(DataError, match="primary metric"):
        primary_metric({"listing_mAP@10": 0.5})


def test_provenance_reads_the_extraction_report_beside_the_attributes(tmp_path):
    (tmp_path / "report.json").write_text(json.dumps({
        "backend": "mllm", "model": "m@1", "extractor": {"model": "m", "registered": {"name": "e", "version": 2}},
        "metrics": {"attributes": {"micro": {"f1": 0.7}}, "extracted": {"micro": {"f1": 0.4}}}}))  # fmt: skip
    got = attributes_provenance(tmp_path / "attributes.parquet")
    assert (got["source"], got["model"], got["micro_f1"], got["extracted_micro_f1"]) == ("mllm", "m@1", 0.7, 0.4)
    assert got["extractor"]["registered"]["version"] == 2
    assert attributes_provenance(None)["source"] == "catalogue"


def test_extractor_info_names_the_version_rar_registered(tmp_path):
    assert extractor_info(tmp_path)["registered"] is None
    (tmp_path / "rar.json").write_text(json.dumps({"registered": {"name": "e", "version": 5}}))
    assert extractor_info(tmp_path) == {"model": str(tmp_path), "registered": {"name": "e", "version": 5}}


def test_skipped_round_stages_write_the_outputs_dvc_expects(tmp_path, cfg):
    from afmrl.stages import extract, train

    one_round = cfg.model_copy(update={"loop": cfg.loop.model_copy(update={"rounds": 1})})
    result = extract.run(one_round, tmp_path / "no-catalogue-needed", tmp_path / "attributes-2", round_=2)
    assert result.skipped and result.n == 0
    assert pd.read_parquet(result.table_path).empty
    assert json.loads(result.report_path.read_text())["skipped"] is True
    trained = train.run(one_round, tmp_path / "no-catalogue-needed", tmp_path / "rounds/2", round_=2)
    assert trained.result is None and trained.metrics() == {"skipped": 1.0}
    assert json.loads((tmp_path / "rounds/2/training.json").read_text())["skipped"] is True
    assert (tmp_path / "rounds/2/encoder").is_dir() and is_skipped(tmp_path / "rounds/2")


def test_round_figures_headline_and_lineage_tags():
    figures = round_figures(ROUNDS)
    assert figures == {"round1.listing_R_at_1": 0.5, "round1.attributes_micro_f1": 0.9,
                       "round2.listing_R_at_1": 0.75, "selected_round": 2.0}  # fmt: skip
    headline = evaluate_headline({"metrics": {"listing_R@1": 0.75}, "queries": {"n": 200}, "rounds": ROUNDS})
    assert headline["round1_listing_R@1"] == 0.5 and headline["round2_listing_R@1"] == 0.75
    assert headline["selected_round"] == 2 and len(headline) <= 10
    tags = lineage_tags({"rounds": ROUNDS})
    assert tags["afmrl.round"] == "2" and tags["afmrl.attributes_source"] == "mllm"
    assert (tags["afmrl.extractor"], tags["afmrl.extractor_version"]) == ("x-extractor", "3")
    assert lineage_tags({"metrics": {}}) == {}


def test_read_rounds_refuses_what_is_not_a_list_of_rounds(tmp_path):
    (tmp_path / "rounds.json").write_text(json.dumps({"round": 1}))
    with pytest.raises(DataError, match="list of rounds"):
        read_rounds(tmp_path)
    with pytest.raises(DataError, match="afmrl select"):
        read_rounds(tmp_path / "missing")


@pytest.mark.slow
def test_select_takes_the_round_better_on_validation_and_evaluate_scores_every_round(tmp_path, synth_catalog,
                                                                                     one_thread):  # fmt: skip
    """Two encoders (different head initialisations, no training needed) as rounds 1 and 2, a skipped
    round 3: select scores them on val, copies the better one as the candidate; evaluate reports each."""
    from afmrl.models.encoders.dual import DualEncoder
    from afmrl.stages import evaluate, select

    cfg = load_config(None, ["tracking.enabled=false", "encoder.image_size=64", "loop.rounds=2"])
    for n, seed in ((1, 0), (2, 1)):
        torch.manual_seed(seed)
        DualEncoder(cfg.encoder).save_pretrained(tmp_path / f"rounds/{n}/encoder")
        (tmp_path / f"rounds/{n}/training.json").write_text(json.dumps({"round": n, "attributes": {"source": "x"}}))
    from afmrl.training.rounds import write_skipped

    write_skipped(tmp_path / "rounds/3", "train", 3, 2, name="training.json")
    cache = tmp_path / "cache"
    result = select.run(cfg, synth_catalog, [tmp_path / "rounds/1", tmp_path / "rounds/2", tmp_path / "rounds/3"],
                        tmp_path / "train", cache_dir=cache)  # fmt: skip
    assert [r["round"] for r in result.rounds] == [1, 2]
    values = {r["round"]: r["select"]["value"] for r in result.rounds}
    assert all(r["select"]["split"] == "val" for r in result.rounds)
    best = max(values, key=lambda n: (values[n], -n))
    assert result.selected == best and [r["round"] for r in result.rounds if r["selected"]] == [best]
    chosen = (tmp_path / f"rounds/{best}/encoder/model.safetensors").read_bytes()
    assert (tmp_path / "train/encoder/model.safetensors").read_bytes() == chosen
    assert read_rounds(tmp_path / "train/rounds") == json.loads(result.rounds_path.read_text())

    report = evaluate.run(cfg, synth_catalog, tmp_path / "train/encoder", tmp_path / "eval", cache_dir=cache,
                          rounds=tmp_path / "train/rounds")  # fmt: skip
    doc = json.loads(report.report_path.read_text())
    assert [r["round"] for r in doc["rounds"]] == [1, 2]
    selected = next(r for r in doc["rounds"] if r["selected"])
    metric = selected["eval"]["metric"]
    assert selected["eval"]["split"] == doc["split"] == "test"
    assert selected["eval"]["value"] == pytest.approx(doc["metrics"][metric])  # the candidate is that round
