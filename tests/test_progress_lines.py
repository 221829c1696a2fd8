"""Long work shows progress: feature extraction over the catalogue per batch, SFT/RAR per logged step."""

from __future__ import annotations

from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np

from afmrl.models import features


def test_feature_extraction_advances_a_bar_per_batch_and_gives_the_same_features(monkeypatch):
    calls = []

    @contextmanager
    def recording(description, total, unit="it"):
        advanced = []
        calls.append((description, total, advanced))
        yield advanced.append

    monkeypatch.setattr(features, "progress", recording)
    compute = lambda items: np.array([[float(len(str(i)))] for i in items], dtype=np.float32)  # noqa: E731
    items = [f"item-{i}" for i in range(23)]
    out = features.with_progress(compute, "features: texts", "text", 5)(items)
    np.testing.assert_array_equal(out, compute(items))
    assert calls == [("features: texts", 23, [5, 5, 5, 5, 3])]
    calls.clear()
    features.with_progress(compute, "features: texts", "text", 32)(items)  # one batch: no bar
    assert calls == []


def test_trainer_log_lines_name_the_step_and_the_figures(monkeypatch, capsys):
    from afmrl.progress import console
    from afmrl.training.hf import ConsoleProgressCallback

    cb = ConsoleProgressCallback("rar")
    state = SimpleNamespace(global_step=3, max_steps=10)
    monkeypatch.setenv("AFMRL_PROGRESS", "on")
    with console.capture() as captured:
        cb.on_log(None, state, None, logs={"loss": 0.1234567, "reward": 0.5, "epoch": 1.0})
        cb.on_log(None, state, None, logs={"train_runtime": 3.0})  # nothing we show: no line
    assert captured.get().strip() == "rar step 3/10  loss 0.1235  reward 0.5"
    monkeypatch.setenv("AFMRL_PROGRESS", "off")
    with console.capture() as captured:
        cb.on_log(None, SimpleNamespace(global_step=4, max_steps=10), None, logs={"loss": 0.1})
    assert captured.get() == "" and cb.lines[-1] == "sft step 4/10  loss 0.1".replace("sft", "rar")
