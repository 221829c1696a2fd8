"""The Milvus index on real Milvus Lite (a .db folder per test): build, re-run, kill -9 and resume, search
with filters, the serving alias, dimension checks, the one-process lock, evaluation through the index."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from afmrl.catalog import read_catalog, write_catalog
from afmrl.config import EncoderConfig, load_config
from afmrl.errors import AfmrlError
from afmrl.models.encoders.dual import DualEncoder
from afmrl.retrieval.milvus import (
    DimensionMismatchError,
    IndexLockedError,
    IndexStoreError,
    MilvusIndex,
    redact_uri,
)
from afmrl.retrieval.search import SearchFilters, find_identical
from afmrl.stages import index as index_stage

BASE = ["tracking.enabled=false", "index.batch_size=16"]


def make_cfg(db, *extra: str):
    return load_config(None, [*BASE, f"index.uri={db}", *extra])


def save_encoder(folder, dim: int = 32, seed: int = 0):
    torch.manual_seed(seed)
    DualEncoder(EncoderConfig(dim=dim, hidden=64, image_size=64)).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return save_encoder(tmp_path_factory.mktemp("enc") / "encoder")


@pytest.fixture(scope="module")
def built(tmp_path_factory, synth_catalog, encoder_dir):
    """One full build (every listing), re-used by the read-only tests below."""
    tmp = tmp_path_factory.mktemp("built")
    cfg = make_cfg(tmp / "milvus.db")
    first = index_stage.run(cfg, synth_catalog, encoder_dir, tmp / "out")
    return cfg, first, tmp


def random_records(n: int, dim: int, seed: int = 0, prefix: str = "l") -> list[dict]:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=(n, dim)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return [{"listing_id": f"{prefix}{i}", "product_id": f"p{i // 2}", "category": "mug" if i % 2 else "bottle",
             "title": f"item {i}", "split": "gallery", "attributes": {"n": i}, "price": None if i % 5 == 0 else float(i),
             "content_hash": "h", "vector": v[i]} for i in range(n)]  # fmt: skip


# ---------------------------------------------------------------------------- build, re-run, resume
@pytest.mark.slow
def test_build_then_rerun_adds_nothing(built, synth_catalog):
    cfg, first, tmp = built
    n = len(read_catalog(synth_catalog).listings)
    assert (first.count, first.embedded, first.unchanged, first.dim) == (n, n, 0, 32)
    assert first.index_type == "FLAT" and first.metric == "IP"
    summary = json.loads((tmp / "out" / "index.json").read_text())
    assert summary["count"] == n and summary["collection"] == first.collection
    again = index_stage.run(cfg, synth_catalog, first.encoder, tmp / "out2")
    assert (again.collection, again.count, again.embedded, again.unchanged) == (first.collection, n, 0, n)
    with MilvusIndex.from_config(cfg.index) as ix:
        ids = [i for page in ix.iter_ids(first.collection, batch_size=7) for i in page]
        assert len(ids) == len(set(ids)) == n
        assert set(ids) == set(read_catalog(synth_catalog).listings["listing_id"])
        props = ix.properties(first.collection)
        assert props["afmrl.complete"] == "true" and props["afmrl.count"] == str(n)


@pytest.mark.slow
def test_changed_listing_is_reembedded_and_removed_one_pruned(tmp_path, synth_catalog, encoder_dir):
    cfg = make_cfg(tmp_path / "m.db", "index.splits=[test]")
    first = index_stage.run(cfg, synth_catalog, encoder_dir, tmp_path / "out")
    cat = read_catalog(synth_catalog)
    df = cat.listings[cat.listings["split"] == "test"].reset_index(drop=True)
    gone, changed = df["listing_id"][0], df["listing_id"][1]
    df.loc[1, "title"] = "a completely different title"
    write_catalog(df.iloc[1:], tmp_path / "cat2", image_root=cat.image_root)
    second = index_stage.run(cfg, tmp_path / "cat2", encoder_dir, tmp_path / "out")
    assert (second.embedded, second.deleted, second.count) == (1, 1, first.count - 1)
    with MilvusIndex.from_config(cfg.index) as ix:
        got = ix.get(second.collection, [gone, changed])
        assert gone not in got and got[changed]["title"] == "a completely different title"


CHILD = textwrap.dedent(
    """
    import sys, time
    from afmrl.config import load_config
    from afmrl.stages import index
    cfg = load_config(sys.argv[1], ["tracking.enabled=false", "index.batch_size=8", "index.uri=" + sys.argv[2]])
    def slow(p):
        print("batch", p["done"], flush=True)
        time.sleep(0.5)
    index.run(cfg, sys.argv[3], sys.argv[4], sys.argv[5], on_batch=slow)
    print("finished", flush=True)
    """
)


@pytest.mark.slow
def test_kill_9_mid_build_then_resume_gives_the_same_count(tmp_path, synth_catalog, encoder_dir, default_params):
    db = tmp_path / "m.db"
    env = {**os.environ, "AFMRL_PROGRESS": "off"}
    args = [sys.executable, "-c", CHILD, str(default_params), str(db), str(synth_catalog), str(encoder_dir),
            str(tmp_path / "out")]  # fmt: skip
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith("batch") and int(line.split()[1]) >= 24:  # three batches are in
            proc.send_signal(signal.SIGKILL)
            break
    assert proc.wait(timeout=30) == -signal.SIGKILL, "".join(seen)
    assert not any(s.startswith("finished") for s in seen)
    n = len(read_catalog(synth_catalog).listings)
    cfg = make_cfg(db, "index.batch_size=8")
    with MilvusIndex.from_config(cfg.index) as ix:  # the lock died with the process
        name = ix.collections("afmrl_listings")[0]
        partial = ix.count(name)
        assert 24 <= partial < n
        assert ix.properties(name)["afmrl.complete"] == "false"
    resumed = index_stage.run(cfg, synth_catalog, encoder_dir, tmp_path / "out")
    assert resumed.collection == name
    assert resumed.count == n and resumed.unchanged >= partial and resumed.embedded == n - resumed.unchanged
    with MilvusIndex.from_config(cfg.index) as ix:
        ids = [i for page in ix.iter_ids(name) for i in page]
        assert len(ids) == len(set(ids)) == n


# ---------------------------------------------------------------------------- search
@pytest.mark.slow
def test_search_by_listing_with_and_without_filters(built):
    cfg, first, _ = built
    with MilvusIndex.from_config(cfg.index) as ix:
        lid = "syn-p0000-l0"
        res = find_identical(cfg, listing_id=lid, collection=first.collection, top_k=8, index=ix)
        hits = res.hits
        assert len(hits) == 8 and lid not in {h["listing_id"] for h in hits}
        scores = [h["score"] for h in hits]
        assert scores == sorted(scores, reverse=True) and all(-1.0001 <= s <= 1.0001 for s in scores)
        assert {"product_id", "category", "title", "price", "attributes", "split"} <= hits[0].keys()
        assert isinstance(hits[0]["attributes"], dict)
        # the stored vector equals the encoder's embedding of the listing: its own top hit is itself
        own = ix.search(first.collection, ix.vectors(first.collection, [lid])[lid], 1)[0][0]
        assert own.listing_id == lid and own.score == pytest.approx(1.0, abs=1e-4)
        flt = SearchFilters(categories=["mug", "bottle"], min_price=20.0, max_price=60.0, splits=["train", "test"])
        res = find_identical(cfg, listing_id=lid, collection=first.collection, top_k=50, filters=flt, index=ix)
        assert res.hits and res.expression.startswith('category in ["mug", "bottle"]')
        for h in res.hits:
            assert h["category"] in ("mug", "bottle") and 20.0 <= h["price"] <= 60.0 and h["split"] in ("train", "test")
        with pytest.raises(AfmrlError, match="not in collection"):
            find_identical(cfg, listing_id="no-such-listing", collection=first.collection, index=ix)
        with pytest.raises(AfmrlError, match="above max price"):
            find_identical(cfg, listing_id=lid, collection=first.collection, index=ix,
                           filters=SearchFilters(min_price=5, max_price=1))  # fmt: skip


@pytest.mark.slow
def test_search_by_text_and_image_uses_the_collections_encoder(built, synth_catalog):
    cfg, first, _ = built
    res = find_identical(cfg, text="Orvo orange aluminium bottle 750 ml", collection=first.collection, top_k=3,
                         filters=SearchFilters(categories=["bottle"]))  # fmt: skip
    assert len(res.hits) == 3 and all(h["category"] == "bottle" for h in res.hits)
    image = next((synth_catalog / "images").glob("*.jpg"))
    res = find_identical(cfg, image=image, collection=first.collection, top_k=2)
    assert len(res.hits) == 2 and res.query == {"image": str(image)}


def test_quoting_in_filters_and_ids(tmp_path):
    with MilvusIndex(str(tmp_path / "q.db")) as ix:
        ix.ensure_collection("c", 8)
        recs = random_records(6, 8)
        recs[0]["listing_id"], recs[0]["category"] = 'odd"id\\x', 'say "hi"'
        ix.upsert("c", recs)
        assert ix.count_where("c", SearchFilters(categories=['say "hi"']).expression()) == 1
        assert set(ix.get("c", ['odd"id\\x'])) == {'odd"id\\x'}
        hits = ix.search("c", recs[0]["vector"], 6, SearchFilters(exclude_ids=['odd"id\\x']).expression())[0]
        assert len(hits) == 5 and 'odd"id\\x' not in {h.listing_id for h in hits}
        # null prices never pass a price filter
        priced = ix.search("c", recs[1]["vector"], 6, SearchFilters(min_price=0).expression(), ["price"])[0]
        assert all(h.fields["price"] is not None for h in priced) and len(priced) == 4
        with pytest.raises(IndexStoreError, match="cannot search"):
            ix.search("c", recs[0]["vector"], 3, "no_such_field == 1")


# ---------------------------------------------------------------------------- alias, dimension, lock
def test_serving_alias_switches_atomically(tmp_path):
    cfg = make_cfg(tmp_path / "a.db")
    with MilvusIndex.from_config(cfg.index) as ix:
        for name, seed in (("col_v1", 1), ("col_v2", 2)):
            ix.ensure_collection(name, 8)
            ix.upsert(name, random_records(4, 8, seed, prefix=name))
            ix.set_properties(name, {"afmrl.complete": "true"})
        assert ix.alias_target("afmrl_serving") is None
    first = index_stage.set_serving_alias(cfg, collection="col_v1")
    assert (first["previous"], first["collection"], first["count"]) == (None, "col_v1", 4)
    second = index_stage.set_serving_alias(cfg, collection="col_v2")
    assert second["previous"] == "col_v1"
    with MilvusIndex.from_config(cfg.index) as ix:
        assert ix.alias_target("afmrl_serving") == "col_v2" and ix.resolve("afmrl_serving") == "col_v2"
        hits = ix.search("afmrl_serving", np.ones(8, np.float32), 4)[0]
        assert {h.listing_id for h in hits} == {f"col_v2{i}" for i in range(4)}
        ix.ensure_collection("col_v3", 8)
        ix.set_properties("col_v3", {"afmrl.complete": "false"})
    with pytest.raises(IndexStoreError, match="not a complete build"):
        index_stage.set_serving_alias(cfg, collection="col_v3")
    with pytest.raises(IndexStoreError, match="not found"):
        index_stage.set_serving_alias(cfg, collection="col_nope")


@pytest.mark.slow
def test_dimension_mismatch_is_refused_with_both_numbers(tmp_path, synth_catalog, encoder_dir):
    with MilvusIndex(str(tmp_path / "d.db")) as ix:
        ix.ensure_collection("c", 32)
        with pytest.raises(DimensionMismatchError, match=r"holds 32-dimensional vectors but the encoder produces 16"):
            ix.ensure_collection("c", 16)
    cfg = make_cfg(tmp_path / "e.db", "index.version=v1", "index.splits=[val]")
    assert index_stage.run(cfg, synth_catalog, encoder_dir, tmp_path / "out").collection == "afmrl_listings_v1"
    small = save_encoder(tmp_path / "enc16", dim=16)
    with pytest.raises(DimensionMismatchError, match="32.*16"):
        index_stage.run(cfg, synth_catalog, small, tmp_path / "out")


@pytest.mark.slow
def test_a_lite_file_open_in_another_process_gives_a_clear_error(tmp_path):
    db = tmp_path / "locked.db"
    code = "from afmrl.retrieval.milvus import MilvusIndex\nimport sys\nMilvusIndex(sys.argv[1])"
    with MilvusIndex(str(db)):
        r = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "IndexLockedError" in r.stderr and "open in another process" in r.stderr
    assert "Milvus standalone" in r.stderr and "MILVUS_URI" in r.stderr
    # closed here, the other process can open it
    ok = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert issubclass(IndexLockedError, IndexStoreError)


def test_secrets_stay_out_of_messages_and_config_dumps(monkeypatch):
    assert redact_uri("https://user:s3cret@milvus.example.com:19530/db") == "https://user:***@milvus.example.com:19530/db"
    assert redact_uri("http://milvus:19530") == "http://milvus:19530"
    monkeypatch.setenv("MILVUS_URI", "http://milvus:19530")
    monkeypatch.setenv("MILVUS_TOKEN", "root:Milvus")
    cfg = load_config(None, [])
    assert cfg.index.resolved_uri() == "http://milvus:19530" and cfg.index.resolved_token() == "root:Milvus"
    cfg = load_config(None, ["index.token=abc123"])
    assert cfg.index.resolved_token() == "abc123" and "abc123" not in json.dumps(cfg.to_dict())


# ---------------------------------------------------------------------------- evaluation, CLI, MLflow URIs
@pytest.mark.slow
def test_evaluation_through_the_index_matches_exact_search(built, synth_catalog, encoder_dir, tmp_path):
    from afmrl.stages import evaluate

    cfg, first, _ = built
    stale = tmp_path / "stale" / "index.json"  # an index of another encoder is refused before any embedding
    stale.parent.mkdir()
    stale.write_text(json.dumps({"collection": "afmrl_listings_other"}))
    with pytest.raises(AfmrlError, match="not this encoder's"):
        evaluate.run(cfg, synth_catalog, encoder_dir, tmp_path / "eval", index=stale)
    ev = evaluate.run(cfg, synth_catalog, encoder_dir, tmp_path / "eval", index=first.summary_path)
    m = ev.result.metrics
    for k in ("R@1", "R@5", "R@10", "mAP@10", "queries"):
        assert m[f"index_listing_{k}"] == pytest.approx(m[f"listing_{k}"], abs=1e-6), k
    assert m["index_listing_overlap@10"] == pytest.approx(1.0)
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert "index_listing_R@1" in report["metrics"]


@pytest.mark.slow
def test_cli_search_info_and_alias(built):
    from afmrl.commands.index import app

    cfg, first, _ = built
    runner = CliRunner()
    res = runner.invoke(app, ["alias", "--collection", first.collection], obj={"config": cfg})
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["search", "--listing", "syn-p0001-l0", "-k", "3", "--category", "bottle"],
                        obj={"config": cfg})  # fmt: skip
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["collection"] == first.collection and len(out["hits"]) == 3
    assert all(h["category"] == "bottle" for h in out["hits"])
    res = runner.invoke(app, ["info"], obj={"config": cfg})
    info = json.loads(res.stdout)
    assert info["alias_target"] == first.collection and info["collections"][0]["count"] == first.count
    res = runner.invoke(app, ["search", "--listing", "x", "--collection", "nope"], obj={"config": cfg})
    assert res.exit_code == 2 and "no collection or alias named 'nope'" in res.output


@pytest.mark.slow
def test_publish_switches_the_alias_only_when_promoted(built, encoder_dir, tmp_path):
    from afmrl.stages import publish

    cfg, first, _ = built
    (tmp_path / "rejected.json").write_text(json.dumps({"promoted": False}))
    kept = publish.run(cfg, tmp_path / "rejected.json", encoder_dir, tmp_path / "kept")
    assert kept["switched"] is False
    (tmp_path / "promote").mkdir()
    (tmp_path / "promote" / "decision.json").write_text(json.dumps({"promoted": True}))
    moved = publish.run(cfg, tmp_path / "promote", encoder_dir, tmp_path / "publish")  # the folder, as in Kubeflow
    assert moved["switched"] is True and moved["collection"] == first.collection
    assert json.loads((tmp_path / "publish" / "publish.json").read_text())["collection"] == first.collection
    with MilvusIndex.from_config(cfg.index) as ix:
        assert ix.alias_target(cfg.index.alias) == first.collection


@pytest.mark.slow
def test_encoder_from_an_mlflow_registry_alias(tmp_path, encoder_dir, monkeypatch):
    import mlflow
    from mlflow import MlflowClient

    from afmrl.models.encoders import ref as encoder_ref
    from afmrl.retrieval.milvus import collection_for, collection_for_encoder

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = load_config(None, [f"tracking.uri={uri}"])
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(encoder_dir), "encoder")
        # the registry's pyfunc layout: the folder under artifacts/ of the logged model
        mlflow.log_artifacts(str(encoder_dir), "model/artifacts/encoder")
        mlflow.log_text("flavors: {python_function: {}}\n", "model/MLmodel")
    client = MlflowClient()
    client.create_registered_model("afmrl-encoder")
    mv = client.create_model_version("afmrl-encoder", source=f"{run.info.artifact_uri}/encoder", run_id=run.info.run_id)
    client.set_registered_model_alias("afmrl-encoder", "champion", mv.version)
    local = encoder_ref.resolve(encoder_dir)
    for ref in ("models:/afmrl-encoder@champion", f"runs:/{run.info.run_id}/encoder", f"runs:/{run.info.run_id}/model"):
        got = encoder_ref.resolve(ref, cfg.tracking, cfg.encoder)
        try:
            assert got.fingerprint == local.fingerprint and got.ref == ref
            assert os.path.exists(os.path.join(got.path, "config.json"))
        finally:
            got.cleanup()
        assert not os.path.exists(got.path)
    champion = encoder_ref.resolve("models:/afmrl-encoder@champion", cfg.tracking)
    champion.cleanup()
    assert champion.details["version"] == str(mv.version)
    assert collection_for_encoder(cfg, "models:/afmrl-encoder@champion") == collection_for(cfg, local.fingerprint)
    with pytest.raises(AfmrlError, match="no encoder folder"):
        encoder_ref.resolve(tmp_path / "missing", cfg.tracking, cfg.encoder)


def test_gallery_rows_refuses_duplicates():
    df = pd.DataFrame({"listing_id": ["a", "a"], "split": ["test", "test"]})
    with pytest.raises(AfmrlError, match="duplicate listing_id"):
        index_stage.gallery_rows(df, [])
