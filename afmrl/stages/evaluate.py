"""Evaluation stage: exact-search retrieval metrics of an encoder on a catalogue's eval split.

Outputs in ``out_dir``: ``report.json`` ({"metrics": {"listing_R@1": ...}, "per_category", "counts",
"candidate": {"path", "digest"}, "catalog": {"path", "digest", "listings", "splits"}, "split",
"queries": {"n", "digest"}, "per_query": {"query_ids": {task: [...]}, "values": {gate metric: [...]}},
"rows": {"candidate": metrics, "zero-shot": metrics of the untrained pretrained towers, same queries}}),
``summary.md`` and PNG plots; all logged to MLflow with the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from afmrl.catalog.io import read_catalog
from afmrl.config import Config
from afmrl.digest import content_hash
from afmrl.errors import ConfigError, DataError
from afmrl.models.encoders import load_encoder
from afmrl.models.encoders.dual import DualEncoder
from afmrl.models.encoders.ref import fingerprint
from afmrl.retrieval.embed import embed_listings
from afmrl.retrieval.evaluate import EvalResult, evaluate_embeddings, per_query_metrics, resolve_split
from afmrl.retrieval.hard_slice import key_attributes
from afmrl.retrieval.report import round_figures, write_report
from afmrl.tracking.datasets import catalog_digest
from afmrl.tracking.lock import holds_stores
from afmrl.tracking.runs import stage_run
from afmrl.tracking.store import preflight


@dataclass
class EvaluateStageResult:
    report_path: Path
    result: EvalResult

    def metrics(self) -> dict[str, float]:
        return {k: v for k, v in self.result.metrics.items() if np.isfinite(v) and not k.endswith("queries")}


def evaluation_rows(listings, split: str):
    """The rows to embed: the eval split, the shop catalogue and, when there is one, the train photos."""
    splits = [split, "gallery"]
    if (listings["split"] == "gallery").any():
        splits.append("train")
    return listings[listings["split"].isin(splits)].reset_index(drop=True)


def evaluate(cfg: Config, catalog_dir: str | Path, model: DualEncoder, cache_dir: str | Path | None,
             zero_shot: bool = False, index_collection: str | None = None) -> tuple[EvalResult, str]:  # fmt: skip
    """``index_collection``: also score the ``listing`` task through that Milvus collection (index_listing_*)."""
    catalog = read_catalog(catalog_dir)
    split = resolve_split(catalog.listings, cfg.eval.split)
    rows = evaluation_rows(catalog.listings, split)
    emb = embed_listings(model, catalog, rows, cfg.encoder, cache_dir, zero_shot=zero_shot)
    # the hard slice's key attributes: reference attributes over rules fitted on the training listings only
    attrs = key_attributes(rows, catalogue=catalog.listings)
    result = evaluate_embeddings(rows, emb, split, cfg.eval.ks, cfg.eval.seed, key_attributes=attrs)
    result.per_query = per_query_metrics(result, list(cfg.registry.gate), rows["listing_id"].tolist())
    if index_collection:
        from afmrl.retrieval.index_eval import evaluate_index
        from afmrl.retrieval.milvus import MilvusIndex

        with MilvusIndex.from_config(cfg.index) as index:
            result.metrics.update(evaluate_index(index, index_collection, rows, emb.listing, split, cfg.eval.ks,
                                                 cfg.eval.seed, exact=result))  # fmt: skip
    return result, split


def indexed_collection(index_summary: str | Path) -> str:
    """The collection the index stage built, from its ``index.json`` (the file or its folder)."""
    from afmrl.errors import DataError, read_json_file
    from afmrl.stages.index import SUMMARY_FILE

    path = Path(index_summary)
    if path.is_dir():
        path = path / SUMMARY_FILE
    summary = read_json_file(str(path), "run `afmrl index build` first")
    if not isinstance(summary, dict) or not summary.get("collection"):
        raise DataError("index summary has no collection", file=str(path), field="collection")
    return str(summary["collection"])


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if np.isfinite(v)}


def queries_of(result: EvalResult) -> dict:
    """``{"n", "digest"}`` of the ``listing`` task's scored query ids (the queries the gate decides on)."""
    ids = result.per_query.get("query_ids", {}).get("listing", [])
    return {"n": len(ids), "digest": content_hash(sorted(ids))}


def binding(catalog_dir: str | Path, encoder_dir: str | Path, split: str, result: EvalResult, cfg: Config) -> dict:
    """What a report was computed on: the candidate (its content digest), the catalogue, the split and the
    queries; ``afmrl promote`` refuses a report whose candidate is not the encoder it is asked to register."""
    catalog = read_catalog(catalog_dir)
    listings = catalog.listings
    sizes = {str(k): int(v) for k, v in listings["split"].value_counts(dropna=True).items()}
    named = {k: catalog.meta.get(k) for k in ("name", "format", "source", "source_digest")}  # from ingest
    return {"candidate": {"path": str(encoder_dir), "digest": fingerprint(encoder_dir, cfg.encoder)},
            "catalog": {"path": str(catalog_dir), "digest": catalog_digest(catalog_dir), "listings": int(len(listings)),
                        "splits": sizes, **named},
            "encoder": str(encoder_dir), "split": split, "queries": queries_of(result),
            "per_query": result.per_query}  # fmt: skip


