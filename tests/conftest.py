from __future__ import annotations

import os
from pathlib import Path

import pytest

from afmrl.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AFMRL_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("AFMRL_PROGRESS", "off")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def shared_dataset(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (CI has ../shared/data; a user's clone may not)")
    return path


@pytest.fixture
def cfg() -> Config:
    """Defaults from the repository's params.yaml, with MLflow off (tests that track set their own store)."""
    return load_config(REPO / "params.yaml", ["tracking.enabled=false"])


@pytest.fixture(scope="session")
def synth_catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from afmrl.catalog.synth import generate

    c = load_config(None, ["synth.n_base_products=10", "synth.listings_per_product=3", "synth.image_size=96"])
    out = tmp_path_factory.mktemp("synth")
    generate(c.synth, c.splits, out)
    return out


@pytest.fixture(scope="module")
def one_thread():
    """2 shared cores: one intra-op thread is much faster for tiny models than two fighting other processes."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_vlm(synth_catalog, tmp_path_factory):
    """A tiny Qwen2-VL built from a config, tokenizer trained on the synthetic catalogue."""
    from afmrl.models.tiny import build_tiny

    return build_tiny("vlm", tmp_path_factory.mktemp("tiny-vlm"), synth_catalog, vocab_size=512)
