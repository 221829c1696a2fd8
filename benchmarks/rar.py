"""RAR benchmark: rules vs SFT only vs SFT + RAR, on attribute quality and on downstream retrieval.

    python benchmarks/rar.py --dataset synthetic --out outputs/bench/rar-synthetic.json
    python benchmarks/rar.py --dataset grocery-store --data ../shared/data/grocery-store --out outputs/bench/rar-grocery.json

For each extractor (arm) the whole catalogue is extracted with the seller-stated attributes NOT merged
(`attributes.use_provided=false`: on grocery-store they are the class labels), then:
- attribute quality on the evaluation split (never trained on): micro/macro F1 against
  `reference_attributes`, valid-JSON rate;
- downstream retrieval: AGCL trained on the arm's attributes (`encoder.attributes_source=file`, frozen
  towers, same seed, steps and batch for every arm) and evaluated on the evaluation split;
- wall time of the arm (building, SFT, RAR, extraction).
Arms: `rules`; `sft` (a tiny Qwen2-VL from `afmrl models tiny`, SFT warm start on the train
split); `sft+rar` (the SFT model reinforced with GRPO + LoRA, reward = retrieval improvement under the
rules arm's AGCL encoder, frozen).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("AFMRL_PROGRESS", "off")

from afmrl.attributes.evaluate import evaluate_attributes  # noqa: E402
from afmrl.catalog.io import read_catalog  # noqa: E402
from afmrl.catalog.schema import parse_json_object  # noqa: E402
from afmrl.config import Config, load_config  # noqa: E402
from afmrl.models.tiny import build_tiny  # noqa: E402
from afmrl.retrieval.evaluate import resolve_split  # noqa: E402
from afmrl.stages import evaluate, extract, train  # noqa: E402
from afmrl.stages import rar as rar_stage  # noqa: E402
from afmrl.stages import sft as sft_stage  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PRIMARY = {"synthetic": "listing_R@1", "grocery-store": "photo_to_catalogue_R@1"}


def quality(catalog_dir: Path, table: Path, split: str) -> dict[str, float]:
    listings = read_catalog(catalog_dir).listings
    rows = pd.read_parquet(table).set_index("listing_id")
    ev = listings[(listings["split"] == split) & (listings["reference_attributes"] != "{}")]
    preds = [json.loads(rows.loc[i, "extracted"]) if isinstance(rows.loc[i, "extracted"], str) else {}
             for i in ev["listing_id"]]  # fmt: skip
    refs = [parse_json_object(r) for r in ev["reference_attributes"]]
    m = evaluate_attributes(preds, refs, valid=[bool(rows.loc[i, "valid"]) for i in ev["listing_id"]])
    return {"micro_f1": m["micro"]["f1"], "macro_f1": m["macro_f1"], "valid_json_rate": float(rows["valid"].mean())}


def downstream(cfg: Config, catalog_dir: Path, table: Path, work: Path) -> tuple[dict[str, float], Path]:
    trained = train.run(cfg, catalog_dir, work / "train", cache_dir=work.parent / "features", attributes_file=table)
    ev = evaluate.run(cfg, catalog_dir, trained.encoder_dir, work / "eval", cache_dir=work.parent / "features")
    return {k: v for k, v in ev.result.metrics.items() if k.endswith(("R@1", "mAP@10"))}, trained.encoder_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=sorted(PRIMARY), default="synthetic")
    ap.add_argument("--data", type=Path, default=None)
    ap.add_argument("--steps", type=int, default=300, help="AGCL steps per arm")
    ap.add_argument("--sft-steps", type=int, default=300)
    ap.add_argument("--rar-steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=Path("outputs/bench/rar.json"))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = args.work or Path("outputs/benchmarks") / f"rar-{args.dataset}"
    work.mkdir(parents=True, exist_ok=True)
    base = ["tracking.enabled=false", "attributes.use_provided=false", f"attributes.cache_path={work / 'cache.sqlite'}",
            f"train.steps={args.steps}", "train.method=agcl", "eval.split=val" if args.dataset == "grocery-store"
            else "eval.split=test", "train.batch_size=128" if args.dataset == "grocery-store" else "train.batch_size=64"]
    cfg = load_config(REPO / "params.yaml", base)
    catalog = work / "catalog"
    if not (catalog / "listings.parquet").exists():
        if args.dataset == "synthetic":
            from afmrl.catalog.synth import generate

            generate(cfg.synth, cfg.splits, catalog)
        else:
            from afmrl.catalog.importers import import_grocery_store

            import_grocery_store(args.data, catalog)
    split = resolve_split(read_catalog(catalog).listings, cfg.eval.split)  # an absent split is an error
    results: dict[str, dict] = {}

    t0 = time.perf_counter()
    rules = extract.run(cfg, catalog, work / "rules")
    rules_time = time.perf_counter() - t0
    metrics, rules_encoder = downstream(cfg, catalog, rules.table_path, work / "arm-rules")
    results["rules"] = {**quality(catalog, rules.table_path, split), **metrics, "seconds": rules_time}
    print("rules", results["rules"], flush=True)

    t0 = time.perf_counter()
    tiny = build_tiny("vlm", work / "tiny-vlm", catalog)
    sft_cfg = load_config(REPO / "params.yaml", [*base, f"mllm.model={tiny}", f"sft.trl.max_steps={args.sft_steps}",
                                                 "sft.trl.learning_rate=0.003"])  # fmt: skip
    sft = sft_stage.run(sft_cfg, catalog, tiny, work / "sft")
    ext = extract.run(load_config(REPO / "params.yaml", [*base, "attributes.backend=mllm", f"mllm.model={sft.model_dir}"]),
                      catalog, work / "sft-attributes")  # fmt: skip
    sft_time = time.perf_counter() - t0
    metrics, _ = downstream(cfg, catalog, ext.table_path, work / "arm-sft")
    results["sft"] = {**quality(catalog, ext.table_path, split), **metrics, "seconds": sft_time,
                      "sft_final_loss": sft.final_loss}  # fmt: skip
    print("sft", results["sft"], flush=True)

    t0 = time.perf_counter()
    rar_cfg = load_config(REPO / "params.yaml", [*base, f"rar.trl.max_steps={args.rar_steps}"])
    rar = rar_stage.run(rar_cfg, catalog, sft.model_dir, rules_encoder, work / "rar")
    model = rar.model_dir or rar.adapter_dir
    ext = extract.run(load_config(REPO / "params.yaml", [*base, "attributes.backend=mllm", f"mllm.model={model}"]),
                      catalog, work / "rar-attributes")  # fmt: skip
    rar_time = time.perf_counter() - t0 + sft_time
    metrics, _ = downstream(cfg, catalog, ext.table_path, work / "arm-rar")
    rewards = [h.get("rewards/retrieval/mean") for h in rar.history if "rewards/retrieval/mean" in h]

    def mean_of(key: str) -> float | None:
        vals = [h[key] for h in rar.history if key in h]
        return float(sum(vals) / len(vals)) if vals else None

    results["sft+rar"] = {**quality(catalog, ext.table_path, split), **metrics, "seconds": rar_time,
                          "rar_steps": rar.steps, "adapter_change": rar.adapter_change,
                          "retrieval_reward_first": rewards[0] if rewards else None,
                          "retrieval_reward_last": rewards[-1] if rewards else None,
                          "retrieval_reward_mean": mean_of("rewards/retrieval/mean"),
                          "reward_std_mean": mean_of("reward_std"),  # within-group spread: the GRPO signal
                          "frac_reward_zero_std": mean_of("frac_reward_zero_std"),  # groups with no gradient
                          "kl_mean": mean_of("kl")}  # fmt: skip
    print("sft+rar", results["sft+rar"], flush=True)

    primary = PRIMARY[args.dataset]
    lines = [f"**{args.dataset}** (split `{split}`; AGCL {args.steps} steps per arm; SFT {args.sft_steps} steps; "
             f"RAR {args.rar_steps} GRPO steps)", "", f"| extractor | micro F1 | macro F1 | valid JSON | {primary} | "
             "wall s |", "|---|---|---|---|---|---|"]  # fmt: skip
    r = results["sft+rar"]
    diag = (f"RAR diagnostics: retrieval reward {r['retrieval_reward_first']:+.4f} (first step) -> "
            f"{r['retrieval_reward_last']:+.4f} (last), mean {r['retrieval_reward_mean']:+.4f}; within-group reward std "
            f"{r['reward_std_mean']:.4f}; groups with zero reward spread {r['frac_reward_zero_std']:.2f}; "
            f"KL {r['kl_mean']:.5f}; max LoRA weight change {r['adapter_change']:.2e}.")
    for arm, r in results.items():
        lines.append(f"| {arm} | {r['micro_f1']:.3f} | {r['macro_f1']:.3f} | {r['valid_json_rate']:.3f} | "
                     f"{r.get(primary, float('nan')):.3f} | {r['seconds']:.0f} |")  # fmt: skip
    lines += ["", diag]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"dataset": args.dataset, "split": split, "arms": results}, indent=2) + "\n")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
