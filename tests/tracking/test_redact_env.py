"""Secret scrubbing reads the environment while other threads (MLflow telemetry) change it."""

from __future__ import annotations

import os
import threading

from afmrl.tracking.redact import MASK, scrub


def test_scrub_survives_variables_vanishing_while_it_reads(monkeypatch):
    monkeypatch.setenv("AFMRL_TEST_TOKEN", "s3cr3t-value-123")
    stop = threading.Event()

    def churn() -> None:  # what MLflow's telemetry thread does with _MLFLOW_TELEMETRY_SESSION_ID
        while not stop.is_set():
            os.environ["_AFMRL_CHURN"] = "x" * 12
            os.environ.pop("_AFMRL_CHURN", None)

    thread = threading.Thread(target=churn, daemon=True)
    thread.start()
    try:
        for _ in range(3000):
            assert scrub("token s3cr3t-value-123") == f"token {MASK}"
    finally:
        stop.set()
        thread.join()
