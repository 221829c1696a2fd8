"""A tiny real pipeline output for the service: a synthetic catalogue, two small encoders, their Milvus
Lite collections and an MLflow SQLite registry with ``champion`` on the first (built once per session)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from afmrl.config import Config, EncoderConfig, load_config
from afmrl.models.encoders.dual import DualEncoder

NAME = "afmrl-encoder"


@dataclass
class Built:
    root: Path
    catalog: Path
    encoders: list[Path]
    collections: list[str]
    versions: list[str]
    overrides: list[str]

    def cfg(self, *extra: str) -> Config:
        return load_config(None, [*self.overrides, *extra])

    def copy(self, dst: Path) -> Built:
        """The stores copied (a test that moves the champion or the alias gets its own)."""
        shutil.copytree(self.root, dst, symlinks=True)
        overrides = [o.replace(str(self.root), str(dst)) for o in self.overrides]
        return Built(dst, self.catalog, self.encoders, self.collections, self.versions, overrides)


def save_encoder(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    DualEncoder(EncoderConfig(dim=32, hidden=64, image_size=64)).save_pretrained(folder)
    return folder


def register(tracking_uri: str, folder: Path) -> str:
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(folder), "encoder")
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)  # not the process-wide registry
    try:
        client.create_registered_model(NAME)
    except Exception:  # noqa: BLE001 - already there
        pass
    mv = client.create_model_version(NAME, source=f"{run.info.artifact_uri}/encoder", run_id=run.info.run_id)
    return str(mv.version)


def set_champion(tracking_uri: str, version: str) -> None:
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).set_registered_model_alias(NAME, "champion", version)


@pytest.fixture(scope="session")
def built(tmp_path_factory, synth_catalog) -> Built:
    """Two encoders indexed into one Lite file, both registered; champion -> version 1."""
    from afmrl.stages import index as index_stage

    root = tmp_path_factory.mktemp("serving")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    overrides = [f"tracking.uri={uri}", f"index.uri={root / 'milvus.db'}", "index.batch_size=64",
                 "serve.follow_interval_s=0"]  # fmt: skip
    cfg = load_config(None, overrides)
    encoders, collections, versions = [], [], []
    for seed in (0, 1):
        folder = save_encoder(root / f"encoder{seed}", seed)
        result = index_stage.run(cfg, synth_catalog, folder, root / f"index{seed}")
        encoders.append(folder)
        collections.append(result.collection)
        versions.append(register(uri, folder))
    set_champion(uri, versions[0])
    return Built(root, synth_catalog, encoders, collections, versions, overrides)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def live_server(built, tmp_path_factory):
    """``afmrl serve`` as a real subprocess on a free port (its own copy of the stores); yields its URL."""
    import httpx

    b = built.copy(tmp_path_factory.mktemp("live") / "stores")
    port = free_port()
    sets = [a for o in b.overrides for a in ("--set", o)]
    log = (b.root / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "afmrl.cli", *sets,
                             "--set", "serve.follow_interval_s=1", "serve", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, cwd=b.root)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    try:
        while time.time() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"afmrl serve exited {proc.returncode}: {(b.root / 'serve.log').read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError(f"afmrl serve did not start: {(b.root / 'serve.log').read_text()[-3000:]}")
        yield url, b, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
