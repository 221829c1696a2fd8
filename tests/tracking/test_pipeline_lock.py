"""Two pipelines at once on one MLflow SQLite store and one Milvus Lite file: the second stops with a clear
message naming the lock and its holder (exit 2), and nothing of the first is touched. The lock is a flock
on a file next to each store (released by the kernel when its holder dies); child processes of the holder
(``dvc repro`` run under a held pipeline) share it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from afmrl.config import load_config
from afmrl.retrieval.milvus import MilvusIndex
from afmrl.tracking.runs import PARENT_RUN_ENV, PIPELINE_ID_ENV

from .conftest import write_report

COLLECTION = "afmrl_listings_first"


def overrides(store_cfg, db) -> list[str]:
    return [f"tracking.uri={store_cfg.tracking.resolved_uri()}", f"index.uri={db}"]


def first_pipelines_index(db) -> None:
    """What the first pipeline built: 5 listings and the serving alias on them."""
    rng = np.random.default_rng(0)
    vec = rng.normal(size=(5, 8)).astype(np.float32)
    with MilvusIndex(str(db)) as ix:
        ix.ensure_collection(COLLECTION, 8)
        ix.upsert(COLLECTION, [{"listing_id": f"l{i}", "product_id": "p", "category": "mug", "title": "t", "split": "gallery",
                                "attributes": {}, "price": 1.0, "content_hash": "h", "vector": vec[i]} for i in range(5)])  # fmt: skip
        ix.flush(COLLECTION)
        ix.set_properties(COLLECTION, {"afmrl.complete": "true"})
        ix.set_alias("afmrl_serving", COLLECTION)


def clean_env() -> dict[str, str]:
    drop = (PARENT_RUN_ENV, PIPELINE_ID_ENV, "MLFLOW_TRACKING_URI", "MILVUS_URI", "AFMRL_LOCK_TOKEN")
    return {**{k: v for k, v in os.environ.items() if k not in drop}, "AFMRL_PROGRESS": "off"}


def afmrl_cli(cwd, sets: list[str], *args: str, env=None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "afmrl.cli", *[a for s in sets for a in ("--set", s)], *args]
    return subprocess.run(cmd, cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=300)


# A whole pipeline in one process (a script or KFP-local's driver: afmrl.tracking.pipeline.pipeline_run); it
# waits for a line on stdin, then runs a stage as a child process (as `dvc repro` would) and ends.
HOLDER = textwrap.dedent(
    """
    import subprocess, sys
    from afmrl.config import load_config
    from afmrl.tracking.pipeline import pipeline_run
    sets = sys.argv[1:3]
    cfg = load_config(None, sets)
    with pipeline_run(cfg, name="first") as run_id:
        print("ready", run_id, flush=True)
        sys.stdin.readline()
        child = subprocess.run([sys.executable, "-m", "afmrl.cli", *[a for s in sets for a in ("--set", s)],
                                *sys.argv[3:]], capture_output=True, text=True)
        print("child", child.returncode, flush=True)
        sys.stderr.write(child.stdout + child.stderr)
    print("done", flush=True)
    """
)


def start_holder(tmp_path, sets, *child_args):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, *sets, *child_args], cwd=tmp_path, env=clean_env(),
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    line = proc.stdout.readline()
    if not line.startswith("ready"):
        proc.kill()
        raise AssertionError(f"holder did not start: {line}{proc.stderr.read()[-3000:]}")
    return proc, line.split()[1]


@pytest.mark.slow
def test_second_pipeline_stops_while_the_first_holds_the_stores(store_cfg, encoder_dir, tmp_path):
    db = tmp_path / "milvus.db"
    first_pipelines_index(db)
    sets = overrides(store_cfg, db)
    report = write_report(tmp_path / "report.json", encoder_dir, R1=0.9, mAP10=0.9)
    promote_args = ("promote", "--encoder", str(encoder_dir), "--report", str(report), "--out")
    holder, first_run = start_holder(tmp_path, sets, *promote_args, str(tmp_path / "first-promote"))
    try:
        # the second pipeline: its start, its gate, its alias switch all stop, naming the lock and the holder
        decision = tmp_path / "decision.json"
        decision.write_text(json.dumps({"promoted": True}))
        for args in (("run", "start", "--name", "second"),
                     (*promote_args, str(tmp_path / "second-promote")),
                     ("index", "publish", "--decision", str(decision), "--encoder", str(encoder_dir), "--out",
                      str(tmp_path / "second-publish")),
                     ("index", "build", str(tmp_path / "no-catalog"), "--encoder", str(encoder_dir), "--out",
                      str(tmp_path / "second-index"))):  # fmt: skip
            r = afmrl_cli(tmp_path, sets, *args)
            out = r.stdout + r.stderr
            assert r.returncode == 2, (args, out)
            assert "another afmrl pipeline" in out and f"pid {holder.pid}" in out and ".afmrl.lock" in out, (args, out)
            assert "Traceback" not in out
        assert not (tmp_path / "second-promote").exists() and not (tmp_path / "second-publish").exists()
        # the first pipeline's own stages (child processes) go on
        holder.stdin.write("go\n")
        holder.stdin.flush()
        rest, err = holder.communicate(timeout=300)
    finally:
        if holder.poll() is None:
            holder.kill()
    assert holder.returncode == 0 and "child 0" in rest and "done" in rest, rest + err[-3000:]

    client = MlflowClient(tracking_uri=store_cfg.tracking.resolved_uri())
    exp = client.get_experiment_by_name("afmrl")
    runs = client.search_runs([exp.experiment_id])
    assert {r.info.run_name for r in runs} == {"first", "promote"}, "the second pipeline logged nothing"
    assert client.get_run(first_run).info.status == "FINISHED"
    assert [str(v.version) for v in client.search_model_versions("name='afmrl-encoder'")] == ["1"]
    with MilvusIndex(str(db)) as ix:
        assert ix.collections() == [COLLECTION] and ix.count(COLLECTION) == 5
        assert ix.alias_target("afmrl_serving") == COLLECTION


# A stage of the first pipeline that takes long (the index stage): after its first batch it waits until the
# test says go, so the second pipeline starts while it runs.
SLOW_INDEX = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from afmrl.config import load_config
    from afmrl.stages import index
    cfg = load_config(None, sys.argv[1:3] + ["index.batch_size=8"])
    go = Path(sys.argv[6])
    def slow(p):
        print("batch", p["done"], flush=True)
        deadline = time.time() + 120
        while not go.exists() and time.time() < deadline:
            time.sleep(0.05)
    r = index.run(cfg, sys.argv[3], sys.argv[4], sys.argv[5], on_batch=slow)
    print("finished", r.collection, r.count, flush=True)
    """
)


