"""Representation models behind one interface (:class:`afmrl.models.encoders.base.Encoder`), and the
one way to load them (:func:`load_encoder`)."""

from __future__ import annotations

import json
from pathlib import Path

from afmrl.config import EncoderConfig, TrackingConfig
from afmrl.errors import ConfigError
from afmrl.models.encoders.base import Encoder
from afmrl.models.encoders.ref import PRETRAINED, EncoderRef, is_mlflow_uri, resolve


def load_encoder(ref: str | Path | EncoderRef, cfg: EncoderConfig | None = None,
                 tracking: TrackingConfig | None = None) -> Encoder:  # fmt: skip
    """Load an encoder for inference (eval mode, gradients off) from any reference:

    - an afmrl encoder folder (``config.json`` naming ``afmrl_encoder``, from ``afmrl train``);
    - an MLflow URI (``models:/afmrl-encoder@champion``, ``runs:/<id>/encoder``): downloaded, loaded,
      the download removed (``tracking`` says which store);
    - ``pretrained``: the packaged backbones without trained heads
      (:class:`~afmrl.models.encoders.backbone.BackboneEncoder`);
    - a hub id or Hugging Face folder of the kind in ``cfg.kind`` (``clip`` for CLIP/SigLIP,
      ``vlm2vec`` for an MLLM);
    - an :class:`~afmrl.models.encoders.ref.EncoderRef` already resolved (its files still there).
    """
    cfg = cfg or EncoderConfig()
    if isinstance(ref, EncoderRef):
        return _frozen(_construct(ref.path, cfg))
    if is_mlflow_uri(ref):
        resolved = resolve(ref, tracking, cfg)
        try:
            return _frozen(_construct(resolved.path, cfg))
        finally:
            resolved.cleanup()
    return _frozen(_construct(str(ref), cfg))


def _construct(path_or_id: str, cfg: EncoderConfig) -> Encoder:
    if path_or_id == PRETRAINED:
        from afmrl.models.encoders.backbone import BackboneEncoder

        return BackboneEncoder(cfg)
    folder = Path(path_or_id).expanduser()
    meta_file = folder / "config.json"
    if meta_file.is_file() and "afmrl_encoder" in json.loads(meta_file.read_text()):
        from afmrl.models.encoders.dual import DualEncoder

        return DualEncoder.from_pretrained(folder)
    if cfg.kind == "clip":
        from afmrl.models.encoders.hf_clip import HFClipEncoder

        return HFClipEncoder(path_or_id, cfg.max_tokens, cfg.batch_size)
    if cfg.kind == "vlm2vec":
        from afmrl.models.encoders.vlm2vec import VLM2VecEncoder

        return VLM2VecEncoder(path_or_id, cfg.batch_size)
    raise ConfigError(f"{path_or_id}: not an afmrl encoder folder (config.json + model.safetensors from `afmrl train`), "
                      f"not {PRETRAINED!r} and not an MLflow URI; for a hub model set encoder.kind to clip or vlm2vec",
                      field="encoder")  # fmt: skip


def _frozen(model: Encoder) -> Encoder:
    import torch

    if isinstance(model, torch.nn.Module):
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
    return model


__all__ = ["Encoder", "EncoderRef", "load_encoder"]
