"""The component images: hadolint-clean, pinned bases, torch before afmrl, non-root, no secrets, and a
.dockerignore that lets in exactly what the Dockerfiles copy."""

from __future__ import annotations

import re

import pytest

from .validators import REPO, base_images, dockerfile_instructions, hadolint, is_pinned

DOCKER = REPO / "infra" / "docker"
DOCKERFILES = ["Dockerfile", "Dockerfile.cuda", "Dockerfile.mlflow"]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_passes_hadolint(name):
    findings = hadolint((DOCKER / name).read_text())
    assert findings == [], "\n".join(
        f"{f['line']}: {f['code']} {f['level']} {f['message']}" for f in findings
    )


def test_hadolint_rejects_a_broken_dockerfile():
    broken = (
        "FROM python:latest\n"
        "RUN apt-get update && apt-get install -y curl\n"
        "RUN pip install requests\n"
        "CMD python -m afmrl.cli\n"
    )
    codes = {f["code"] for f in hadolint(broken)}
    assert {"DL3007", "DL3008", "DL3013", "DL3042", "DL3025"} <= codes, codes


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_images_are_pinned_and_the_user_is_not_root(name):
    text = (DOCKER / name).read_text()
    images = base_images(text)
    assert images and all(is_pinned(i) for i in images), images
    users = [rest for ins, rest in dockerfile_instructions(text) if ins == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users


def test_pin_and_from_parsing_catch_unpinned_images():
    assert not is_pinned("python:latest") and not is_pinned("python") and not is_pinned("localhost:5000/py")
    assert is_pinned("python:3.11.13-slim-bookworm") and is_pinned(
        "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04"
    )
    text = "ARG BASE=python:3.11\nFROM ${BASE} AS build\nFROM build\nFROM ubuntu\n"
    assert base_images(text) == ["python:3.11", "ubuntu"]


def test_cpu_image_installs_the_cpu_torch_wheel_before_afmrl():
    text = (DOCKER / "Dockerfile").read_text()
    assert "python:3.11" in base_images(text)[0]
    runs = [rest for ins, rest in dockerfile_instructions(text) if ins == "RUN"]
    torch_at = next(i for i, r in enumerate(runs) if "torch==${TORCH_VERSION}" in r)
    afmrl_at = next(i for i, r in enumerate(runs) if re.search(r"pip install .*/src", r))
    assert torch_at < afmrl_at
    assert "ARG TORCH_VERSION=2.13.0" in text and "download.pytorch.org/whl/cpu" in text


def test_cuda_image_has_a_cuda_base_torch_and_accelerate():
    text = (DOCKER / "Dockerfile.cuda").read_text()
    assert any(i.startswith("nvidia/cuda:") and "runtime" in i for i in base_images(text))
    runs = " ".join(rest for ins, rest in dockerfile_instructions(text) if ins == "RUN")
    assert "torch==${TORCH_VERSION}" in runs and "import accelerate" in runs and "torch.version.cuda" in runs
    assert runs.index("torch==${TORCH_VERSION}") < runs.index("uv pip install /src")


@pytest.mark.parametrize("name", DOCKERFILES)
def test_no_secrets_in_images(name):
    for ins, rest in dockerfile_instructions((DOCKER / name).read_text()):
        if ins in ("ENV", "ARG", "LABEL"):
            assert not re.search(r"(PASSWORD|SECRET|TOKEN|ACCESS_KEY|API_KEY)\w*\s*=", rest, re.I), rest


def _dockerignore() -> tuple[list[str], set[str]]:
    lines = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    return lines, {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}


def test_dockerignore_lets_in_exactly_what_the_images_copy():
    lines, included = _dockerignore()
    assert lines[0] == "*"  # deny by default: data, stores, venvs, .env files never reach the context
    copied = set()
    for name in ("Dockerfile", "Dockerfile.cuda"):  # built with the repository root as context
        for ins, rest in dockerfile_instructions((DOCKER / name).read_text()):
            if ins == "COPY" and "--from=" not in rest:
                parts = [p for p in rest.split() if not p.startswith("--")]
                copied |= {p.rstrip("/").removeprefix("./") for p in parts[:-1]}
    assert copied == included, (copied, included)
    assert all((REPO / p).exists() for p in copied)
    for never in (".env", ".venv", "data", "mlflow.db", "mlartifacts", ".dvc", ".git", "tests"):
        assert never not in included
