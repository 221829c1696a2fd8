"""``afmrl ui``: the MLflow UI (``mlflow server``) on the configured store, bound to 127.0.0.1.

For a local store (SQLite by default) it starts ``mlflow server`` with that store as backend and
registry, artifacts next to it (``mlartifacts/``), one worker, waits until ``/health`` answers,
prints the address and serves until Ctrl-C / SIGTERM, then stops the server's whole process group.
For an http(s) tracking URI there is nothing to start: that server is the UI.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable

from afmrl.config import TrackingConfig
from afmrl.errors import AfmrlError
from afmrl.tracking.redact import scrub
from afmrl.tracking.store import prepare_store, sqlite_path


def store_uri(cfg: TrackingConfig) -> str:
    """The configured URI with a SQLite path made absolute (the server may run elsewhere)."""
    uri = prepare_store(cfg)
    db = sqlite_path(uri)
    return f"sqlite:///{db.resolve()}" if db is not None else uri


def server_command(cfg: TrackingConfig, host: str = "127.0.0.1", port: int = 5000, workers: int = 1) -> list[str]:
    uri = store_uri(cfg)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--registry-store-uri", uri,
           "--host", host, "--port", str(port), "--workers", str(workers)]  # fmt: skip
    if (db := sqlite_path(uri)) is not None:
        cmd += ["--artifacts-destination", str(db.parent / "mlartifacts")]
    return cmd


def wait_healthy(url: str, proc: subprocess.Popen | None, timeout_s: float) -> None:
    import requests

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AfmrlError(f"mlflow server exited with code {proc.returncode} before it answered at {url} "
                             "(port in use? try --port)")  # fmt: skip
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AfmrlError(f"mlflow server did not answer at {url} within {timeout_s:.0f} s")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """Stop the server and everything it started (the process group it leads), and wait until gone."""
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            proc.poll()  # reap our child, or the group never empties
            if not _group_alive(proc.pid):
                return
            time.sleep(0.1)


def serve(cfg: TrackingConfig, host: str = "127.0.0.1", port: int = 5000, workers: int = 1,
          ready_timeout_s: float = 120.0, announce: Callable[[str], None] = print) -> int:  # fmt: skip
    """Run the UI until interrupted; returns the server's exit code (0 after a normal stop)."""
    uri = cfg.resolved_uri()
    if uri.startswith(("http://", "https://")):
        prepare_store(cfg)  # reachability check
        announce(f"MLflow UI: {scrub(uri)} (the tracking server serves it; nothing started)")
        return 0
    url = f"http://{host}:{port}"
    # MLflow's job runner (GenAI evaluation jobs: eight more processes) is of no use here; opt back in
    # with MLFLOW_SERVER_ENABLE_JOB_EXECUTION=true
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    proc = subprocess.Popen(server_command(cfg, host, port, workers), start_new_session=True,  # own group: stop all
                            env=env, stdout=subprocess.DEVNULL if os.environ.get("AFMRL_UI_QUIET") else None)  # fmt: skip

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        wait_healthy(url, proc, ready_timeout_s)
        announce(f"MLflow UI: {url}  (store {scrub(store_uri(cfg))}; server pid {proc.pid}; Ctrl-C stops it)")
        return proc.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop(proc)
        signal.signal(signal.SIGTERM, previous)

