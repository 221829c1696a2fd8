"""Validation stage: run the gate on a catalogue, quarantine failing rows, pass the rest on.

Outputs in ``out_dir``: ``listings.parquet`` + ``catalog.json`` (the rows that passed, same image
root), ``quarantine.parquet`` (failing rows with ``reason`` and ``field``: the columns blamed, ``; ``
separated), ``report.json``. Every input row is in exactly one of the two tables. When the
quarantined share is above ``validate.max_fail_share``, or no row passes (an empty catalogue), the
outputs are still written, then the stage fails.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from afmrl.atomic import atomic_path, write_json_atomic
from afmrl.catalog.io import LISTINGS_FILE, read_catalog, write_catalog
from afmrl.config import Config
from afmrl.errors import ValidationFailed
from afmrl.tracking.runs import stage_run
from afmrl.tracking.store import preflight
from afmrl.validation.checks import check_images, check_json_column, check_prices, stored_present

QUARANTINE_FILE = "quarantine.parquet"
REPORT_FILE = "report.json"


@dataclass
class ValidateResult:
    out_dir: Path
    passed: int
    quarantined: int
    fail_share: float
    report_path: Path
    quarantine_path: Path

    def metrics(self) -> dict[str, float]:
        return {"passed": float(self.passed), "quarantined": float(self.quarantined), "fail_share": self.fail_share}


def run(cfg: Config, catalog_dir: str | Path, out_dir: str | Path) -> ValidateResult:
    from afmrl.validation.expectations import run_suite  # GX import is slow: only when validating

    vcfg = cfg.validate_
    preflight(cfg.tracking)  # an unusable tracking store fails here, before any output is written
    started = time.perf_counter()
    catalog = read_catalog(catalog_dir)
    table_path = Path(catalog_dir) if Path(catalog_dir).suffix == ".parquet" else Path(catalog_dir) / LISTINGS_FILE
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frame = catalog.listings.reset_index(drop=True)
    if vcfg.check_images:
        frame = frame.join(check_images(frame, catalog.image_root, vcfg.image_workers, vcfg.max_image_pixels))
    else:
        frame = frame.assign(image_status="ok", image_error=None)
    frame = frame.assign(
        price_error=check_prices(frame["price"], stored_present(table_path, "price")),
        attributes_error=check_json_column(frame["attributes"]),
        reference_attributes_error=check_json_column(frame["reference_attributes"]),
    )

    outcome = run_suite(frame, vcfg.currencies, data_docs_dir=str(out / "data_docs") if vcfg.data_docs else None)
    bad = sorted(outcome.reasons)
    good_mask = ~frame.index.isin(bad)
    passed = catalog.listings.reset_index(drop=True)[good_mask]
    quarantine = catalog.listings.reset_index(drop=True).iloc[bad].assign(
        reason=["; ".join(outcome.reasons[i]) for i in bad], field=["; ".join(outcome.fields[i]) for i in bad]
    )
    write_catalog(passed, out, image_root=catalog.image_root, meta={**catalog.meta, "validated_from": str(catalog_dir)})
    quarantine_path = out / QUARANTINE_FILE
    with atomic_path(quarantine_path) as tmp:
        quarantine.to_parquet(tmp, index=False)

    total = len(frame)
    share = len(bad) / total if total else 0.0
    reason_counts = Counter(r.split(":")[0] for i in bad for r in outcome.reasons[i])
    report = {
        "catalog": str(catalog_dir),
        "rows": total,
        "passed": int(good_mask.sum()),
        "quarantined": len(bad),
        "fail_share": share,
        "max_fail_share": vcfg.max_fail_share,
        "gate_passed": share <= vcfg.max_fail_share and bool(good_mask.sum()),
        "reasons": dict(reason_counts.most_common()),
        "expectations": outcome.expectations,
        "images_checked": bool(vcfg.check_images),
        "seconds": round(time.perf_counter() - started, 3),
    }
    report_path = out / REPORT_FILE
    write_json_atomic(report_path, report)
    with stage_run(cfg.tracking, "validate") as run_:
        run_.log_config(cfg, ("validate",), catalog=str(catalog_dir))
        run_.log_metrics({"rows": total, "passed": report["passed"], "quarantined": len(bad), "fail_share": share})
        run_.log_catalog(catalog_dir, context="validation-input")
        run_.log_artifact(report_path)
        if len(bad):
            run_.log_artifact(quarantine_path)
    result = ValidateResult(out, report["passed"], len(bad), share, report_path, quarantine_path)
    if total == 0:
        raise ValidationFailed(f"the catalogue has no listings: nothing to train or evaluate on. Report: {report_path}",
                               file=os.fspath(table_path))  # fmt: skip
    top = ", ".join(f"{k} ({v})" for k, v in list(reason_counts.most_common())[:3])
    if not report["passed"]:
        raise ValidationFailed(f"no listing passed the gate: all {total} rows failed validation; top reasons: {top}. "
                               f"Rows and reasons: {quarantine_path}", file=os.fspath(table_path))  # fmt: skip
    if not report["gate_passed"]:
        raise ValidationFailed(
            f"{len(bad)} of {total} rows ({share:.1%}) failed validation, above validate.max_fail_share="
            f"{vcfg.max_fail_share:.1%}; top reasons: {top}. Rows and reasons: {quarantine_path}",
            file=os.fspath(catalog_dir),
        )
    return result
