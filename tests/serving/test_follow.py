"""The service follows the registry's champion without a restart: it loads the new version, checks its
collection, moves the serving alias (it owns the Milvus Lite file) and swaps; until then the old pair
answers. A real `afmrl serve` subprocess does it on its own poll."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx
import pytest

from afmrl.config import load_config
from afmrl.retrieval.milvus import MilvusIndex
from afmrl.serving.state import ServingState
from afmrl.tracking.lock import TOKEN_ENV

from .conftest import register, save_encoder, set_champion

pytestmark = pytest.mark.slow  # real Milvus Lite, MLflow registry, a subprocess


def test_state_swaps_to_the_new_champion_and_moves_the_alias(built, tmp_path):
    b = built.copy(tmp_path / "stores")
    cfg = b.cfg()
    uri = cfg.tracking.resolved_uri()
    state = ServingState(cfg)
    try:
        first = state.start()
        assert (first.collection, first.version) == (b.collections[0], b.versions[0])
        assert state.index.alias_target(cfg.index.alias) == b.collections[0]
        assert state.refresh() is False  # nothing moved

        # a version whose collection was never built: reported, the old pair keeps answering
        orphan = register(uri, save_encoder(tmp_path / "orphan", seed=7))
        set_champion(uri, orphan)
        assert state.refresh() is False
        assert "is not in" in state.pending and state.current.collection == b.collections[0]

        set_champion(uri, b.versions[1])
        assert state.refresh() is True
        assert (state.current.collection, state.current.version) == (b.collections[1], b.versions[1])
        assert state.index.alias_target(cfg.index.alias) == b.collections[1]
        assert state.pending is None and state.swaps == 1

        set_champion(uri, b.versions[0])  # a rollback: the old encoder is still loaded
        t = time.perf_counter()
        assert state.refresh() is True
        assert state.current.collection == b.collections[0] and time.perf_counter() - t < 30
    finally:
        state.close()


def test_a_pipeline_stage_that_writes_the_lite_file_stops_clearly_while_serving(built, tmp_path):
    b = built.copy(tmp_path / "stores")
    cfg = b.cfg()
    state = ServingState(cfg)
    sets = [a for o in b.overrides for a in ("--set", o)]
    try:
        state.start()
        env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}  # another process, not a child sharing the lock
        other = subprocess.run([sys.executable, "-m", "afmrl.cli", *sets, "index", "alias", "--collection",
                                b.collections[1]], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                               env=env)  # fmt: skip
        said = other.stdout + other.stderr
        assert other.returncode == 2, said
        assert "afmrl serve" in said and "milvus.db.afmrl.lock" in said  # the holder is named: the service
    finally:
        state.close()
    with MilvusIndex.from_config(load_config(None, b.overrides).index) as ix:  # released at close; not moved
        assert ix.alias_target(cfg.index.alias) == b.collections[0]


def test_a_running_service_follows_a_champion_move_without_restart(live_server):
    url, b, proc = live_server
    uri = b.cfg().tracking.resolved_uri()
    before = httpx.post(f"{url}/search", json={"text": "red mug", "k": 3}, timeout=30).json()
    assert before["collection"] == b.collections[0]
    set_champion(uri, b.versions[1])
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            body = httpx.post(f"{url}/search", json={"text": "red mug", "k": 3}, timeout=30).json()
            if body["collection"] == b.collections[1]:
                break
            time.sleep(0.5)
        assert body["collection"] == b.collections[1] and body["version"] == b.versions[1]
        health = httpx.get(f"{url}/health", timeout=10).json()
        assert health["swaps"] >= 1 and proc.poll() is None
    finally:
        set_champion(uri, b.versions[0])
