"""Tiny extractor stage: the extractor SFT starts from (params ``tiny.*``, ``mllm.model``).

``run(cfg, catalog_dir, out_dir)``: with ``mllm.model: tiny`` (the default, offline), a random-weight
Qwen2-VL (or text-only Qwen2) built from a config, a ``from_pretrained``-loadable folder with a BPE
tokenizer (and, for ``tiny.kind: vlm``, an image processor) learnt from the catalogue's text; the SFT
stage teaches it the answer format. With ``mllm.model`` a hub id or a folder (a real MLLM,
``Qwen/Qwen2-VL-2B-Instruct``), nothing is built: the folder gets ``base.json`` ``{"model": ...}``,
which SFT and RAR resolve to that model (:func:`afmrl.models.mllm.resolve_model`), so the DVC and
Kubeflow DAGs stay the same. Logged as the MLflow run ``tiny``.
"""

from __future__ import annotations

import json
from pathlib import Path

from afmrl.atomic import write_json_atomic
from afmrl.config import Config
from afmrl.models.mllm import BASE_FILE, TINY
from afmrl.models.tiny import build_tiny
from afmrl.tracking.runs import stage_run


def run(cfg: Config, catalog_dir: str | Path | None, out_dir: str | Path) -> Path:
    """``catalog_dir``: whose titles and attributes train the tokenizer (None: the schema's words alone).
    Returns the model folder (the base pointer's folder when ``mllm.model`` names a real model)."""
    t, model = cfg.tiny, cfg.mllm.model
    with stage_run(cfg.tracking, "tiny") as run_:
        run_.log_config(cfg, ("tiny",), catalog=str(catalog_dir), mllm_model=model)
        if model != TINY:
            out = Path(out_dir)
            out.mkdir(parents=True, exist_ok=True)
            write_json_atomic(out / BASE_FILE, {"model": model})
            run_.set_tags({"afmrl.tiny.base": model})
            return out
        path = build_tiny(t.kind, out_dir, catalog_dir, vocab_size=t.vocab_size, seed=t.seed)
        (Path(path) / BASE_FILE).unlink(missing_ok=True)  # a pointer written here before would shadow the model
        info = Path(path) / "afmrl_build.json"
        if info.is_file():
            figures = json.loads(info.read_text(encoding="utf-8"))
            run_.log_metrics({k: float(figures[k]) for k in ("params", "vocab_size") if k in figures})
    return Path(path)