@pytest.mark.slow
def test_a_stage_of_the_first_pipeline_stops_the_second_pipelines_start(store_cfg, encoder_dir, tiny_catalog,
                                                                          tmp_path):  # fmt: skip
    db = tmp_path / "milvus.db"
    sets = overrides(store_cfg, db)
    proc = subprocess.Popen([sys.executable, "-c", SLOW_INDEX, *sets, str(tiny_catalog), str(encoder_dir),
                             str(tmp_path / "index"), str(tmp_path / "go")], cwd=tmp_path, env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.startswith("batch"), line + proc.stderr.read()[-3000:]
        r = afmrl_cli(tmp_path, sets, "run", "start", "--name", "second")
        out = r.stdout + r.stderr
        assert r.returncode == 2, out
        assert "another afmrl pipeline" in out and f"pid {proc.pid}" in out, out
        assert str(db) + ".afmrl.lock" in out and "Milvus server" in out, out
        (tmp_path / "go").touch()
        rest, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    finished = [ln for ln in rest.splitlines() if ln.startswith("finished")]
    assert finished and int(finished[0].split()[2]) == 24, rest
    client = MlflowClient(tracking_uri=store_cfg.tracking.resolved_uri())
    runs = client.search_runs([client.get_experiment_by_name("afmrl").experiment_id])
    assert [(r.info.run_name, r.info.status) for r in runs] == [("index", "FINISHED")]
    with MilvusIndex(str(db)) as ix:
        (name,) = ix.collections()
        assert ix.count(name) == 24 and ix.properties(name)["afmrl.complete"] == "true"


@pytest.mark.slow
def test_a_killed_holder_leaves_no_lock_behind(store_cfg, tmp_path):
    db = tmp_path / "milvus.db"
    sets = overrides(store_cfg, db)
    holder, _ = start_holder(tmp_path, sets, "where")
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    r = afmrl_cli(tmp_path, sets, "run", "start", "--name", "after-crash")
    assert r.returncode == 0, r.stdout + r.stderr


def test_lock_files_sit_next_to_the_local_stores(tmp_path, monkeypatch):
    from afmrl.tracking.lock import lock_paths

    monkeypatch.delenv("MILVUS_URI", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, [])
    assert lock_paths(cfg) == [tmp_path / "mlflow.db.afmrl.lock", tmp_path / "outputs" / "milvus.db.afmrl.lock"]
    assert lock_paths(cfg, tracking=False) == [tmp_path / "outputs" / "milvus.db.afmrl.lock"]
    assert lock_paths(cfg, index=False) == [tmp_path / "mlflow.db.afmrl.lock"]
    servers = load_config(None, ["index.uri=http://milvus:19530", "tracking.uri=http://mlflow:5000"])
    assert lock_paths(servers) == []  # servers take concurrent clients: nothing to lock
    assert lock_paths(load_config(None, ["tracking.enabled=false"])) == [tmp_path / "outputs" / "milvus.db.afmrl.lock"]


def test_the_lock_is_reentrant_in_one_process_and_released_after(tmp_path, monkeypatch):
    from afmrl.tracking.lock import is_held, pipeline_lock

    monkeypatch.chdir(tmp_path)
    cfg = load_config(None, [f"index.uri={tmp_path / 'm.db'}", f"tracking.uri=sqlite:///{tmp_path / 'x.db'}"])
    with pipeline_lock(cfg, "pipeline"), pipeline_lock(cfg, "stage", tracking=False):
        assert is_held(tmp_path / "m.db.afmrl.lock") and is_held(tmp_path / "x.db.afmrl.lock")
        holder = json.loads((tmp_path / "m.db.afmrl.lock").read_text())
        assert holder["pid"] == os.getpid() and holder["holder"] == "pipeline"
    assert not is_held(tmp_path / "m.db.afmrl.lock") and not is_held(tmp_path / "x.db.afmrl.lock")
