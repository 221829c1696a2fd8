from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from afmrl.config import Config, load_config

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AFMRL_SHARED_DATA", REPO.parent / "shared" / "data"))

os.environ.setdefault("AFMRL_PROGRESS", "off")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def shared_dataset(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (CI has ../shared/data; a user's clone may not)")
    return path


@pytest.fixture(scope="session", autouse=True)
def _session_cwd(tmp_path_factory: pytest.TempPathFactory):
    """Session- and module-scoped fixtures run outside the repository too (see ``_isolated_cwd``)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path_factory.mktemp("session-cwd"))
        yield


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test starts in an empty directory: the CLI's default ``--params params.yaml`` and relative
    outputs (mlflow.db, outputs/) never touch the working tree, so a user's edit of params.yaml cannot
    change a test's outcome (tests/test_config.py checks this)."""
    cwd = tmp_path_factory.mktemp("cwd")
    monkeypatch.chdir(cwd)
    return cwd


@pytest.fixture
def cfg() -> Config:
    """The built-in defaults (never the working params.yaml), with MLflow off (tests that track set their own store)."""
    return load_config(None, ["tracking.enabled=false"])


@pytest.fixture
def default_params(tmp_path: Path) -> Path:
    """A params.yaml in ``tmp_path`` holding the built-in defaults, for code that wants a file."""
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(Config().to_dict(), sort_keys=False))
    return path


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


# what a test's MLflow calls may leave in the process (mlflow.set_tracking_uri exports MLFLOW_TRACKING_URI for
# subprocesses): reset after each test, so a later test's `dvc repro` or CLI subprocess never inherits a store
LEAKY_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "AFMRL_PARENT_RUN_ID", "AFMRL_PIPELINE_RUN_ID")


@pytest.fixture(autouse=True)
def _no_leaked_stores(monkeypatch: pytest.MonkeyPatch):
    for name in LEAKY_ENV:  # setenv first: monkeypatch then restores the variable's absence too
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    yield
    import sys

    if "mlflow" in sys.modules:
        import mlflow

        mlflow.set_tracking_uri(None)  # the process-wide defaults back to unset
        mlflow.set_registry_uri(None)
