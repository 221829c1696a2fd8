"""Retrieval benchmark: zero-shot, InfoNCE, GIST, AGCL and the oracle, same seeds, steps and batch.

    python benchmarks/retrieval.py --dataset grocery-store --data ../shared/data/grocery-store --out results.json

Protocol (README, "Benchmark"): positives are two views of one listing (image + text, or title +
description; two offers of one product for title-only offers); no method sees product labels except
the oracle; products split into train and evaluation (the dataset's own splits for grocery-store);
every method with random batches, InfoNCE and AGCL also with attribute-neighbour (hard) batches;
the batch false-negative rate is measured with the labels (never used by the loss). Also reported:
training samples/s next to a bare torch loop of the same heads and batch, and image embedding
throughput next to the raw backbone forward.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("AFMRL_PROGRESS", "off")

from afmrl.catalog.io import read_catalog  # noqa: E402
from afmrl.config import Config, load_config  # noqa: E402
from afmrl.losses import InfoNCELoss  # noqa: E402
from afmrl.models.encoders.base import load_image  # noqa: E402
from afmrl.models.encoders.dual import DualEncoder  # noqa: E402
from afmrl.stages.evaluate import evaluate  # noqa: E402
from afmrl.training.data import build_pairs  # noqa: E402
from afmrl.training.trainer import ContrastiveTrainer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# Per-dataset settings, fixed before looking at any evaluation figure (nothing is tuned on it).
DATASETS: dict[str, dict] = {
    "synthetic": {"overrides": ["synth.n_base_products=60", "synth.near_duplicates=3", "train.batch_size=64",
                                "encoder.attributes_source=provided"],
                  "primary": "listing_R@1", "gist_margin": 0.05},
    "grocery-store": {"overrides": ["encoder.attributes_source=provided", "train.batch_size=128",
                                    "eval.split=val"],
                      "primary": "photo_to_catalogue_R@1", "gist_margin": 0.05},
    "wdc-products": {"overrides": ["encoder.attributes_source=rules", "train.batch_size=128",
                                   "train.pairing=title_description"],
                     "primary": "listing_R@1", "gist_margin": 0.0},
    "offers": {"overrides": ["encoder.attributes_source=rules", "train.batch_size=128"],
               "primary": "listing_R@1", "gist_margin": 0.0},
}  # fmt: skip
RUNS = [("zero-shot", None, "random"), ("infonce", "infonce", "random"), ("gist", "gist", "random"),
        ("agcl", "agcl", "random"), ("oracle", "oracle", "random"), ("infonce+hard", "infonce", "hard"),
        ("agcl+hard", "agcl", "hard"), ("agcl+fnpos", "agcl", "random")]  # fmt: skip
# extra settings per run name (agcl+fnpos: AGCL's false negatives become extra positives)
RUN_OVERRIDES = {"agcl+fnpos": ["train.fn_as_positive=true"]}
REPORTED = ["R@1", "R@5", "R@10", "mAP@10", "MRR"]


def prepare_catalog(args: argparse.Namespace, cfg: Config, work: Path) -> Path:
    out = work / "catalog"
    if (out / "listings.parquet").exists():
        return out
    if args.dataset == "synthetic":
        from afmrl.catalog.synth import generate

        generate(cfg.synth, cfg.splits, out)
    elif args.dataset == "grocery-store":
        from afmrl.catalog.importers import import_grocery_store

        import_grocery_store(args.data, out)
    elif args.dataset == "wdc-products":
        from afmrl.catalog.importers import import_wdc_products

        import_wdc_products(args.data, out, cfg.splits)
    else:
        from afmrl.catalog.importers import import_offers, parse_column_mapping

        import_offers(args.data, out, parse_column_mapping(args.columns), cfg.splits)
    return out


def bare_loop(feats_a: torch.Tensor, feats_b: torch.Tensor, model: DualEncoder, kinds: tuple[str, str], batch: int,
              steps: int, seed: int) -> float:  # fmt: skip
    """Samples/s of the plainest loop over the same heads, loss and batch: no sampler, logging or checkpoints."""
    torch.manual_seed(seed)
    loss_fn = InfoNCELoss()
    opt = torch.optim.AdamW(model.head_parameters() + list(loss_fn.parameters()), lr=1e-3)
    proj = {"image": model.project_images, "text": model.project_texts}
    n = len(feats_a)
    t0 = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, n, (batch,))
        loss = loss_fn(proj[kinds[0]](feats_a[idx]), proj[kinds[1]](feats_b[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def trainer_vs_bare_loop(cfg: Config, pairs, work: Path, cache: Path, repeats: int = 3) -> dict[str, float]:
    """The trainer (sampler, clipping, scheduler, logging, checkpoint bookkeeping) against the bare loop, same
    heads, loss and batch, alternated ``repeats`` times; best of each (the machine may be shared)."""
    ours, bare = [], []
    for r in range(repeats):
        torch.manual_seed(r)
        trainer = ContrastiveTrainer(DualEncoder(cfg.encoder), pairs, cfg.train, work / "runs" / f"throughput-{r}",
                                     cache_dir=cache)  # fmt: skip
        for old in trainer.ckpt_dir.glob("step-*.pt"):
            old.unlink()
        ours.append(trainer.train().samples_per_s)
        bare.append(bare_loop(trainer.feats_a, trainer.feats_b, DualEncoder(cfg.encoder), (pairs.a_kind, pairs.b_kind),
                              cfg.train.batch_size, cfg.train.steps, r))  # fmt: skip
    return {"trainer_samples_per_s": max(ours), "bare_loop_samples_per_s": max(bare), "throughput_repeats": repeats}


def embedding_speed(model: DualEncoder, paths: list[str], batch: int) -> dict[str, float]:
    """encode_images (decode + resize + backbone + head) vs the raw backbone forward on ready tensors."""
    paths = paths[: batch * 4]
    t0 = time.perf_counter()
    model.encode_images(paths)
    ours = len(paths) / (time.perf_counter() - t0)
    pixels = torch.stack([load_image(p, model.cfg.image_size) for p in paths[:batch]])
    pixels = ((pixels - 0.5) / 0.5).contiguous(memory_format=torch.channels_last)
    net = model.image_tower.net.eval()
    with torch.inference_mode():
        net.extract_features(pixels)  # warm-up
        t0 = time.perf_counter()
        for _ in range(3):
            net.extract_features(pixels)
        raw = 3 * batch / (time.perf_counter() - t0)
    return {"encode_images_per_s": ours, "raw_backbone_forward_per_s": raw, "batch": batch}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    ap.add_argument("--data", type=Path, help="dataset folder or CSV (not needed for synthetic)")
    ap.add_argument("--columns", default="", help="offers: column mapping id=...,title=...,product=...")
    ap.add_argument("--eval-split", default=None, help="evaluation split (default: test if present, else val)")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: per dataset)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=[r[0] for r in RUNS])
    ap.add_argument("--work", type=Path, default=None, help="work folder (catalogue import, feature cache)")
    ap.add_argument("--out", type=Path, default=Path("results.json"))
    ap.add_argument("--md", type=Path, default=None, help="Markdown table (default: OUT with .md)")
    ap.add_argument("--merge", action="store_true", help="keep the other methods already in OUT")
    args = ap.parse_args()
    if args.dataset != "synthetic" and not args.data:
        ap.error(f"--data is required for {args.dataset}")

    spec = DATASETS[args.dataset]
    overrides = ["tracking.enabled=false", f"train.steps={args.steps}", *spec["overrides"],
                 f"train.gist_margin={spec['gist_margin']}"]  # fmt: skip
    if args.batch:
        overrides.append(f"train.batch_size={args.batch}")
    if args.eval_split:
        overrides.append(f"eval.split={args.eval_split}")
    work = args.work or Path("outputs/benchmarks") / args.dataset
    work.mkdir(parents=True, exist_ok=True)
    params = work / "params.snapshot.yaml"  # one snapshot: every run of this benchmark uses the same settings
    params.write_text(yaml.safe_dump(load_config(REPO / "params.yaml").to_dict()))
    base = load_config(params, overrides)
    cache = work / "feature-cache"
    t_start = time.perf_counter()
    catalog_dir = prepare_catalog(args, base, work)
    catalog = read_catalog(catalog_dir)
    torch.manual_seed(0)
    model0 = DualEncoder(base.encoder)
    pairs = build_pairs(catalog, ("train",), base.encoder, base.train)
    print(f"[{args.dataset}] {len(catalog)} listings, {len(pairs)} training pairs ({pairs.stats['pairing']})", flush=True)

    results: dict[str, dict] = {}
    throughput: dict[str, float] = {}
    for name, method, sampler in RUNS:
        if name not in args.methods:
            continue
        per_seed: list[dict[str, float]] = []
        for seed in args.seeds if method else args.seeds[:1]:
            t0 = time.perf_counter()
            if method is None:
                metrics, split = evaluate(base, catalog_dir, model0, cache, zero_shot=True)
                train_stats: dict[str, float] = {}
            else:
                cfg = load_config(params, [*overrides, f"train.method={method}", f"train.sampler={sampler}",
                                                        f"train.seed={seed}", "train.checkpoint_every=100000",
                                                        "train.log_every=20", *RUN_OVERRIDES.get(name, [])])  # fmt: skip
                torch.manual_seed(seed)
                model = DualEncoder(cfg.encoder)
                trainer = ContrastiveTrainer(model, pairs, cfg.train, work / "runs" / f"{name}-{seed}", cache_dir=cache)
                for old in (work / "runs" / f"{name}-{seed}" / "checkpoints").glob("step-*.pt"):
                    old.unlink()  # a benchmark run always starts from scratch
                res = trainer.train()
                fn_rates = [h["batch_fn_rate"] for h in res.history if "batch_fn_rate" in h]
                train_stats = {"train_samples_per_s": res.samples_per_s, "batch_fn_rate": float(np.mean(fn_rates))}
                for key in ("mask_precision", "mask_recall", "masked_rate", "hard_rate"):
                    vals = [h[key] for h in res.history if key in h]
                    if vals:
                        train_stats[key] = float(np.mean(vals))
                metrics, split = evaluate(cfg, catalog_dir, trainer.model, cache)
                if name == "infonce" and seed == args.seeds[0]:
                    throughput.update(trainer_vs_bare_loop(cfg, pairs, work, cache))
            per_seed.append({**metrics.metrics, **train_stats, "seconds": time.perf_counter() - t0})
            print(f"  {name:14s} seed {seed}: {spec['primary']}={per_seed[-1].get(spec['primary'], float('nan')):.4f}"
                  f" ({per_seed[-1]['seconds']:.1f}s)", flush=True)  # fmt: skip
        keys = sorted(set().union(*per_seed))
        summary = {}
        for k in keys:
            vals = [r[k] for r in per_seed if k in r and r[k] == r[k]]
            if vals:
                summary[k] = float(statistics.mean(vals))
                if len(vals) > 1:
                    summary[f"{k}_std"] = float(statistics.stdev(vals))
        results[name] = summary
    if catalog.listings["image"].notna().any():
        paths = [str(catalog.image_root / p) for p in catalog.listings["image"].dropna().head(256)]
        throughput.update(embedding_speed(model0, paths, 32))
    if "trainer_samples_per_s" in throughput:
        throughput["trainer_vs_bare_loop"] = throughput["trainer_samples_per_s"] / throughput["bare_loop_samples_per_s"]

    if args.merge and args.out.exists():
        previous = json.loads(args.out.read_text())
        results = {**previous["methods"], **results}
        throughput = {**previous.get("throughput", {}), **throughput}
    out = {"dataset": args.dataset, "eval_split": split, "primary_metric": spec["primary"], "steps": args.steps,
           "batch_size": base.train.batch_size, "seeds": args.seeds, "overrides": overrides, "methods": results,
           "throughput": throughput, "seconds": time.perf_counter() - t_start,
           "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}}  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, sort_keys=True) + "\n")
    md = markdown(out)
    (args.md or args.out.with_suffix(".md")).write_text(md)
    print(md)


def markdown(out: dict) -> str:
    methods = out["methods"]
    metrics = sorted({k.rsplit("_", 1)[0] for m in methods.values() for k in m if k.endswith("_R@1")},
                     key=lambda t: (t != out["primary_metric"].rsplit("_", 1)[0], t))  # fmt: skip
    lines = [f"**{out['dataset']}** (eval split `{out['eval_split']}`, {out['steps']} steps x batch "
             f"{out['batch_size']}, seeds {out['seeds']}; mean ± std)", ""]  # fmt: skip
    head = ["method", *[f"{t} R@1" for t in metrics], f"{metrics[0]} mAP@10" if metrics else "", "batch FN rate",
            "AGCL mask precision"]  # fmt: skip
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def cell(m: dict, key: str) -> str:
        if key not in m:
            return "–"
        std = m.get(f"{key}_std")
        return f"{m[key]:.3f}" + (f" ± {std:.3f}" if std is not None else "")

    for name, m in methods.items():
        row = [name, *[cell(m, f"{t}_R@1") for t in metrics], cell(m, f"{metrics[0]}_mAP@10") if metrics else "",
               cell(m, "batch_fn_rate"), cell(m, "mask_precision")]  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
    t = out["throughput"]
    if t:
        lines.append("")
        parts = []
        if "trainer_samples_per_s" in t:
            parts.append(f"trainer {t['trainer_samples_per_s']:,.0f} samples/s vs bare loop "
                         f"{t['bare_loop_samples_per_s']:,.0f} ({t['trainer_vs_bare_loop']:.2f}x)")  # fmt: skip
        if "encode_images_per_s" in t:
            parts.append(f"encode_images {t['encode_images_per_s']:.1f} img/s vs raw backbone forward "
                         f"{t['raw_backbone_forward_per_s']:.1f} img/s (batch {t['batch']}, channels_last)")  # fmt: skip
        lines.append("Throughput: " + "; ".join(parts) + f". Total {out['seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
