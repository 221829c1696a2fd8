"""Stage runs on real stores: concurrent writers, credential redaction, an unreachable server,
the pipeline's parent run from the CLI (as around `dvc repro`), the extractor in the registry."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from afmrl.config import load_config
from afmrl.tracking.datasets import catalog_digest
from afmrl.tracking.redact import MASK, is_secret_key, scrub
from afmrl.tracking.runs import PARENT_RUN_ENV, PIPELINE_ID_ENV, stage_run
from afmrl.tracking.store import TrackingUnavailable

REPO = Path(__file__).resolve().parents[2]


def _client(uri: str) -> MlflowClient:
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- two processes, one fresh SQLite store ----

WORKER = """
import sys, time
from pathlib import Path
from afmrl.config import load_config
from afmrl.tracking.runs import stage_run
from afmrl.tracking.store import connect
name, sync = sys.argv[1], Path(sys.argv[2])

def barrier(tag):  # both processes pass together
    (sync / f"{tag}-{name}").touch()
    deadline = time.time() + 120
    while len(list(sync.glob(f"{tag}-*"))) < 2 and time.time() < deadline:
        time.sleep(0.01)

cfg = load_config(None)  # the default store: sqlite:///mlflow.db in the working directory
assert cfg.tracking.resolved_uri() == "sqlite:///mlflow.db"
barrier("create")  # race to create the store and the experiment
connect(cfg.tracking)
barrier("log")  # then log at the same time
with stage_run(cfg.tracking, f"worker-{name}") as run:
    run.log_params({f"p{i}": f"{name}-{i}" for i in range(120)})
    for step in range(40):
        run.log_metrics({"loss": 1.0 / (step + 1), "step_id": step}, step=step)
    run.set_tags({"worker": name})
    for i in range(2):
        f = sync / f"{name}-{i}.json"
        f.write_text('{"from": "%s"}' % name)
        run.log_artifact(f, artifact_path="files")
