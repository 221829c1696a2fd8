"""Representation models behind one interface (:class:`afmrl.models.encoders.base.Encoder`)."""

from __future__ import annotations

import json
from pathlib import Path

from afmrl.config import EncoderConfig
from afmrl.models.encoders.base import Encoder


def load_encoder(path_or_id: str | Path, cfg: EncoderConfig | None = None) -> Encoder:
    """An afmrl encoder folder (``config.json`` with ``afmrl_encoder``), or a hub id / folder of the
    kind in ``cfg.kind`` (``clip`` for CLIP/SigLIP, ``vlm2vec`` for an MLLM)."""
    folder = Path(str(path_or_id))
    meta_file = folder / "config.json"
    if meta_file.exists() and "afmrl_encoder" in json.loads(meta_file.read_text()):
        from afmrl.models.encoders.dual import DualEncoder

        return DualEncoder.from_pretrained(folder)
    cfg = cfg or EncoderConfig()
    if cfg.kind == "clip":
        from afmrl.models.encoders.hf_clip import HFClipEncoder

        return HFClipEncoder(str(path_or_id), cfg.max_tokens, cfg.batch_size)
    if cfg.kind == "vlm2vec":
        from afmrl.models.encoders.vlm2vec import VLM2VecEncoder

        return VLM2VecEncoder(str(path_or_id), cfg.batch_size)
    raise ValueError(f"{path_or_id}: not an afmrl encoder folder; set encoder.kind to clip or vlm2vec")


__all__ = ["Encoder", "load_encoder"]
