"""Incremental re-index by content digest, on real Milvus Lite: only new and changed listings are embedded
(the stage's own counter), removed ones are deleted, and the result equals a fresh build; the same with
local worker processes and with Kubeflow-style shard files."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from afmrl.catalog import read_catalog, write_catalog
from afmrl.catalog.io import Catalog
from afmrl.retrieval.milvus import MilvusIndex
from afmrl.retrieval.reindex import listing_digests, plan
from afmrl.retrieval.shards import read_vectors, shard_of, shard_rows
from afmrl.stages import index as index_stage

from .test_milvus import make_cfg, save_encoder


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return save_encoder(tmp_path_factory.mktemp("enc") / "encoder")


def test_plan_sorts_listings_into_new_changed_unchanged_and_removed():
    p = plan(["a", "b", "c", "d"], ["1", "2", "3", "4"], {"a": "1", "b": "x", "e": "5", "f": "6"})
    assert p.embed == [1, 2, 3] and (p.added, p.changed, p.unchanged) == (2, 1, 1)
    assert p.removed == ["e", "f"]
    assert plan(["a"], ["1"], {"a": "1"}).counts() == {"embed": 0, "added": 0, "changed": 0, "unchanged": 1, "removed": 0}


def test_digest_covers_image_bytes_text_and_encoder(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(b"first photo")
    cat = Catalog(listings=pd.DataFrame(), image_root=tmp_path)
    rows = pd.DataFrame([{"listing_id": "a", "image": "img/a.jpg", "product_id": "p", "category": "mug", "title": "t",
                          "split": "test", "price": 1.0}])  # fmt: skip
    base = listing_digests(cat, rows, ["t"], [{}], "enc1")
    assert listing_digests(cat, rows, ["t"], [{}], "enc1") == base  # stable
    assert listing_digests(cat, rows, ["t2"], [{}], "enc1") != base  # text
    assert listing_digests(cat, rows, ["t"], [{}], "enc2") != base  # encoder
    (tmp_path / "img" / "a.jpg").write_bytes(b"another photo, same name")
    assert listing_digests(cat, rows, ["t"], [{}], "enc1") != base  # image bytes, same path


def test_shards_split_every_listing_once():
    ids = [f"l{i}" for i in range(500)]
    rows = pd.DataFrame({"listing_id": ids})
    parts = [shard_rows(rows, i, 3)["listing_id"].tolist() for i in range(3)]
    assert sorted(sum(parts, [])) == sorted(ids) and all(parts)
    assert all(shard_of(lid, 3) == i for i, part in enumerate(parts) for lid in part)


def _copy_catalogue(src, dst):
    shutil.copytree(src, dst)
    return dst


def _collection(cfg, name) -> dict[str, np.ndarray]:
    with MilvusIndex.from_config(cfg.index) as ix:
        return {r["listing_id"]: np.asarray(r["vector"], np.float32)
                for page in ix.iter_fields(name, ("vector",)) for r in page}  # fmt: skip


def _assert_same_index(cfg, a: str, b: str) -> None:
    va, vb = _collection(cfg, a), _collection(cfg, b)
    assert sorted(va) == sorted(vb)
    assert max(float(np.abs(va[k] - vb[k]).max()) for k in va) < 1e-5


@pytest.mark.slow
def test_incremental_reindex_embeds_only_what_changed_and_equals_a_fresh_build(tmp_path, synth_catalog, encoder_dir):
    cat_dir = _copy_catalogue(synth_catalog, tmp_path / "cat")
    cfg = make_cfg(tmp_path / "m.db", "index.splits=[test]")
    first = index_stage.run(cfg, cat_dir, encoder_dir, tmp_path / "out")
    cat = read_catalog(cat_dir)
    df = cat.listings[cat.listings["split"] == "test"].reset_index(drop=True)
    assert len(df) >= 8 and df["image"].notna().all()
    # 2 edited texts, 1 photo replaced under the same name, 2 removed, 2 added
    df.loc[0, "title"] = "renamed listing"
    df.loc[1, "description"] = "a new description"
    assert tmp_path in cat.image_root.resolve().parents  # the copy's photos, not the shared fixture's
    photo = cat.image_root / df.loc[2, "image"]
    photo.write_bytes((cat.image_root / df.loc[3, "image"]).read_bytes())  # another listing's photo, same name
    added = df.iloc[[4, 5]].assign(listing_id=["added-1", "added-2"])
    removed = df["listing_id"].iloc[[6, 7]].tolist()
    changed = pd.concat([df.drop(index=[6, 7]), added], ignore_index=True)
    write_catalog(changed, tmp_path / "cat2", image_root=cat.image_root)

    second = index_stage.run(cfg, tmp_path / "cat2", encoder_dir, tmp_path / "out")
    assert second.collection == first.collection
    assert (second.embedded, second.changed, second.added, second.deleted) == (5, 3, 2, 2)
    assert second.unchanged == len(changed) - 5 and second.count == len(changed)
    third = index_stage.run(cfg, tmp_path / "cat2", encoder_dir, tmp_path / "out")
    assert (third.embedded, third.deleted) == (0, 0)

    fresh = index_stage.run(make_cfg(tmp_path / "m.db", "index.splits=[test]", "index.version=fresh"),
                            tmp_path / "cat2", encoder_dir, tmp_path / "fresh")  # fmt: skip
    assert fresh.embedded == len(changed)
    _assert_same_index(cfg, second.collection, fresh.collection)
    assert not set(removed) & set(_collection(cfg, second.collection))


@pytest.mark.slow
def test_worker_processes_and_shard_files_build_the_same_index(tmp_path, synth_catalog, encoder_dir):
    listings = read_catalog(synth_catalog).listings
    n = int((listings["split"] == "test").sum())
    small = ("index.splits=[test]", "index.batch_size=4")  # 2 workers need 2 batches to share
    one = make_cfg(tmp_path / "m.db", "index.version=one", *small)
    base = index_stage.run(one, synth_catalog, encoder_dir, tmp_path / "one")
    two = make_cfg(tmp_path / "m.db", "index.version=two", "index.workers=2", *small)
    workers = index_stage.run(two, synth_catalog, encoder_dir, tmp_path / "two")
    assert (workers.workers, workers.embedded, workers.count) == (2, n, n)
    _assert_same_index(one, base.collection, workers.collection)

    shard_dirs = []
    for i in range(3):  # what Kubeflow's embed tasks do, one per shard
        info = index_stage.run(one, synth_catalog, encoder_dir, tmp_path / f"shard{i}", shard=i, shards=3)
        assert info["listings"] == len(read_vectors(info["file"])[0])
        shard_dirs.append(tmp_path / f"shard{i}")
    three = make_cfg(tmp_path / "m.db", "index.version=three", *small)
    loaded = index_stage.run(three, synth_catalog, encoder_dir, tmp_path / "three", vectors=shard_dirs)
    assert (loaded.loaded, loaded.embedded, loaded.count) == (n, 0, n)
    _assert_same_index(one, base.collection, loaded.collection)
