"""Attribute extraction stage: every listing of a catalogue -> attributes (rules or MLLM backend).

Outputs in ``out_dir``: ``attributes.parquet`` (one row per listing: ``listing_id``, ``raw`` (the
model's text; the rules' JSON), ``attributes`` (JSON, after merging seller-stated attributes when
``attributes.use_provided``), ``extracted`` (JSON, the backend's own), ``valid``, ``reason``,
``seconds``, ``backend``, ``model``, ``cached``) and ``report.json`` (throughput, cache hits,
valid-JSON rate, and per-key accuracy / micro-macro F1 against ``reference_attributes`` where the
catalogue has them, for ``attributes`` and for ``extracted``). MLLM generations go through the
generation cache (``attributes.cache_path``): a re-run only generates listings that changed.

``model``: an extractor folder (round 2 of the loop: the RAR stage's output) runs the mllm backend with
it; the report names it (``extractor``, with the registered version RAR recorded: the lineage). A round
beyond ``loop.rounds`` writes an empty table, a report saying ``skipped`` and ``skipped.json``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from afmrl.atomic import atomic_path, write_json_atomic
from afmrl.attributes.evaluate import evaluate_attributes, flat_metrics
from afmrl.attributes.parse import parse_attributes, writable_text
from afmrl.attributes.schema import DEFAULT_SCHEMA, resolve_keys
from afmrl.catalog.io import Catalog, read_catalog
from afmrl.catalog.schema import parse_json_object, to_json
from afmrl.catalog.splits import training_listings
from afmrl.config import Config
from afmrl.errors import DataError
from afmrl.progress import progress
from afmrl.tracking.runs import stage_run
from afmrl.tracking.store import preflight
from afmrl.training.rounds import extractor_info, round_skipped, write_skipped

TABLE_FILE = "attributes.parquet"
REPORT_FILE = "report.json"
COLUMNS = ("listing_id", "raw", "attributes", "extracted", "valid", "reason", "seconds", "backend", "model", "cached")


@dataclass
class ExtractResult:
    out_dir: Path
    table_path: Path
    report_path: Path
    n: int
    generated: int
    cache_hits: int
    valid_rate: float
    listings_per_s: float
    metrics: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False

    def numeric_metrics(self) -> dict[str, float]:
        """The flat numeric figures (what a Kubeflow Metrics artifact takes)."""
        base = {"listings": float(self.n), "generated": float(self.generated), "cache_hits": float(self.cache_hits),
                "valid_rate": self.valid_rate, "listings_per_s": self.listings_per_s}  # fmt: skip
        return {**base, **{k: float(v) for k, v in self.metrics.items() if isinstance(v, int | float)}}


def select_listings(catalog: Catalog, splits: list[str], max_listings: int | None) -> pd.DataFrame:
    df = catalog.listings
    if splits:
        df = df[df["split"].isin(splits)]
    if max_listings is not None:
        df = df.head(max_listings)
    if df.empty:
        raise DataError(f"no listings to extract (splits {splits or 'all'})", field="split")
    return df.reset_index(drop=True)


def _rules(cfg: Config, catalog: Catalog, df: pd.DataFrame, keys: list[str]) -> tuple[list[dict[str, Any]], str]:
    from afmrl.attributes.extractors.rules import RuleExtractor

    a = cfg.attributes
    # the lexicon is mined from the training listings only (titles and stated brands: inputs, not labels)
    ex = RuleExtractor.from_listings(training_listings(catalog.listings), keys=keys, use_provided=False, min_products=a.min_brand_products,
                                     max_share=a.max_brand_share)  # fmt: skip
    rows = []
    with progress("extract (rules)", len(df), unit="listings") as advance:
        for r in df.to_dict("records"):
            t0 = time.perf_counter()
            attrs = ex.extract(r["title"], r["description"], r["category"])  # stated ones are merged in run()
            rows.append({"raw": json.dumps(attrs, ensure_ascii=False), "extracted": attrs, "valid": True,
                         "reason": None, "seconds": time.perf_counter() - t0, "cached": False})  # fmt: skip
            advance(1)
    return rows, ex.fingerprint


def _mllm(cfg: Config, catalog: Catalog, df: pd.DataFrame, keys: list[str]) -> tuple[list[dict[str, Any]], str]:
    from afmrl.attributes.cache import GenerationCache
    from afmrl.attributes.extractors.mllm import ListingInput, MLLMExtractor
    from afmrl.models.mllm import cpu_threads_for, load_mllm

    m = cfg.mllm
    loaded = load_mllm(m.model, min_pixels=m.min_pixels, max_pixels=m.max_pixels, dtype=m.dtype, device=m.device)
    extractor = MLLMExtractor(loaded, m, keys)
    items = [ListingInput(r["listing_id"], r["title"], r["description"],
                          catalog.image_path(r["image"]) if r["image"] else None)
             for r in df.to_dict("records")]  # fmt: skip
    with GenerationCache(cfg.attributes.cache_path) as cache, progress("extract (mllm)", len(items), "listings") as adv, \
            cpu_threads_for(loaded.model, m.device):
        gens = extractor.generate(items, cache, adv)
    rows = []
    for g in gens:
        attrs, valid, reason = parse_attributes(g.raw)
        attrs = {k: v for k, v in attrs.items() if k in keys}
        rows.append({"raw": writable_text(g.raw), "extracted": attrs, "valid": valid, "reason": reason, "seconds": g.seconds,
                     "cached": g.cached})  # fmt: skip
    return rows, f"{m.model}@{loaded.fingerprint}"


def _skip(cfg: Config, out: Path, round_: int) -> ExtractResult:
    out.mkdir(parents=True, exist_ok=True)
    table_path, report_path = out / TABLE_FILE, out / REPORT_FILE
    with atomic_path(table_path) as tmp:
        pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS}).to_parquet(tmp, index=False)
    write_json_atomic(report_path, {"skipped": True, "round": round_, "listings": 0, "metrics": {}})
    write_skipped(out, "extract", round_, cfg.loop.rounds)
    return ExtractResult(out, table_path, report_path, 0, 0, 0, 0.0, 0.0, {}, skipped=True)


def run(cfg: Config, catalog_dir: str | Path, out_dir: str | Path, model: str | Path | None = None,
        round_: int = 1) -> ExtractResult:  # fmt: skip
    """``model``: an extractor folder or id: the mllm backend with ``mllm.model`` set to it. ``round_``:
    the loop's round (beyond ``loop.rounds``: skipped)."""
    if round_skipped(cfg.loop.rounds, round_):
        return _skip(cfg, Path(out_dir), round_)
    if model is not None:
        cfg = cfg.model_copy(update={"attributes": cfg.attributes.model_copy(update={"backend": "mllm"}),
                                     "mllm": cfg.mllm.model_copy(update={"model": str(model)})})  # fmt: skip
    a = cfg.attributes
    preflight(cfg.tracking)  # an unusable tracking store fails here, before any output is written
    started = time.perf_counter()
    catalog = read_catalog(catalog_dir)
    df = select_listings(catalog, a.splits, a.max_listings)
    keys = resolve_keys(a.keys, catalog.listings)
    # JSON cells are read before any generation, so a bad record fails fast and by name
    stated = [parse_json_object(x, record=lid) for x, lid in zip(df["attributes"], df["listing_id"], strict=True)]
    refs = [parse_json_object(x, record=lid, field="reference_attributes")
            for x, lid in zip(df["reference_attributes"], df["listing_id"], strict=True)]  # fmt: skip
    rows, used = (_rules if a.backend == "rules" else _mllm)(cfg, catalog, df, keys)  # used: the model's reference
    finals = []
    for r, provided in zip(rows, stated, strict=True):
        final = dict(r["extracted"])
        if a.use_provided:
            final.update({k: v for k, v in DEFAULT_SCHEMA.normalize(provided).items()})
        finals.append(DEFAULT_SCHEMA.ordered(final))
    table = pd.DataFrame({
        "listing_id": df["listing_id"], "raw": [r["raw"] for r in rows], "attributes": [to_json(f) for f in finals],
        "extracted": [to_json(r["extracted"]) for r in rows], "valid": [bool(r["valid"]) for r in rows],
        "reason": [r["reason"] for r in rows], "seconds": [float(r["seconds"]) for r in rows],
        "backend": a.backend, "model": used, "cached": [bool(r["cached"]) for r in rows],
    })  # fmt: skip
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table_path = out / TABLE_FILE
    with atomic_path(table_path) as tmp:
        table.to_parquet(tmp, index=False)

    generated = int((~table["cached"]).sum())
    gen_seconds = float(table.loc[~table["cached"], "seconds"].sum())
    has_ref = [i for i, r in enumerate(refs) if r]
    metrics: dict[str, Any] = {}
    if has_ref:
        valid = [rows[i]["valid"] for i in has_ref]
        metrics["attributes"] = evaluate_attributes([finals[i] for i in has_ref], [refs[i] for i in has_ref],
                                                    valid=valid, keys=keys)  # fmt: skip
        metrics["extracted"] = evaluate_attributes([rows[i]["extracted"] for i in has_ref],
                                                   [refs[i] for i in has_ref], valid=valid, keys=keys)  # fmt: skip
    report = {
        "catalog": str(catalog_dir), "backend": a.backend, "model": used, "keys": keys, "listings": len(table),
        "generated": generated, "cache_hits": len(table) - generated,
        "valid_json_rate": float(table["valid"].mean()), "generation_seconds": gen_seconds,
        "listings_per_s": generated / gen_seconds if gen_seconds > 0 else None,
        "seconds": round(time.perf_counter() - started, 3), "metrics": metrics, "round": round_,
        "extractor": extractor_info(cfg.mllm.model) if a.backend == "mllm" else {"model": used, "registered": None},
    }  # fmt: skip
    report_path = out / REPORT_FILE
    write_json_atomic(report_path, report)
    with stage_run(cfg.tracking, "extract", tags={"afmrl.backend": a.backend, "afmrl.round": str(round_)}) as run_:
        run_.log_config(cfg, ("attributes", "mllm") if a.backend == "mllm" else ("attributes",),
                        catalog=str(catalog_dir), model=used, keys=keys)  # fmt: skip
        logged = {"listings": len(table), "generated": generated, "cache_hits": report["cache_hits"],
                  "valid_json_rate": report["valid_json_rate"]}  # fmt: skip
        if report["listings_per_s"]:
            logged["listings_per_s"] = report["listings_per_s"]
        for name, m in metrics.items():
            logged.update(flat_metrics(m, prefix=f"{name}."))
        run_.log_metrics(logged)
        run_.log_artifact(report_path)
    return ExtractResult(out, table_path, report_path, len(table), generated, report["cache_hits"],
                         report["valid_json_rate"], report["listings_per_s"] or 0.0, metrics)  # fmt: skip