print(run.run_id)
"""


@pytest.mark.slow
def test_two_processes_log_at_once_to_the_default_sqlite_store(tmp_path):
    work = tmp_path / "project"  # no mlflow.db yet: both processes race to create it
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in (PARENT_RUN_ENV, PIPELINE_ID_ENV, "MLFLOW_TRACKING_URI")}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, name, str(tmp_path)], env=env, cwd=work,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in "AB"]  # fmt: skip
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    client = _client(f"sqlite:///{work / 'mlflow.db'}")
    runs = [client.get_run(out.strip().splitlines()[-1]) for out, _ in outs]
    assert max(r.info.start_time for r in runs) < min(r.info.end_time for r in runs), "the runs did not overlap"
    for name, run in zip("AB", runs, strict=True):
        assert run.info.artifact_uri.startswith((work / "mlartifacts").as_uri())
        assert run.info.status == "FINISHED" and run.data.tags["worker"] == name
        assert run.data.params == {f"p{i}": f"{name}-{i}" for i in range(120)}
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted(m.step for m in history) == list(range(40))
        assert len(client.get_metric_history(run.info.run_id, "step_id")) == 40
        assert sorted(a.path for a in client.list_artifacts(run.info.run_id, "files")) == [
            f"files/{name}-0.json", f"files/{name}-1.json"]  # fmt: skip


# ---- credentials ----

SECRETS = {
    "MILVUS_TOKEN": "milvus-tok-9f8e7d6c",
    "AWS_SECRET_ACCESS_KEY": "aws-secret-XYZ123abc",
    "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE12345",
    "MLFLOW_TRACKING_PASSWORD": "trk-pass-4567xyz",
}
CONFIG_SECRETS = ("cfg-token-abc123", "cfg-s3-secret-999", "db-pass-777", "tagpass-321", "never-seen-before-77")


@pytest.mark.slow
def test_log_config_logs_the_stage_sections_and_its_inputs(store_cfg):
    cfg = load_config(None, [f"tracking.uri={store_cfg.tracking.uri}", "index.token=cfg-idx-token-42",
                             "rar.trl.learning_rate=0.002"])  # fmt: skip
    with stage_run(cfg.tracking, "rar") as run:
        run.log_config(cfg, ("rar", "index"), catalog="data/validated", keys=["brand", "colour"], pairs={"n": 3})
    params = _client(cfg.tracking.resolved_uri()).get_run(run.run_id).data.params
    assert params["rar.trl.learning_rate"] == "0.002" and params["rar.splits"] == '["train"]'
    assert params["index.token"] == MASK and "cfg-idx-token-42" not in json.dumps(params)
    assert params["catalog"] == "data/validated" and params["keys"] == '["brand", "colour"]' and params["pairs.n"] == "3"
    assert not any(k.startswith(("train.", "encoder.", "tracking.")) for k in params)  # only the named sections


@pytest.mark.slow
def test_credentials_never_reach_mlflow_or_the_console(store_cfg, tmp_path, monkeypatch, capfd):
    for k, v in SECRETS.items():
        monkeypatch.setenv(k, v)
    assert is_secret_key("milvus.token") and is_secret_key("s3.secret_key") and is_secret_key("apiKey")
    assert not is_secret_key("mllm.max_new_tokens") and not is_secret_key("attributes.keys")

    note = tmp_path / "connection.txt"
    note.write_text(f"milvus token {SECRETS['MILVUS_TOKEN']}, s3 {CONFIG_SECRETS[1]}\n")
    (tmp_path / "weights.json").write_text(json.dumps({"aws": SECRETS["AWS_SECRET_ACCESS_KEY"]}))
    with stage_run(store_cfg.tracking, "index", tags={"source": "https://ci:tagpass-321@git.example/x"},
                   config=store_cfg) as run:  # fmt: skip
        run.log_params({
            "milvus": {"uri": "https://root:db-pass-777@milvus.example:19530", "token": CONFIG_SECRETS[0]},
            "s3": {"endpoint": "http://minio:9000", "secret_key": CONFIG_SECRETS[1]},
            "env_dump": " ".join(f"{k}={v}" for k, v in SECRETS.items()),
        })  # fmt: skip
        run.set_tags({"note": f"uploaded with {CONFIG_SECRETS[1]}"})
        run.log_artifact(note)
        run.log_artifact(tmp_path / "weights.json", artifact_path="cfg")
        run.log_dict({"milvus": {"token": "never-seen-before-77"}, "hosts": ["a"]}, "config/resolved.json")
        print(scrub(f"connecting with {CONFIG_SECRETS[0]} and {SECRETS['MLFLOW_TRACKING_PASSWORD']}"))

    uri = store_cfg.tracking.resolved_uri()
    client = _client(uri)
    data = client.get_run(run.run_id).data
    assert data.params["milvus.token"] == MASK and data.params["s3.secret_key"] == MASK
    assert data.params["milvus.uri"] == f"https://{MASK}@milvus.example:19530"  # the endpoint stays readable
    assert data.params["s3.endpoint"] == "http://minio:9000" and data.params["mllm.max_new_tokens"] == "64"
    assert data.tags["source"] == f"https://{MASK}@git.example/x"

    texts = [json.dumps(data.params), json.dumps(data.tags)]
    local = Path(client.download_artifacts(run.run_id, "", str(tmp_path / "download")))
    files = [p for p in local.rglob("*") if p.is_file()]
    assert {p.name for p in files} == {"connection.txt", "weights.json", "resolved.json"}
    texts += [p.read_text() for p in files]
    out, err = capfd.readouterr()
    texts += [out, err]
    for secret in [*SECRETS.values(), *CONFIG_SECRETS]:
        for text in texts:
            assert secret not in text
    assert MASK in (local / "connection.txt").read_text()


# ---- an unreachable tracking server ----


@pytest.mark.slow
def test_unreachable_server_fails_before_training(store_cfg, tiny_catalog, tmp_path):
    from afmrl.stages import train

    port = _free_port()  # nothing listens there
    cfg = load_config(None, [f"tracking.uri=http://ci:hunter2-pass@127.0.0.1:{port}"])
    started = time.monotonic()
    with pytest.raises(TrackingUnavailable) as info:
        train.run(cfg, tiny_catalog, tmp_path / "train")
    assert time.monotonic() - started < 15, "no retry loop before failing"
    message = str(info.value)
    assert f"http://{MASK}@127.0.0.1:{port} is not reachable" in message and "hunter2-pass" not in message
    assert "tracking.enabled=false" in message and "nothing was run" in message
    assert not (tmp_path / "train").exists(), "no training output may exist"

    from afmrl.cli import app

    result = CliRunner().invoke(app, ["--set", f"tracking.uri=http://ci:other-pass-99@127.0.0.1:{port}", "train",
                                      str(tiny_catalog), "--out", str(tmp_path / "cli")])  # fmt: skip
    assert result.exit_code == 2 and "TrackingUnavailable" in result.output and "not reachable" in result.output
    assert "other-pass-99" not in result.output
    assert not (tmp_path / "cli").exists()


# ---- the parent run, as around `dvc repro` ----


@pytest.mark.slow
def test_run_start_and_end_nest_stage_runs(store_cfg, tiny_catalog, tmp_path, monkeypatch):
    from afmrl.commands.registry import standalone_app

    uri = store_cfg.tracking.resolved_uri()
    project = tmp_path / "project"  # a DVC project: dvc.lock records the catalogue's hash
    (project / ".dvc").mkdir(parents=True)
    rel = os.path.relpath(tiny_catalog, project)
    (project / "dvc.lock").write_text(f"schema: '2.0'\nstages:\n  synth:\n    cmd: afmrl data synth\n    outs:\n"
                                      f"    - path: {rel}\n      hash: md5\n      md5: 0123abcd.dir\n")  # fmt: skip
    monkeypatch.chdir(project)
    monkeypatch.setenv("AFMRL_GIT_COMMIT", "c0ffee0")
    app, runner = standalone_app(), CliRunner()
    started = runner.invoke(app, ["--set", f"tracking.uri={uri}", "--set", "train.steps=7", "run", "start",
                                  "--catalog", str(tiny_catalog), "--pipeline-id", "kfp-run-42"])  # fmt: skip
    assert started.exit_code == 0, started.output
    exports = dict(line.removeprefix("export ").split("=", 1) for line in started.stdout.splitlines()
                   if line.startswith("export "))  # fmt: skip
    assert exports[PIPELINE_ID_ENV] == "kfp-run-42"
    parent_id = exports[PARENT_RUN_ENV]
    for key, value in exports.items():  # what `eval "$(afmrl run start)"` does for the stage processes
        monkeypatch.setenv(key, value)

    with stage_run(store_cfg.tracking, "validate") as ok:
        ok.log_catalog(tiny_catalog, context="validation-input")
    with pytest.raises(RuntimeError), stage_run(store_cfg.tracking, "train"):
        raise RuntimeError("stage crashed")

    ended = runner.invoke(app, ["--set", f"tracking.uri={uri}", "run", "end"])
    assert ended.exit_code == 0, ended.output
    summary = json.loads(ended.stdout)
    assert summary == {"run_id": parent_id, "status": "FAILED",
                       "stages": {"validate": "FINISHED", "train": "FAILED"}}  # fmt: skip

    client = _client(uri)
    parent = client.get_run(parent_id)
    assert parent.info.status == "FAILED" and parent.data.params["train.steps"] == "7"
    lock_md5 = hashlib.md5((project / "dvc.lock").read_bytes()).hexdigest()
    for run in (parent, client.get_run(ok.run_id)):
        tags = run.data.tags
        assert tags["afmrl.git_commit"] == "c0ffee0" and tags["afmrl.dvc_lock_md5"] == lock_md5
        assert tags["afmrl.pipeline_run_id"] == "kfp-run-42"
    assert parent.data.tags["afmrl.data.pipeline.dvc_md5"] == "0123abcd.dir"
    assert parent.data.tags["afmrl.data.pipeline.digest"] == catalog_digest(tiny_catalog)
    child = client.get_run(ok.run_id)
    assert child.data.tags["mlflow.parentRunId"] == parent_id
    assert child.inputs.dataset_inputs[0].dataset.digest == catalog_digest(tiny_catalog)


def test_git_commit_tag_matches_the_checkout():
    from afmrl.tracking.provenance import _git_commit

    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip("not a git checkout")
    assert _git_commit(str(REPO)) == head.stdout.strip()


# ---- the attribute extractor ----


@pytest.mark.slow
def test_extractor_registered_and_fetched_by_alias(store_cfg, tmp_path):
    from afmrl.commands.registry import standalone_app
    from afmrl.tracking.registry import download_extractor

    folder = tmp_path / "rar"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "outputs/models/sft", "r": 16}))
    (folder / "adapter_model.safetensors").write_bytes(os.urandom(2048))
    uri = store_cfg.tracking.resolved_uri()
    app, runner = standalone_app(), CliRunner()
    reg = runner.invoke(app, ["--set", f"tracking.uri={uri}", "register-extractor", str(folder)])
    assert reg.exit_code == 0, reg.output
    doc = json.loads(reg.stdout[reg.stdout.index("{"):])
    assert doc["version"] == 1 and doc["uri"] == "models:/afmrl-attribute-extractor@challenger"
    promoted = runner.invoke(app, ["--set", f"tracking.uri={uri}", "promote", "--model", "extractor", "--version", "1"])
    assert promoted.exit_code == 0, promoted.output

    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    got = download_extractor("models:/afmrl-attribute-extractor@champion", tmp_path / "fetched")
    for name in ("adapter_config.json", "adapter_model.safetensors"):
        assert (got / name).read_bytes() == (folder / name).read_bytes()
    version = _client(uri).get_model_version("afmrl-attribute-extractor", "1")
    assert version.tags["afmrl.kind"] == "lora-adapter" and version.tags["afmrl.base_model"] == "outputs/models/sft"
