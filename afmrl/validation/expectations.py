"""The Great Expectations 1.x suite of the validation gate, built in code (ephemeral context).

Each expectation carries the quarantine reason for the rows it flags; per-row detail (which image
failed and why, what the importer found) comes from pre-check columns.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from great_expectations.expectations.row_conditions import Column  # noqa: E402

from afmrl.catalog.schema import SPLITS  # noqa: E402


@dataclass(frozen=True)
class Rule:
    expectation: Any
    reason: str
    detail_column: str | None = None  # a column whose value explains the failure row by row
    field: str | None = None  # the catalogue column to blame (default: the expectation's column)


# nothing visible: whitespace (Unicode, incl. no-break and ideographic spaces) and zero-width characters
BLANK = r"^[\s\u200b-\u200d\u2060\ufeff]+$"
# C0 controls except tab, line feed and carriage return; DEL; C1 controls (terminal escapes, NEL)
CONTROL = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]"


def build_rules(currencies: list[str], *, priced_currency: bool = True) -> list[Rule]:
    """``priced_currency``: the catalogue states currencies, so every price needs one (a catalogue
    with no currency at all is valid: its prices carry no unit)."""
    rules = [
        Rule(gxe.ExpectColumnValuesToNotBeNull(column="listing_id"), "missing listing_id"),
        Rule(gxe.ExpectColumnValuesToBeUnique(column="listing_id"), "duplicate listing_id"),
        # a bare photo (an image, no description: a shopper's photo carries no text) needs no title
        Rule(gxe.ExpectColumnValuesToNotBeNull(column="title", row_condition=Column("image").is_null()
                                               | Column("description").is_not_null()), "missing title"),  # fmt: skip
        Rule(gxe.ExpectColumnValueLengthsToBeBetween(column="title", min_value=1), "empty title"),
        Rule(gxe.ExpectColumnValuesToNotMatchRegex(column="title", regex=BLANK),
             "blank title (only spaces or invisible characters)"),  # fmt: skip
        Rule(gxe.ExpectColumnValuesToNotMatchRegex(column="title", regex="\ufffd"), "title is not valid UTF-8 text"),
        Rule(gxe.ExpectColumnValuesToNotMatchRegex(column="title", regex=CONTROL), "title contains a control character"),
        Rule(gxe.ExpectColumnValuesToNotMatchRegex(column="description", regex="\ufffd"),
             "description is not valid UTF-8 text"),  # fmt: skip
        Rule(gxe.ExpectColumnValuesToNotMatchRegex(column="description", regex=CONTROL),
             "description contains a control character"),  # fmt: skip
        Rule(gxe.ExpectColumnValuesToBeBetween(column="price", min_value=0), "negative price"),
        Rule(gxe.ExpectColumnValuesToBeNull(column="price_error"), "invalid price", "price_error", "price"),
        Rule(gxe.ExpectColumnValuesToBeInSet(column="currency", value_set=sorted(currencies)), "unknown currency"),
        Rule(gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)), "unknown split"),
        Rule(gxe.ExpectColumnValuesToBeNull(column="import_issues"), "import issue", "import_issues"),
        Rule(gxe.ExpectColumnValuesToBeInSet(column="image_status", value_set=["ok", "absent"]), "image",
             "image_error", "image"),  # fmt: skip
        Rule(gxe.ExpectColumnValuesToBeNull(column="attributes_error"), "invalid attributes", "attributes_error",
             "attributes"),  # fmt: skip
        Rule(gxe.ExpectColumnValuesToBeNull(column="reference_attributes_error"), "invalid reference_attributes",
             "reference_attributes_error", "reference_attributes"),  # fmt: skip
    ]
    if priced_currency:
        priced = Column("price").is_not_null()
        rules.append(Rule(gxe.ExpectColumnValuesToNotBeNull(column="currency", row_condition=priced),
                          "price without a currency"))  # fmt: skip
    return rules


@dataclass
class SuiteOutcome:
    reasons: dict[int, list[str]]  # row position -> reasons
    expectations: list[dict[str, Any]]
    fields: dict[int, list[str]] = field(default_factory=dict)  # row position -> blamed columns (no repeats)


def run_suite(frame: pd.DataFrame, currencies: list[str], *, data_docs_dir: str | None = None) -> SuiteOutcome:
    """Run the suite on ``frame`` (catalogue columns + the pre-check columns image_status/image_error,
    price_error, attributes_error, reference_attributes_error; RangeIndex)."""
    rules = build_rules(currencies, priced_currency=bool(frame["currency"].notna().any()))
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas("catalogue")
    asset = source.add_dataframe_asset("listings")
    batch_def = asset.add_batch_definition_whole_dataframe("all")
    suite = context.suites.add(gx.ExpectationSuite(name="afmrl_catalogue"))
    for rule in rules:
        suite.add_expectation(rule.expectation)
    validation = context.validation_definitions.add(gx.ValidationDefinition(name="gate", data=batch_def, suite=suite))
    result = validation.run(batch_parameters={"dataframe": frame}, result_format="COMPLETE")

    by_id = {rule.expectation.id: rule for rule in rules}
    reasons: dict[int, list[str]] = {}
    fields: dict[int, list[str]] = {}
    summary = []
    for res in result.results:
        rule = by_id[res.expectation_config.id]
        flagged = [int(i) for i in res.result.get("unexpected_index_list") or []]
        if res.exception_info and res.exception_info.get("raised_exception"):
            raise RuntimeError(f"expectation {res.expectation_config.type} failed to run: "
                               f"{res.exception_info.get('exception_message')}")  # fmt: skip
        for i in flagged:
            detail = frame[rule.detail_column].iloc[i] if rule.detail_column else None
            reasons.setdefault(i, []).append(f"{rule.reason}: {detail}" if detail else rule.reason)
            blamed = fields.setdefault(i, [])
            column = rule.field or res.expectation_config.kwargs.get("column")
            if column not in blamed:
                blamed.append(column)
        summary.append({"expectation": res.expectation_config.type, "column": res.expectation_config.kwargs.get("column"),
                        "reason": rule.reason, "success": bool(res.success), "unexpected_count": len(flagged)})  # fmt: skip
    if data_docs_dir:
        _build_docs(context, data_docs_dir)
    return SuiteOutcome(reasons=reasons, expectations=summary, fields=fields)


def _build_docs(context: Any, folder: str) -> None:
    """GX data docs into ``folder`` (a local site; best effort, never fails the gate)."""
    try:
        context.add_data_docs_site(
            site_name="afmrl",
            site_config={"class_name": "SiteBuilder",
                         "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": folder},
                         "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}},  # fmt: skip
        )
        context.build_data_docs(site_names=["afmrl"])
    except Exception as exc:  # noqa: BLE001 - docs are an optional extra
        from afmrl.progress import console

        console.print(f"[yellow]GX data docs not built: {exc}")
