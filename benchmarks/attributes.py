"""Attribute extraction and RAR benchmark: rules vs a tiny Qwen2-VL (after SFT), then a few GRPO steps.

    python benchmarks/attributes.py --out outputs/bench/attributes.json [--wdc ../shared/data/wdc-products]

On the synthetic catalogue (``synth.*`` defaults: 24 base products, 72 products, 288 listings):
1. rules backend on every listing: listings/s, per-key accuracy and micro/macro F1 against
   ``reference_attributes``, with the seller-stated attributes merged (``attributes``) and without
   (``extracted``);
2. a tiny Qwen2-VL (``afmrl models tiny``) warm-started by SFT on the train split, then greedy
   extraction of the val + test listings (never trained on): listings/s (batch ``mllm.batch_size``,
   one CPU thread), valid-JSON rate and F1; a re-run to show the cache;
3. RAR: ``--rar-steps`` GRPO steps (LoRA, target ``product``, text gallery, frozen MiniLM reward
   encoder): seconds per step and the logged reward components.
With ``--wdc``: the rules backend on WDC Products (brand accuracy where the offer states a brand) and how it
reads pairs of offers (``afmrl.attributes.evaluate.pair_agreement``: same-product pairs agreeing on every key
or one key apart, and different-product pairs of one brand).
Timings are wall-clock on whatever machine runs it; the JSON records the platform and threads.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("AFMRL_PROGRESS", "off")

from afmrl.attributes.evaluate import pair_agreement  # noqa: E402
from afmrl.attributes.extractors.rules import RuleExtractor  # noqa: E402
from afmrl.catalog import read_catalog  # noqa: E402
from afmrl.catalog.synth import generate  # noqa: E402
from afmrl.config import load_config  # noqa: E402
from afmrl.models.tiny import build_tiny  # noqa: E402
from afmrl.stages import extract  # noqa: E402
from afmrl.stages import rar as rar_stage  # noqa: E402
from afmrl.stages import sft as sft_stage  # noqa: E402


def _summary(m: dict) -> dict:
    return {"micro_f1": round(m["micro"]["f1"], 4), "macro_f1": round(m["macro_f1"], 4),
            "exact_match": round(m["exact_match"], 4), "valid_json_rate": m.get("valid_json_rate"),
            "accuracy": {k: round(v["accuracy"], 4) for k, v in m["per_key"].items()}}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("outputs/bench/attributes.json"))
    ap.add_argument("--sft-steps", type=int, default=300)
    ap.add_argument("--rar-steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--wdc", type=Path, default=None, help="WDC Products folder (tableA.csv)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="afmrl-bench-attrs-"))
    base = ["tracking.enabled=false", f"attributes.cache_path={work / 'cache.sqlite'}"]
    cfg = load_config(None, base)
    catalog = work / "synthetic"
    generate(cfg.synth, cfg.splits, catalog)
    results: dict = {"platform": platform.platform(), "torch_threads": torch.get_num_threads(),
                     "catalog": {"base_products": cfg.synth.n_base_products}}  # fmt: skip

    rules = extract.run(cfg, catalog, work / "rules")
    results["rules"] = {"listings": rules.n, "listings_per_s": round(rules.n / sum(
        pd.read_parquet(rules.table_path)["seconds"]), 1),
        **{k: _summary(v) for k, v in rules.metrics.items()}}  # fmt: skip

    tiny = build_tiny("vlm", work / "tiny-vlm", catalog)
    sft_cfg = load_config(None, [*base, f"mllm.model={tiny}", f"sft.trl.max_steps={args.sft_steps}",
                                 "sft.trl.learning_rate=0.003"])  # fmt: skip
    sft = sft_stage.run(sft_cfg, catalog, tiny, work / "sft")
    results["sft"] = {"examples": sft.examples, "steps": sft.steps, "final_loss": round(sft.final_loss, 4),
                      "seconds_per_step": round(sft.seconds / sft.steps, 4)}  # fmt: skip
    ext_cfg = load_config(None, [*base, "attributes.backend=mllm", f"mllm.model={sft.model_dir}",
                                 "attributes.splits=[val,test]"])  # fmt: skip
    t0 = time.perf_counter()
    mllm = extract.run(ext_cfg, catalog, work / "mllm")
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    again = extract.run(ext_cfg, catalog, work / "mllm-again")
    results["mllm"] = {"listings": mllm.n, "listings_per_s": round(mllm.listings_per_s, 2),
                       "stage_seconds": round(first, 2), "rerun_cache_hits": again.cache_hits,
                       "rerun_stage_seconds": round(time.perf_counter() - t0, 2),
                       **{k: _summary(v) for k, v in mllm.metrics.items()}}  # fmt: skip
    rules_eval = load_config(None, [*base, "attributes.splits=[val,test]"])
    results["rules_val_test"] = {k: _summary(v) for k, v in extract.run(rules_eval, catalog, work / "r2").metrics.items()}

    rar_cfg = load_config(None, [*base, f"rar.trl.max_steps={args.rar_steps}", "rar.max_prompts=32",
                                 "rar.trl.max_completion_length=64"])  # fmt: skip
    rar = rar_stage.run(rar_cfg, catalog, sft.model_dir, "pretrained", work / "rar")
    keys = ("rewards/retrieval/mean", "rewards/format/mean", "kl", "completions/mean_length", "rar/valid_json_rate",
            "rar/rr_with_attributes", "rar/rr_without_attributes")  # fmt: skip
    results["rar"] = {"prompts": rar.prompts, "gallery": rar.gallery, "steps": rar.steps,
                      "seconds_per_step": round(rar.seconds_per_step, 3), "adapter_change": rar.adapter_change,
                      "per_step": [{k: round(h[k], 4) for k in keys if k in h} for h in rar.history if "loss" in h]}

    if args.wdc is not None:
        from afmrl.catalog.importers import import_wdc_products

        wdc = work / "wdc"
        import_wdc_products(args.wdc, wdc, cfg.splits)
        w = extract.run(load_config(None, [*base, "attributes.use_provided=false"]), wdc, work / "wdc-rules")
        results["wdc_rules"] = {"listings": w.n, "listings_per_s": round(w.n / sum(
            pd.read_parquet(w.table_path)["seconds"]), 1),
            "brand_accuracy": round(w.metrics["extracted"]["per_key"]["brand"]["accuracy"], 4),
            "brand_support": w.metrics["extracted"]["per_key"]["brand"]["support"]}  # fmt: skip
        # how the rules (fitted on the training offers) read pairs: agreeing on every key within a product,
        # one key apart across products (README, "Attributes")
        listings = read_catalog(wdc).listings
        fitted = RuleExtractor.from_listings(listings[listings["split"] == "train"])
        results["wdc_rules"]["pair_agreement"] = pair_agreement(fitted.extract_frame(listings),
                                                                list(listings["product_id"]))  # fmt: skip

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
