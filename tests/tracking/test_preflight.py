"""An unreachable tracking server says "nothing was run": every stage must then have written nothing.
The stages that write their outputs before their MLflow run check the server first."""

from __future__ import annotations

import socket

import pytest

from afmrl.config import load_config
from afmrl.tracking.store import TrackingUnavailable


def _unreachable() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there


@pytest.mark.parametrize("stage", ["validate", "extract", "evaluate", "index"])
def test_nothing_was_run_is_true(stage, tmp_path, tiny_catalog, encoder_dir):
    import importlib

    cfg = load_config(None, [f"tracking.uri={_unreachable()}", "validate.check_images=false",
                             f"index.uri={tmp_path / 'milvus.db'}"])  # fmt: skip
    module = importlib.import_module(f"afmrl.stages.{stage}")
    out = tmp_path / "out"
    args = {"validate": (tiny_catalog, out), "extract": (tiny_catalog, out),
            "evaluate": (tiny_catalog, encoder_dir, out, tmp_path / "cache"), "index": (tiny_catalog, encoder_dir, out)}
    with pytest.raises(TrackingUnavailable, match="nothing was run"):
        module.run(cfg, *args[stage])  # fmt: skip
    assert not out.exists(), f"{stage} wrote {sorted(p.name for p in out.rglob('*'))} before failing"
    assert not (tmp_path / "cache").exists() and not (tmp_path / "milvus.db").exists()
