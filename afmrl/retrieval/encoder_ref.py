"""Encoder references for indexing and search: a local folder, a hub id, or an MLflow artifact URI.

``models:/afmrl-encoder@champion`` (registry alias), ``models:/afmrl-encoder/3``, ``runs:/<run>/encoder``
and ``mlflow-artifacts:/...`` are downloaded with ``mlflow.artifacts.download_artifacts`` into a
temporary folder; the encoder is the folder in the download whose ``config.json`` names an afmrl
encoder (``encoder/`` of a run, ``artifacts/encoder`` of a pyfunc model, or the download itself), else
a Hugging Face folder at the top (``encoder.kind`` clip / vlm2vec).

The fingerprint is a hash of the encoder's files (plus the text settings a non-afmrl encoder takes from
the config), so the same weights give the same index collection wherever they were loaded from.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afmrl.config import EncoderConfig, TrackingConfig
from afmrl.errors import ConfigError

MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")
_BIG_FILE = 64 * 2**20  # files above this are hashed by size, head and tail
_CHUNK = 8 * 2**20


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


def _hash_file(h: Any, path: Path) -> None:
    size = path.stat().st_size
    h.update(f"{size}\0".encode())
    with path.open("rb") as f:
        if size <= _BIG_FILE:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                h.update(chunk)
        else:
            h.update(f.read(_CHUNK))
            f.seek(size - _CHUNK)
            h.update(f.read(_CHUNK))


def fingerprint(path_or_id: str | Path, enc: EncoderConfig | None = None) -> str:
    """Hex digest of the encoder's files (names, sizes, contents); of the id itself for a hub id."""
    h = hashlib.sha256()
    folder = Path(str(path_or_id))
    if folder.is_dir():
        for p in sorted(q for q in folder.rglob("*") if q.is_file()):
            h.update(p.relative_to(folder).as_posix().encode() + b"\0")
            _hash_file(h, p)
        afmrl = _is_afmrl_folder(folder)
    else:
        h.update(str(path_or_id).encode())
        afmrl = False
    if not afmrl and enc is not None:  # the folder's config.json carries these for afmrl encoders
        keys = ("kind", "max_tokens", "image_size", "attributes_in_text", "attributes_source", "attributes_file")
        h.update(json.dumps({k: getattr(enc, k) for k in keys}, sort_keys=True).encode())
    return h.hexdigest()


def resolve(ref: str | Path, tracking: TrackingConfig | None = None, enc: EncoderConfig | None = None) -> EncoderRef:
    """A local folder as is; an MLflow URI downloaded to a temporary folder; anything else a hub id."""
    text = str(ref)
    if is_mlflow_uri(text):
        import mlflow

        mlflow.set_tracking_uri((tracking or TrackingConfig()).resolved_uri())
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
    folder = Path(text).expanduser()
    if folder.is_dir():
        return EncoderRef(str(folder.resolve()), str(folder.resolve()), fingerprint(folder, enc))
    if folder.exists() or enc is None or enc.kind == "dual":
        raise ConfigError(f"{text}: no encoder folder there (config.json + model.safetensors from `afmrl train "
                          "agcl`), and not an MLflow URI (models:/name@alias, runs:/...)", field="encoder")  # fmt: skip
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


def load(ref: str | Path, enc: EncoderConfig, tracking: TrackingConfig | None = None):
    """``(encoder, encoder config used for texts, EncoderRef)``; a dual encoder brings its own config."""
    from afmrl.models.encoders import load_encoder
    from afmrl.models.encoders.dual import DualEncoder

    resolved = resolve(ref, tracking, enc)
    try:
        model = load_encoder(resolved.path, enc)
    finally:
        resolved.cleanup()
    text_cfg = model.cfg if isinstance(model, DualEncoder) else enc
    return model, text_cfg, resolved
