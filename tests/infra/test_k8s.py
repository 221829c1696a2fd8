"""Kubernetes manifests (MLflow + Postgres + MinIO, KFP GPU training) and Milvus Helm values, validated
offline: kubernetes-validate (bundled schemas, strict), yamllint, and cross-reference checks."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from .validators import (
    K8S_VERSIONS,
    REPO,
    containers_of,
    is_pinned,
    k8s_validate,
    load_docs,
    pod_specs_of,
    yamllint,
)

K8S = REPO / "infra" / "k8s"
HELM = REPO / "infra" / "helm"
MANIFESTS = sorted(K8S.rglob("*.yaml"))
HELM_VALUES = [HELM / "milvus-standalone.values.yaml", HELM / "milvus-cluster.values.yaml"]
SECRETISH = re.compile(r"PASSWORD|SECRET|ACCESS_KEY|ROOT_USER|^PGUSER$|^POSTGRES_USER$|(^|_)TOKEN(_|$)")


def _docs(path: Path) -> list[dict]:
    return load_docs(path.read_text())


def _all_docs() -> list[dict]:
    return [d for p in MANIFESTS for d in _docs(p)]


def test_there_are_manifests_for_each_part():
    names = {p.relative_to(K8S).as_posix() for p in MANIFESTS}
    assert {"mlflow/postgres.yaml", "mlflow/minio.yaml", "mlflow/mlflow.yaml", "mlflow/kustomization.yaml",
            "kfp/gpu-train-podtemplate.yaml", "kfp/pytorchjob-train.yaml"} <= names  # fmt: skip
    assert all(p.exists() for p in HELM_VALUES)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.relative_to(K8S).as_posix())
def test_manifest_validates_against_the_kubernetes_schemas(path, version):
    assert k8s_validate(path.read_text(), version, base_dir=path.parent) == []


@pytest.mark.parametrize("path", [*MANIFESTS, *HELM_VALUES], ids=lambda p: p.relative_to(REPO).as_posix())
def test_yaml_passes_yamllint(path):
    assert yamllint(path.read_text()) == []


def test_the_validators_reject_broken_manifests():
    good = (K8S / "mlflow" / "mlflow.yaml").read_text()
    assert k8s_validate(good, "1.30.0") == []
    typo = good.replace("  replicas: 1\n", "  replica: 1\n", 1)  # unknown field (strict)
    assert any("replica" in e for e in k8s_validate(typo, "1.30.0"))
    wrong_type = good.replace("containerPort: 5000", "containerPort: http-port")
    assert any("containerPort" in e for e in k8s_validate(wrong_type, "1.30.0"))
    assert k8s_validate("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n", "1.30.0")

    job = (K8S / "kfp" / "pytorchjob-train.yaml").read_text()
    assert k8s_validate(job, "1.30.0") == []
    assert any(
        "restartPolicy" in e
        for e in k8s_validate(
            job.replace("restartPolicy: OnFailure", "restartPolicy: Sometimes", 1), "1.30.0"
        )
    )
    assert any("Master" in e for e in k8s_validate(job.replace("    Master:", "    Leader:"), "1.30.0"))
    bad_pod = job.replace("- name: dshm\n                  mountPath: /dev/shm", "- mountPath: 42", 1)
    assert any("mountPath" in e or "name" in e for e in k8s_validate(bad_pod, "1.30.0"))

    kust = (K8S / "mlflow" / "kustomization.yaml").read_text()
    assert k8s_validate(kust, "1.30.0", base_dir=K8S / "mlflow") == []
    missing = kust.replace("  - mlflow.yaml\n", "  - mlflow.yaml\n  - missing.yaml\n")
    assert k8s_validate(missing, "1.30.0", base_dir=K8S / "mlflow") == [
        f"Kustomization: resource missing.yaml not found in {K8S / 'mlflow'}"
    ]

    assert yamllint("a: 1\na: 2\n")  # duplicate key
    assert yamllint("a:\n   b: 1\n  c: 2\n")  # broken indentation


def literal_credentials(docs: list[dict]) -> tuple[list[str], set[str]]:
    """Credential-like env vars not taken from a Secret, URLs with user info; and the Secrets referenced."""
    problems, refs = [], set()
    for doc in docs:
        if doc.get("kind") == "Secret" and (doc.get("data") or doc.get("stringData")):
            problems.append(f"Secret {doc['metadata']['name']} with values committed")
        for c in containers_of(doc):
            for env in c.get("env", []):
                ref = (env.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    refs.add(ref["name"])
                elif SECRETISH.search(env["name"]):
                    problems.append(f"{c['name']}: {env['name']} must come from a Secret")
                if re.search(r"://[^/\s]*:[^/\s]*@", env.get("value", "")):
                    problems.append(f"{c['name']}: {env['name']} has credentials in a URL")
    return problems, refs


def test_credentials_come_from_secrets_never_literal():
    text = "\n".join(p.read_text() for p in [*MANIFESTS, *HELM_VALUES])
    assert "minioadmin" not in text
    problems, refs = literal_credentials(_all_docs())
    assert problems == []
    broken = yaml.safe_load(
        "kind: Pod\nspec:\n  containers:\n  - name: c\n    env:\n    - {name: PGPASSWORD, value: hunter2}\n"
        "    - {name: DB, value: 'postgresql://u:p@db/x'}\n"
    )
    assert len(literal_credentials([broken])[0]) == 2
    # every Secret referenced is documented with its creation command
    documented = set(
        re.findall(r"create secret generic (\S+)", (K8S / "mlflow" / "kustomization.yaml").read_text())
    )
    assert refs and refs <= documented, refs - documented
    for path in HELM_VALUES:
        s3 = yaml.safe_load(path.read_text())["externalS3"]
        assert s3["accessKey"] == "" and s3["secretKey"] == ""  # set at install time from the Secret


def test_mlflow_server_uses_postgres_and_s3_without_credentials_in_the_uri():
    (deploy,) = [d for d in _docs(K8S / "mlflow" / "mlflow.yaml") if d["kind"] == "Deployment"]
    (c,) = containers_of(deploy)
    args = dict(a.removeprefix("--").split("=", 1) for a in c["args"] if "=" in a)
    assert args["backend-store-uri"].startswith("postgresql") and "@" not in args["backend-store-uri"]
    assert args["artifacts-destination"].startswith("s3://")
    assert "--serve-artifacts" in c["args"]
    envs = {e["name"] for e in c["env"]}
    assert {
        "PGUSER",
        "PGPASSWORD",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "MLFLOW_S3_ENDPOINT_URL",
    } <= envs
    host = args["backend-store-uri"].split("//")[1].split(":")[0]
    services = {d["metadata"]["name"] for d in _all_docs() if d["kind"] == "Service"}
    assert host in services and "afmrl-minio" in services


def test_services_select_pods_and_named_ports_and_claims_exist():
    docs = _all_docs()
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]
    claims = {d["metadata"]["name"] for d in docs if d["kind"] == "PersistentVolumeClaim"}
    for svc in (d for d in docs if d["kind"] == "Service"):
        sel = svc["spec"]["selector"]
        matches = [w for w in workloads if sel.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert len(matches) == 1, f"service {svc['metadata']['name']} selects {len(matches)} workloads"
        port_names = {p.get("name") for c in containers_of(matches[0]) for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert isinstance(port["targetPort"], int) or port["targetPort"] in port_names
    for w in workloads:
        assert (
            w["spec"]["selector"]["matchLabels"].items()
            <= w["spec"]["template"]["metadata"]["labels"].items()
        )
        for vol in w["spec"]["template"]["spec"].get("volumes", []):
            if "persistentVolumeClaim" in vol:
                assert vol["persistentVolumeClaim"]["claimName"] in claims
    for doc in docs:
        for c in containers_of(doc):
            assert "image" in c and (is_pinned(c["image"]) or c["image"] == "afmrl-mlflow"), c.get("image")
            assert c.get("securityContext", {}).get("allowPrivilegeEscalation") is False
    kust = yaml.safe_load((K8S / "mlflow" / "kustomization.yaml").read_text())
    assert sorted(kust["resources"]) == sorted(
        p.name for p in (K8S / "mlflow").glob("*.yaml") if p.name != "kustomization.yaml"
    )
    assert any(i["name"] == "afmrl-mlflow" for i in kust["images"])  # the placeholder image gets a registry


@pytest.mark.parametrize("name", ["gpu-train-podtemplate.yaml", "pytorchjob-train.yaml"])
def test_gpu_training_pods_request_gpus_and_land_on_gpu_nodes(name):
    (doc,) = _docs(K8S / "kfp" / name)
    specs = pod_specs_of(doc)
    assert specs
    for spec in specs:
        assert spec.get("nodeSelector"), "GPU pods need a node selector"
        assert any(t.get("key") == "nvidia.com/gpu" for t in spec.get("tolerations", []))
        shm = [v for v in spec.get("volumes", []) if v.get("emptyDir", {}).get("medium") == "Memory"]
        assert shm and any(
            m["mountPath"] == "/dev/shm" for c in spec["containers"] for m in c.get("volumeMounts", [])
        )
        for c in spec["containers"]:
            gpus = int(c["resources"]["limits"]["nvidia.com/gpu"])
            assert gpus >= 1 and "nvidia.com/gpu" not in c["resources"].get("requests", {})
            launcher = " ".join(c["command"])
            assert launcher.startswith(("accelerate launch", "torchrun")) and "afmrl.cli" in launcher
            if launcher.startswith("accelerate"):
                assert f"--num_processes={gpus}" in c["command"]
            if doc["kind"] == "PyTorchJob":
                assert int(doc["spec"]["nprocPerNode"]) == gpus


@pytest.mark.parametrize("path", HELM_VALUES, ids=lambda p: p.name)
def test_milvus_helm_values(path):
    values = yaml.safe_load(path.read_text())
    cluster = "cluster" in path.name
    assert values["cluster"]["enabled"] is cluster
    assert is_pinned(f"{values['image']['all']['repository']}:{values['image']['all']['tag']}")
    assert values["minio"]["enabled"] is False and values["externalS3"]["enabled"] is True
    if cluster:
        assert values["etcd"]["replicaCount"] == 3 and values["queryNode"]["replicas"] >= 2
        assert values["pulsarv3"]["enabled"] is True
    else:
        assert values["etcd"]["replicaCount"] == 1 and values["standalone"]["messageQueue"] == "rocksmq"
        assert values["pulsarv3"]["enabled"] is False
