"""`afmrl ui` serves the configured store: the registered model and its aliases over the REST API."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests
from mlflow.tracking import MlflowClient

from afmrl.tracking.runs import PARENT_RUN_ENV, PIPELINE_ID_ENV

pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ui_serves_the_registry(store_cfg, tmp_path):
    uri = store_cfg.tracking.resolved_uri()
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("afmrl-encoder")
    for _ in range(2):
        client.create_model_version("afmrl-encoder", source=str(tmp_path), run_id=None)
    client.set_registered_model_alias("afmrl-encoder", "champion", "1")
    client.set_registered_model_alias("afmrl-encoder", "challenger", "2")

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in (PARENT_RUN_ENV, PIPELINE_ID_ENV)}
    env.update(MLFLOW_TRACKING_URI=uri, AFMRL_UI_QUIET="1")
    proc = subprocess.Popen([sys.executable, "-m", "afmrl.commands.registry", "ui", "--port", str(port)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    seen: list[str] = []
    server_pid = None
    try:
        deadline = time.monotonic() + 150
        address = None
        while address is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                line = lines.get(timeout=0.5)
            except queue.Empty:
                continue
            seen.append(line)
            if line.startswith("MLflow UI: "):
                address = line.split()[2]
                server_pid = int(re.search(r"server pid (\d+)", line).group(1))
        assert address == f"http://127.0.0.1:{port}", "".join(seen)[-3000:]

        api = f"{address}/api/2.0/mlflow/registered-models"
        model = requests.get(f"{api}/get", params={"name": "afmrl-encoder"}, timeout=10).json()["registered_model"]
        assert {a["alias"]: a["version"] for a in model["aliases"]} == {"champion": "1", "challenger": "2"}
        by_alias = requests.get(f"{api}/alias", params={"name": "afmrl-encoder", "alias": "champion"}, timeout=10)
        assert by_alias.json()["model_version"]["version"] == "1"
        assert requests.get(address, timeout=10).status_code == 200  # the UI page itself
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # afmrl ui stops its server's group on SIGTERM
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if server_pid is not None:  # afmrl ui stops its server's process group; if not, stop it here
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server_pid, signal.SIGKILL)
                pytest.fail("afmrl ui left processes of its mlflow server running")
    assert proc.returncode == 0 or proc.returncode == -signal.SIGTERM
    with socket.socket() as s:  # the server is gone: its port is free again
        assert s.connect_ex(("127.0.0.1", port)) != 0
