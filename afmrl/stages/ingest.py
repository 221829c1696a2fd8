"""Ingest stage, the root of the pipeline: the input catalogue in the canonical format (params ``data.*``).

``run(cfg, out_dir)`` writes ``listings.parquet`` + ``catalog.json`` (+ images where they are
copied) from ``data.format`` and ``data.path`` (:func:`afmrl.catalog.ingest.ingest`: synthetic,
a canonical catalogue, grocery-store, wdc-products or an offers CSV mapped by ``data.columns``) and
logs an MLflow run ``ingest`` with the format, the path (credentials redacted), the source and
catalogue digests, the listing count and the split sizes.

On Kubeflow the pipeline parameters ``data_format``, ``data_path`` and ``data_columns`` (a JSON
mapping) arrive as keyword arguments and replace ``data.*`` where given (:func:`with_data_settings`);
:func:`source_fingerprint` is what the ``digest`` task computes, so that an unchanged source gives the
ingest task the same inputs and KFP's cache skips it and what follows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from afmrl.catalog.ingest import ingest
from afmrl.catalog.io import read_catalog
from afmrl.catalog.sources import redact_uri, source_digest
from afmrl.config import Config, DataConfig, config_from_text
from afmrl.errors import ConfigError
from afmrl.tracking.datasets import catalog_digest
from afmrl.tracking.runs import stage_run


@dataclass
class IngestResult:
    out_dir: Path
    listings_path: Path
    format: str
    name: str
    listings: int
    products: int
    digest: str  # the written catalogue's (listings.parquet) digest, as evaluation reports name it
    source_digest: str
    splits: dict[str, int] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        return {"listings": float(self.listings), "products": float(self.products),
                **{f"split_{k}": float(v) for k, v in self.splits.items()}}  # fmt: skip


def with_data_settings(cfg: Config, data_format: str = "", data_path: str = "", data_columns: str = "") -> Config:
    """``cfg`` with Kubeflow's ``data_format`` / ``data_path`` / ``data_columns`` (a JSON mapping such as
    ``{"id": "sku", "title": "name", "attr": {"size": "size"}}``; ``attr.size`` works too) in ``data``;
    an empty value leaves params.yaml's setting; a given mapping replaces the whole mapping."""
    data: dict[str, Any] = cfg.data.model_dump(mode="json")
    if data_format.strip():
        data["format"] = data_format.strip()
    if data_path.strip():
        data["path"] = data_path.strip()
    if data_columns.strip() and data_columns.strip() != "{}":
        try:
            given = json.loads(data_columns)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"not a JSON mapping: {exc}", field="data_columns") from None
        if not isinstance(given, dict):
            raise ConfigError(f"a JSON mapping is expected, got {type(given).__name__}", field="data_columns")
        attr = dict(given.pop("attr", None) or {})
        attr.update({k[5:]: given.pop(k) for k in [k for k in given if k.startswith("attr.")]})
        data["columns"] = {**given, "attr": attr}
    try:
        return cfg.model_copy(update={"data": DataConfig.model_validate(data)})
    except ValidationError as exc:
        raise ConfigError("; ".join(f"data.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()),
                          field="data") from None  # fmt: skip


def source_fingerprint(params_yaml: str, overrides: list[str] | None, data_format: str = "", data_path: str = "",
                       data_columns: str = "") -> str:  # fmt: skip
    """The source digest of the data settings (the Kubeflow ``digest`` task: the ingest task's cache key)."""
    cfg = with_data_settings(config_from_text(params_yaml, overrides), data_format, data_path, data_columns)
    return source_digest(cfg.data, cfg.synth, cfg.splits)


def run(cfg: Config, out_dir: str | Path, *, data_format: str = "", data_path: str = "", data_columns: str = "",
        digest: str = "") -> IngestResult:  # fmt: skip
    """Write the input catalogue to ``out_dir``. The keyword arguments are Kubeflow's pipeline parameters
    (:func:`with_data_settings`) and the source digest its ``digest`` task computed (empty: computed here)."""
    cfg = with_data_settings(cfg, data_format, data_path, data_columns)
    d = cfg.data
    out = Path(out_dir)
    shown = None if d.format == "synthetic" else redact_uri(d.path)
    with stage_run(cfg.tracking, "ingest") as run_:
        data_params = {**d.model_dump(mode="json"), "path": shown}
        run_.log_config({"data": data_params, "synth": cfg.synth.model_dump(mode="json"),
                         "splits": cfg.splits.model_dump(mode="json")}, out=str(out))  # fmt: skip
        path = ingest(d, cfg.synth, cfg.splits, out, digest=digest or None)
        catalog = read_catalog(out)
        listings = catalog.listings
        splits = {str(k): int(v) for k, v in listings["split"].value_counts(dropna=True).sort_index().items()}
        result = IngestResult(out, path, d.format, str(catalog.meta.get("name") or d.format), len(listings),
                              int(listings["product_id"].nunique()), catalog_digest(out),
                              str(catalog.meta.get("source_digest", "")), splits)  # fmt: skip
        run_.set_tags({"afmrl.data.format": d.format, "afmrl.data.name": result.name,
                       "afmrl.data.source_digest": result.source_digest})  # fmt: skip
        run_.log_metrics(result.metrics())
        run_.log_catalog(out, context="ingest", name=result.name)
    return result
