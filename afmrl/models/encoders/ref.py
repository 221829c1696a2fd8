"""Encoder references: a local folder, a hub id, ``pretrained``, or an MLflow artifact URI.

``models:/afmrl-encoder@champion`` (registry alias), ``models:/afmrl-encoder/3``, ``runs:/<run>/encoder``
and ``mlflow-artifacts:/...`` are downloaded with ``mlflow.artifacts.download_artifacts`` into a
temporary folder; the encoder is the folder in the download whose ``config.json`` names an afmrl
encoder (``encoder/`` of a run, ``artifacts/encoder`` of a pyfunc model, or the download itself), else
a Hugging Face folder at the top (``encoder.kind`` clip / vlm2vec).

The fingerprint is a hash of the encoder's files (plus the text settings a non-afmrl encoder takes from
the config; :func:`afmrl.digest.folder_digest`), so the same weights give the same index collection
wherever they were loaded from. :func:`afmrl.models.encoders.load_encoder` loads any reference.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afmrl.config import EncoderConfig, TrackingConfig
from afmrl.digest import digest_bytes, folder_digest
from afmrl.errors import ConfigError

MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")
PRETRAINED = "pretrained"  # the packaged backbones without trained heads (BackboneEncoder)
# the settings that change what a non-afmrl encoder computes (an afmrl folder's config.json has them)
_TEXT_SETTINGS = ("kind", "max_tokens", "image_size", "attributes_in_text", "attributes_source", "attributes_file")


def is_mlflow_uri(ref: str | Path) -> bool:
    return str(ref).startswith(MLFLOW_SCHEMES)


@dataclass
class EncoderRef:
    """Where an encoder came from and where its files are now."""

    ref: str  # what the user gave (absolute for local folders)
    path: str  # a local folder, or a hub id passed through
    fingerprint: str
    details: dict[str, Any] = field(default_factory=dict)  # e.g. the registry version behind an alias
    _tmp: Path | None = None

    def cleanup(self) -> None:
        """Remove a downloaded copy (the loaded encoder keeps its weights in memory)."""
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None


def _is_afmrl_folder(folder: Path) -> bool:
    meta = folder / "config.json"
    if not meta.is_file():
        return False
    try:
        return "afmrl_encoder" in json.loads(meta.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def find_encoder_folder(root: Path) -> Path:
    """The afmrl encoder folder inside a download (shallowest first), else an HF folder at the top."""
    candidates = sorted((p.parent for p in root.rglob("config.json") if _is_afmrl_folder(p.parent)),
                        key=lambda p: (len(p.relative_to(root).parts), str(p)))  # fmt: skip
    if candidates:
        return candidates[0]
    if (root / "config.json").is_file():
        return root
    found = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())[:20]
    raise ConfigError(f"the download holds no encoder folder (a config.json naming afmrl_encoder); files: {found}",
                      field="encoder")  # fmt: skip


def fingerprint(path_or_id: str | Path, enc: EncoderConfig | None = None) -> str:
    """Hex digest of the encoder's files (names, sizes, contents); of the id itself for a hub id."""
    folder = Path(str(path_or_id))
    afmrl = folder.is_dir() and _is_afmrl_folder(folder)
    settings = None
    if not afmrl and enc is not None:  # the folder's config.json carries these for afmrl encoders
        settings = {k: getattr(enc, k) for k in _TEXT_SETTINGS}
    if folder.is_dir():
        return folder_digest(folder, extra=settings)
    return digest_bytes(str(path_or_id), *([json.dumps(settings, sort_keys=True)] if settings is not None else []))


def resolve(ref: str | Path, tracking: TrackingConfig | None = None, enc: EncoderConfig | None = None) -> EncoderRef:
    """A local folder as is; an MLflow URI downloaded to a temporary folder; ``pretrained``; anything
    else a hub id."""
    text = str(ref)
    if is_mlflow_uri(text):
        import mlflow

        uri = (tracking or TrackingConfig()).resolved_uri()
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)  # models:/ reads the registry: never one another store left set
        tmp = Path(tempfile.mkdtemp(prefix="afmrl-encoder-"))
        try:
            root = Path(mlflow.artifacts.download_artifacts(artifact_uri=text, dst_path=str(tmp)))
            folder = find_encoder_folder(root)
        except Exception as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, ConfigError):
                raise ConfigError(f"{text}: {exc.message}", field="encoder") from None
            raise ConfigError(f"cannot download encoder {text}: {exc}", field="encoder") from exc
        details = _registry_details(text)
        return EncoderRef(text, str(folder), fingerprint(folder, enc), details, tmp)
    if text == PRETRAINED:
        return EncoderRef(text, text, fingerprint(text, enc or EncoderConfig()))
    folder = Path(text).expanduser()
    if folder.is_dir():
        return EncoderRef(str(folder.resolve()), str(folder.resolve()), fingerprint(folder, enc))
    if folder.exists() or enc is None or enc.kind == "dual":
        raise ConfigError(f"{text}: no encoder folder there (config.json + model.safetensors from `afmrl train`), "
                          f"not {PRETRAINED!r}, and not an MLflow URI (models:/name@alias, runs:/...)",
                          field="encoder")  # fmt: skip
    return EncoderRef(text, text, fingerprint(text, enc))  # a hub id (encoder.kind clip / vlm2vec)


def _registry_details(uri: str) -> dict[str, Any]:
    """For ``models:/name@alias``, the version the alias points at now (the alias moves later)."""
    if not uri.startswith("models:/") or "@" not in uri:
        return {}
    name, alias = uri[len("models:/"):].split("@", 1)
    try:
        from mlflow import MlflowClient

        mv = MlflowClient().get_model_version_by_alias(name.strip("/"), alias)
        return {"registered_model": mv.name, "version": str(mv.version), "alias": alias, "run_id": mv.run_id or ""}
    except Exception:  # the download worked; the version is only informative
        return {}
