"""MILVUS_URI / MILVUS_TOKEN from the environment: pymilvus reads MILVUS_URI when it is imported and
chokes on anything but a server URI; afmrl resolves the URI itself first. A URI without a scheme is a
clear error (exit 2) that never shows the password; a Milvus Lite path works; credentials never reach
the console. Each case runs the CLI in a fresh process (pymilvus reads the variable once, at import)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from afmrl.retrieval.milvus import MilvusIndex, redact_uri

SECRET = "secret123"
TOKEN = "tok-9f8e7d6c5b"


def afmrl(cwd, env_extra: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("MILVUS_URI", "MILVUS_TOKEN", "MILVUS_DEFAULT_CONNECTION")}
    env.update({"AFMRL_PROGRESS": "off", **env_extra})
    return subprocess.run([sys.executable, "-m", "afmrl.cli", "--set", "tracking.enabled=false", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_redact_uri_hides_credentials_with_or_without_a_scheme():
    for uri in (f"root:{SECRET}@host:19530", f"http://root:{SECRET}@host:19530", f"https://{SECRET}@host",
                f"tcp://root:{SECRET}@host:19530/db", f"{SECRET}@host:19530", f"http://host:19530?token={SECRET}"):  # fmt: skip
        shown = redact_uri(uri)
        assert SECRET not in shown and "host" in shown, (uri, shown)
    assert redact_uri(f"root:{SECRET}@host:19530") == "root:***@host:19530"
    assert redact_uri("http://milvus:19530") == "http://milvus:19530"
    assert redact_uri("outputs/milvus.db") == "outputs/milvus.db"


@pytest.mark.parametrize("command", [("index", "info"), ("search", "--listing", "x"), ("where",)])
def test_uri_without_a_scheme_is_a_clear_error_that_hides_the_password(tmp_path, command):
    r = afmrl(tmp_path, {"MILVUS_URI": f"root:{SECRET}@host:19530", "MILVUS_TOKEN": TOKEN}, *command)
    out = r.stdout + r.stderr
    assert SECRET not in out and TOKEN not in out, out
    assert "Traceback" not in out, out
    if command == ("where",):  # only prints where things are: the URI, redacted
        assert r.returncode == 0, out
        assert "root:***@host:19530" in out
        return
    assert r.returncode == 2, out
    assert "MILVUS_URI" in out and "http://" in out and "root:***@host:19530" in out, out


def test_server_uri_credentials_stay_off_the_console(tmp_path):
    r = afmrl(tmp_path, {"MILVUS_URI": f"http://root:{SECRET}@127.0.0.1:19530", "MILVUS_TOKEN": TOKEN}, "where")
    assert r.returncode == 0, r.stdout + r.stderr
    assert SECRET not in r.stdout + r.stderr and TOKEN not in r.stdout + r.stderr
    assert "***@127.0.0.1:19530" in r.stdout + r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("relative", [False, True])
def test_milvus_lite_path_in_milvus_uri_works(tmp_path, relative):
    db = tmp_path / "outputs" / "milvus.db"
    rng = np.random.default_rng(0)
    with MilvusIndex(str(db)) as ix:  # a collection the CLI must then see through MILVUS_URI
        ix.ensure_collection("afmrl_listings_envtest", 8)
        vec = rng.normal(size=(3, 8)).astype(np.float32)
        ix.upsert("afmrl_listings_envtest", [{"listing_id": f"l{i}", "product_id": "p", "category": "mug", "title": "t",
                                              "split": "gallery", "attributes": {}, "price": 1.0, "content_hash": "h",
                                              "vector": vec[i]} for i in range(3)])  # fmt: skip
        ix.flush("afmrl_listings_envtest")
    uri = "outputs/milvus.db" if relative else str(db)
    r = afmrl(tmp_path, {"MILVUS_URI": uri}, "index", "info")
    assert r.returncode == 0, r.stdout + r.stderr
    info = json.loads(r.stdout)
    assert info["backend"] == f"Milvus Lite {uri}"
    assert [(c["collection"], c["count"]) for c in info["collections"]] == [("afmrl_listings_envtest", 3)]
    # MILVUS_URI reaches child processes unchanged (afmrl sets it aside only while pymilvus is imported)
    code = ("import os; from afmrl.retrieval.milvus import MilvusIndex; ix = MilvusIndex(os.environ['MILVUS_URI']); "
            "print(os.environ['MILVUS_URI'], sorted(ix.collections())); ix.close()")  # fmt: skip
    env = {**os.environ, "MILVUS_URI": uri, "AFMRL_PROGRESS": "off"}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.split()[0] == uri and "afmrl_listings_envtest" in r.stdout, r.stderr


def test_pymilvus_is_imported_in_one_place_only():
    """Only afmrl/retrieval/milvus.py imports pymilvus, through import_pymilvus() (MILVUS_URI set aside)."""
    import ast
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    offenders = []
    for path in sorted((repo / "afmrl").rglob("*.py")) + sorted((repo / "benchmarks").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []  # fmt: skip
            if any(n.split(".")[0] == "pymilvus" for n in names):
                offenders.append(f"{path.relative_to(repo)}:{node.lineno}")
    assert offenders and all(o.startswith("afmrl/retrieval/milvus.py:") for o in offenders), offenders
