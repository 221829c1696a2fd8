from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from afmrl.catalog import read_catalog, write_catalog
from afmrl.config import load_config
from afmrl.stages import extract

pytestmark = pytest.mark.usefixtures("one_thread")


def test_rules_stage_writes_table_and_report(synth_catalog, tmp_path):
    cfg = load_config(None, ["tracking.enabled=false"])
    r = extract.run(cfg, synth_catalog, tmp_path / "out")
    table = pd.read_parquet(r.table_path)
    assert list(table.columns) == list(extract.COLUMNS)
    assert len(table) == len(read_catalog(synth_catalog).listings) == r.n
    assert table["valid"].all() and (table["backend"] == "rules").all()
    report = json.loads(r.report_path.read_text())
    assert report["keys"] == ["category", "brand", "colour", "pattern", "material", "size"]
    # stated attributes merged in: the final table is at least as good as the rules alone
    assert report["metrics"]["attributes"]["micro"]["f1"] >= report["metrics"]["extracted"]["micro"]["f1"] > 0.9


def test_mllm_extraction_cache_hits_on_rerun(synth_catalog, tiny_vlm, tmp_path):
    cat = tmp_path / "cat"
    src = read_catalog(synth_catalog)
    listings = src.listings.head(10).copy()
    listings.loc[listings.index[-1], "image"] = None  # one text-only listing: the fallback path
    write_catalog(listings, cat, image_root=src.image_root)
    cache = tmp_path / "cache.sqlite"
    cfg = load_config(None, ["tracking.enabled=false", "attributes.backend=mllm", f"mllm.model={tiny_vlm}",
                             f"attributes.cache_path={cache}", "mllm.max_new_tokens=8", "mllm.batch_size=4"])  # fmt: skip
    first = extract.run(cfg, cat, tmp_path / "a")
    assert (first.generated, first.cache_hits) == (10, 0)
    second = extract.run(cfg, cat, tmp_path / "b")
    assert (second.generated, second.cache_hits) == (0, 10)
    t1, t2 = pd.read_parquet(first.table_path), pd.read_parquet(second.table_path)
    assert t1["raw"].tolist() == t2["raw"].tolist() and t2["cached"].all()
    assert set(t1.columns) >= {"listing_id", "raw", "attributes", "valid", "reason", "seconds", "backend", "model"}

    # one listing changes: only it is generated again
    listings.loc[listings.index[0], "title"] = "Completely different title"
    write_catalog(listings, cat, image_root=src.image_root)
    third = extract.run(cfg, cat, tmp_path / "c")
    assert (third.generated, third.cache_hits) == (1, 9)

    # another model (a copy with changed weights) misses the cache entirely
    other = tmp_path / "other-model"
    shutil.copytree(tiny_vlm, other)
    from safetensors.torch import load_file, save_file

    weights = load_file(other / "model.safetensors")
    name = next(k for k in weights if k.endswith("lm_head.weight") or "embed_tokens" in k)
    weights[name] = weights[name] + 0.01
    save_file(weights, other / "model.safetensors", metadata={"format": "pt"})
    cfg.mllm.model = str(other)
    fourth = extract.run(cfg, cat, tmp_path / "d")
    assert fourth.generated == 10
