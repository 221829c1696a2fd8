"""The on-disk feature cache: a corrupt cache file is rebuilt (with a warning), and writers that
interleave (two processes on one cache folder) never share a temporary file."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

from afmrl.models import features as F


def _compute(items: list[str]) -> np.ndarray:
    return np.array([[float(len(s)), float(ord(s[0]))] for s in items], dtype=np.float32)


def _fill(folder, keys: list[str]) -> F.FeatureCache:
    cache = F.FeatureCache(folder, "text-test")
    cache.get(keys, keys, _compute)
    return cache


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "wrong-arrays"])
def test_a_corrupt_cache_is_rebuilt_with_a_warning(tmp_path, capsys, damage):
    keys = ["red mug", "blue bottle", "green lamp"]
    path = _fill(tmp_path, keys).path
    data = path.read_bytes()
    if damage == "truncated":  # a killed writer or a full disk (before writes were atomic)
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not a zip file at all" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        np.savez(path, something=np.zeros(3))
    computed: list[list[str]] = []
    cache = F.FeatureCache(tmp_path, "text-test")
    out = cache.get(keys, keys, lambda items: computed.append(items) or _compute(items))
    np.testing.assert_array_equal(out, _compute(keys))
    assert computed == [keys], "every feature is computed again"
    err = capsys.readouterr().err
    assert str(path) in err and "rebuilding" in err
    with np.load(path, allow_pickle=False) as reread:  # the rebuilt file is whole
        assert reread["keys"].tolist() == keys


def test_interleaved_writers_each_leave_a_whole_cache(tmp_path, monkeypatch):
    """Writer A is halfway through its file when writer B (another process) writes and renames its own."""
    a = F.FeatureCache(tmp_path, "text-test")
    b = F.FeatureCache(tmp_path, "text-test")
    real = np.savez
    calls = {"n": 0}

    def interleaved(file, **arrays):
        calls["n"] += 1
        if calls["n"] > 1:  # B: writes in one go
            return real(file, **arrays)
        buf = io.BytesIO()
        real(buf, **arrays)
        data = buf.getvalue()
        fh = open(file, "wb") if not hasattr(file, "write") else file  # noqa: SIM115
        fh.write(data[: len(data) // 2])
        fh.flush()
        b.get(["blue bottle"], ["blue bottle"], _compute)  # B runs now
        fh.write(data[len(data) // 2 :])
        if fh is not file:
            fh.close()

    monkeypatch.setattr(F.np, "savez", interleaved)
    a.get(["red mug", "green lamp"], ["red mug", "green lamp"], _compute)
    monkeypatch.setattr(F.np, "savez", real)
    with np.load(a.path, allow_pickle=False) as data:  # whole: the last writer's file (A's)
        assert data["keys"].tolist() == ["red mug", "green lamp"]
        np.testing.assert_array_equal(data["feats"], _compute(["red mug", "green lamp"]))
    assert zipfile.is_zipfile(a.path)
    assert [p.name for p in tmp_path.iterdir()] == [a.path.name], "no temporary file left"
    again = F.FeatureCache(tmp_path, "text-test").get(["red mug"], ["red mug"], _compute)
    np.testing.assert_array_equal(again, _compute(["red mug"]))