def champion_row(cfg: Config, catalog_dir: str | Path, cache: str | Path, candidate: EvalResult) -> dict | None:
    """The registry's champion (``models:/<encoder_name>@<champion_alias>``) scored on the candidate's
    queries, with its version; None when there is no champion yet (or tracking is off)."""
    if not cfg.tracking.enabled:
        return None
    from afmrl.tracking.registry import get_alias_version
    from afmrl.tracking.store import client_for

    reg = cfg.registry
    version = get_alias_version(client_for(cfg.tracking), reg.encoder_name, reg.champion_alias)
    if version is None:
        return None
    model = load_encoder(f"models:/{reg.encoder_name}/{version.version}", cfg.encoder, cfg.tracking)
    ccfg = cfg.model_copy(update={"encoder": getattr(model, "cfg", cfg.encoder)})
    result, _ = evaluate(ccfg, catalog_dir, model, cache)
    if queries_of(result) != queries_of(candidate):
        return None  # never a row on other queries
    return {**_finite(result.metrics), "version": float(version.version)}


def score_rounds(cfg: Config, catalog_dir: str | Path, rounds_dir: str | Path, cache: str | Path,
                 candidate: EvalResult) -> list[dict]:  # fmt: skip
    """Every round of the loop on this split: the select stage's record plus ``eval`` ({split, metric,
    value}) from the round's encoder, on the candidate's queries."""
    from afmrl.retrieval.evaluate import primary_metric
    from afmrl.training.rounds import read_rounds

    folder = Path(rounds_dir)
    folder = folder.parent if folder.is_file() else folder
    metric = primary_metric(candidate.metrics)
    out = []
    for record in read_rounds(folder):
        model = load_encoder(folder / record["encoder"]["path"], cfg.encoder, cfg.tracking)
        rcfg = cfg.model_copy(update={"encoder": model.cfg})
        result, split = evaluate(rcfg, catalog_dir, model, cache)
        if queries_of(result) != queries_of(candidate):
            raise DataError(f"round {record['round']} was scored on other queries than the candidate",
                            file=str(folder), field="queries")  # fmt: skip
        out.append({**record, "eval": {"split": split, "metric": metric, "value": float(result.metrics[metric])}})
    return out


@holds_stores("evaluate stage", tracking=False, only_with="index")  # through the index: the Milvus Lite file
def run(cfg: Config, catalog_dir: str | Path, encoder_dir: str | Path, out_dir: str | Path,
        cache_dir: str | Path | None = None, index: str | Path | None = None,
        rounds: str | Path | None = None) -> EvaluateStageResult:  # fmt: skip
    """``index``: the index stage's ``index.json`` (or folder): also score the ``listing`` task through that
    Milvus collection (``index_listing_*`` beside the exact figures). ``rounds``: the select stage's
    ``rounds/`` folder: every round of the loop is scored on this split too (the report's ``rounds``)."""
    preflight(cfg.tracking)  # an unusable tracking store fails here, before any output is written
    model = load_encoder(encoder_dir, cfg.encoder, cfg.tracking)
    if not isinstance(model, DualEncoder):
        raise ConfigError(f"{encoder_dir}: evaluate scores an afmrl encoder folder (from `afmrl train`)", field="encoder")
    cfg = cfg.model_copy(update={"encoder": model.cfg})
    collection = None
    if index is not None:
        from afmrl.errors import DataError
        from afmrl.retrieval.milvus import collection_for_encoder

        collection, expected = indexed_collection(index), collection_for_encoder(cfg, encoder_dir)
        if collection != expected:
            raise DataError(f"the index holds collection {collection!r}, not this encoder's ({expected!r}): "
                            "build the index with the same encoder", file=str(index))  # fmt: skip
    cache = cache_dir or Path(out_dir) / "feature-cache"
    result, split = evaluate(cfg, catalog_dir, model, cache, index_collection=collection)
    # the zero-shot row: the same pretrained towers without the trained heads, on the same queries (the
    # features are cached by now, so it costs one more scoring); the champion's row is the promote stage's
    zero, _ = evaluate(cfg, catalog_dir, model, cache, zero_shot=True)
    rows = {"candidate": _finite(result.metrics), "zero-shot": _finite(zero.metrics)}
    if queries_of(zero) != queries_of(result):  # never a row on other queries
        rows.pop("zero-shot")
    champion = champion_row(cfg, catalog_dir, cache, result)
    if champion is not None:
        rows["champion"] = champion
    meta = {**binding(catalog_dir, encoder_dir, split, result, cfg), "rows": rows}
    if rounds is not None:
        meta["rounds"] = score_rounds(cfg, catalog_dir, rounds, cache, result)
    paths = write_report(result, out_dir, meta)
    with stage_run(cfg.tracking, "evaluate") as run_:
        run_.log_config(cfg, ("eval",), catalog=str(catalog_dir), encoder=str(encoder_dir), split=split,
                        index=collection or "")  # fmt: skip
        run_.log_catalog(catalog_dir, context="evaluation")
        run_.log_metrics({k.replace("@", "_at_"): v for k, v in result.metrics.items() if np.isfinite(v)})
        run_.log_metrics(round_figures(meta.get("rounds") or []))
        for p in paths.values():
            run_.log_artifact(p)
    return EvaluateStageResult(paths["json"], result)
