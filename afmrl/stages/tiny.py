"""Tiny extractor stage: a random-weight Qwen2-VL (or text-only Qwen2) built from a config, offline.

``run(cfg, catalog_dir, out_dir)``: a ``from_pretrained``-loadable folder with a BPE tokenizer (and,
for ``tiny.kind: vlm``, an image processor) learnt from the catalogue's text; the SFT stage teaches
it the answer format. Params ``tiny.*``; logged as the MLflow run ``tiny``. On a GPU set
``mllm.model`` to a real id (``Qwen/Qwen2-VL-2B-Instruct``) and give SFT that as its base instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from afmrl.config import Config
from afmrl.models.tiny import build_tiny
from afmrl.tracking.runs import stage_run


def run(cfg: Config, catalog_dir: str | Path | None, out_dir: str | Path) -> Path:
    """``catalog_dir``: whose titles and attributes train the tokenizer (None: the schema's words alone)."""
    t = cfg.tiny
    with stage_run(cfg.tracking, "tiny") as run_:
        run_.log_config(cfg, ("tiny",), catalog=str(catalog_dir))
        path = build_tiny(t.kind, out_dir, catalog_dir, vocab_size=t.vocab_size, seed=t.seed)
        info = Path(path) / "afmrl_build.json"
        if info.is_file():
            figures = json.loads(info.read_text(encoding="utf-8"))
            run_.log_metrics({k: float(figures[k]) for k in ("params", "vocab_size") if k in figures})
    return Path(path)
