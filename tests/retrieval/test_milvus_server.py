"""The server path on a real Milvus standalone started in-process by the registry's ``milvus`` package
(embedded Milvus 2.3.5, no Docker): afmrl builds an HNSW index through ``index.uri=http://...``, searches
it (recall against exact search), and swaps the serving alias. Skipped when the package is absent, the
server does not start within 60 s, or it is older than Milvus 2.5 (nullable fields): the registry's
``milvus`` 2.3.5 starts here, but its server refuses the layout's null prices, so these tests run against
a Milvus >= 2.5 package or server only."""

from __future__ import annotations

import numpy as np
import pytest

from afmrl.retrieval.milvus import MilvusIndex
from afmrl.retrieval.swap import sample_recall
from afmrl.stages import index as index_stage

from .test_milvus import random_records, save_encoder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def milvus_server(tmp_path_factory):
    milvus = pytest.importorskip("milvus", reason="the embedded Milvus server package (pip install milvus) is absent")
    server = milvus.MilvusServer(wait_for_started=False)
    server.set_base_dir(str(tmp_path_factory.mktemp("milvus-server")))
    try:
        server.start()
        server.wait_started(timeout=60_000)
    except (TimeoutError, RuntimeError, OSError) as exc:
        server.stop()
        pytest.skip(f"the embedded Milvus server did not start within 60 s: {exc}")
    try:
        uri = f"http://127.0.0.1:{server.listen_port}"
        with MilvusIndex(uri) as ix:
            version = ix.server_version()
        if version < (2, 5):  # the embedded package is Milvus 2.3.5
            pytest.skip(f"the embedded Milvus server is {version[0]}.{version[1]}: afmrl's collection layout has "
                        "nullable fields (product_id, price, ...), which need Milvus >= 2.5")  # fmt: skip
        yield uri
    finally:
        server.stop()  # ends its `milvus run standalone` process


def test_hnsw_collection_search_and_alias_on_a_server(milvus_server):
    with MilvusIndex(milvus_server) as ix:
        assert not ix.lite and ix.index_type == "HNSW"  # auto: HNSW on a server
        recs = random_records(400, 32, seed=3)
        ix.ensure_collection("srv_a", 32)
        ix.upsert("srv_a", recs)
        ix.flush("srv_a")
        assert ix.count("srv_a") == 400
        assert ix.client.describe_index("srv_a", "vector")["index_type"] == "HNSW"
        hits = ix.search("srv_a", np.stack([recs[7]["vector"]]), 5, expr='category == "mug"')
        assert hits[0][0].listing_id == "l7" and all(int(h.listing_id[1:]) % 2 for h in hits[0])
        assert sample_recall(ix, "srv_a", 50) >= 0.95
        ix.ensure_collection("srv_b", 32)
        ix.upsert("srv_b", random_records(10, 32, seed=4, prefix="b"))
        ix.flush("srv_b")
        assert ix.set_alias("srv_serving", "srv_a") is None
        assert ix.set_alias("srv_serving", "srv_b") == "srv_a"
        assert ix.count("srv_serving") == 10  # reads go through the alias
        for name in ("srv_a", "srv_b"):
            ix.client.drop_alias("srv_serving") if ix.alias_target("srv_serving") == name else None
            ix.drop(name)


def test_index_stage_builds_on_the_server(milvus_server, tmp_path, synth_catalog):
    from afmrl.config import load_config

    cfg = load_config(None, ["tracking.enabled=false", f"index.uri={milvus_server}", "index.splits=[test]",
                             "index.collection_prefix=srv_stage"])  # fmt: skip
    result = index_stage.run(cfg, synth_catalog, save_encoder(tmp_path / "enc"), tmp_path / "out")
    assert result.index_type == "HNSW" and result.count > 0
    swapped = index_stage.switch_alias(cfg, collection=result.collection)
    assert swapped["checks"]["recall_at_10"] >= cfg.index.check_min_recall
    again = index_stage.run(cfg, synth_catalog, tmp_path / "enc", tmp_path / "out")
    assert (again.embedded, again.unchanged) == (0, result.count)
