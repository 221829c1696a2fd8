"""Zero-downtime swaps on real Milvus Lite: a search loop through the serving alias runs while a new
encoder's collection is built and swapped in; no query fails and every answer comes from a complete
collection. Then the checks that guard a swap, rollback, and pruning beyond index.keep."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from typer.testing import CliRunner

from afmrl.retrieval.milvus import MilvusIndex
from afmrl.retrieval.swap import SwapCheckError, check_collection
from afmrl.stages import index as index_stage

from .test_milvus import make_cfg, save_encoder

pytestmark = pytest.mark.slow
SMALL = ("index.splits=[test]", "index.check_sample=8", "index.check_min_recall=0.99")


class SearchLoop(threading.Thread):
    """Queries through the alias until stopped: every search and count is recorded, every failure kept."""

    def __init__(self, uri: str, alias: str, dim: int, k: int) -> None:
        super().__init__(daemon=True)
        self.uri, self.alias, self.k = uri, alias, k
        rng = np.random.default_rng(0)
        self.q = rng.normal(size=(4, dim)).astype(np.float32)
        self.q /= np.linalg.norm(self.q, axis=1, keepdims=True)
        self.stop = threading.Event()
        self.answers: list[tuple[int, int]] = []  # (hits per query, count through the alias)
        self.failures: list[str] = []

    def run(self) -> None:
        with MilvusIndex(self.uri) as ix:
            while not self.stop.is_set():
                try:
                    hits = ix.search(self.alias, self.q, self.k)
                    count = ix.count_where(self.alias, "")
                    self.answers.append((min(len(h) for h in hits), count))
                except Exception as exc:  # noqa: BLE001 - any failure is what this test counts
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.01)


def test_search_through_the_alias_never_fails_during_a_reindex_and_a_swap(tmp_path, synth_catalog):
    db = tmp_path / "m.db"
    cfg = make_cfg(db, *SMALL)
    old_enc = save_encoder(tmp_path / "enc-old", seed=0)
    new_enc = save_encoder(tmp_path / "enc-new", seed=1)
    old = index_stage.run(cfg, synth_catalog, old_enc, tmp_path / "old")
    first = index_stage.switch_alias(cfg, encoder=old_enc)
    assert first["previous"] is None and first["checks"]["recall_at_10"] == 1.0  # FLAT: exact

    loop = SearchLoop(str(db), cfg.index.alias, old.dim, k=5)
    loop.start()
    try:
        time.sleep(0.5)
        new = index_stage.run(cfg, synth_catalog, new_enc, tmp_path / "new")  # built while the old one serves
        during_build = len(loop.answers)
        swapped = index_stage.switch_alias(cfg, encoder=new_enc)
        time.sleep(0.5)
        after_swap = len(loop.answers)
        while len(loop.answers) < after_swap + 5 and loop.is_alive():
            time.sleep(0.05)
    finally:
        loop.stop.set()
        loop.join(timeout=30)
    assert new.collection != old.collection and new.count == old.count
    assert swapped["previous"] == old.collection and swapped["collection"] == new.collection
    assert loop.failures == []
    assert during_build >= 3 and len(loop.answers) >= after_swap + 5, "the loop ran through the build and the swap"
    assert all(answer == (5, old.count) for answer in loop.answers), "every answer comes from a complete collection"
    with MilvusIndex(str(db)) as ix:
        assert ix.alias_target(cfg.index.alias) == new.collection


def test_checks_refuse_an_incomplete_collection_and_rollback_and_keep_work(tmp_path, synth_catalog):
    cfg = make_cfg(tmp_path / "m.db", *SMALL, "index.keep=2")
    encoders = [save_encoder(tmp_path / f"enc{i}", seed=i) for i in range(3)]
    built = [index_stage.run(cfg, synth_catalog, e, tmp_path / f"out{i}") for i, e in enumerate(encoders)]
    victim = built[2].collection
    with MilvusIndex.from_config(cfg.index) as ix:  # a collection whose count is not its build's is refused
        ix.set_properties(victim, {"afmrl.count": built[2].count + 2})
        with pytest.raises(SwapCheckError, match="holds .* listings, its build recorded"):
            check_collection(ix, victim, sample=4, min_recall=0.9)
    with pytest.raises(SwapCheckError):
        index_stage.switch_alias(cfg, collection=victim)
    with MilvusIndex.from_config(cfg.index) as ix:
        assert ix.alias_target(cfg.index.alias) is None  # nothing moved
        ix.set_properties(victim, {"afmrl.count": built[2].count})
        with pytest.raises(SwapCheckError, match="recall@10"):  # an index worse than asked is refused too
            check_collection(ix, victim, sample=4, min_recall=1.01)

    index_stage.switch_alias(cfg, encoder=encoders[0])
    index_stage.switch_alias(cfg, encoder=encoders[1])
    third = index_stage.switch_alias(cfg, encoder=encoders[2])
    assert third["previous"] == built[1].collection and third["dropped"] == [built[0].collection]

    from afmrl.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["--set", "tracking.enabled=false", "--set", f"index.uri={tmp_path / 'm.db'}",
                              "index", "rollback"])  # fmt: skip
    assert res.exit_code == 0, res.output
    with MilvusIndex.from_config(cfg.index) as ix:
        assert ix.alias_target(cfg.index.alias) == built[1].collection
        assert sorted(ix.collections(cfg.index.collection_prefix)) == sorted([built[1].collection, built[2].collection])
