"""The rounds of the AFMRL loop: what each round's stages record, and how a skipped round is marked.

Round 1: attributes from ``attributes.backend`` -> AGCL encoder -> RAR rewarded by that encoder. Round 2:
attributes re-extracted by the reinforced extractor -> AGCL encoder. ``loop.rounds`` says how many rounds
run; DVC and Kubeflow DAGs are static, so a round beyond it still has its stages, which write a
``skipped.json`` marker (and the empty outputs DVC expects) instead of working.

Lineage: the extraction report names its extractor (``extractor``: the model, its fingerprint and, for a
reinforced extractor, the registered version RAR wrote into ``rar.json``); the train stage copies that
provenance into ``training.json`` (``attributes``); the select stage gathers every round's into
``rounds.json``; the evaluation report carries it as ``rounds`` and promote tags the encoder version
with it (``afmrl.round``, ``afmrl.attributes_source``, ``afmrl.extractor_version``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from afmrl.atomic import write_json_atomic
from afmrl.errors import DataError, read_json_file

SKIPPED_FILE = "skipped.json"
ROUNDS_FILE = "rounds.json"
RAR_SUMMARY_FILE = "rar.json"


def round_skipped(cfg_rounds: int, round_: int) -> bool:
    """True when ``round_`` is beyond ``loop.rounds`` (its stages only write the marker)."""
    if round_ < 1:
        raise ValueError(f"rounds count from 1, got {round_}")
    return round_ > cfg_rounds


def write_skipped(out_dir: str | Path, stage: str, round_: int, rounds: int, name: str = SKIPPED_FILE) -> Path:
    """The marker (``skipped.json``, or ``name``: an output DVC expects, e.g. ``training.json``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return write_json_atomic(out / name, {"skipped": True, "stage": stage, "round": round_,
                                          "reason": f"loop.rounds is {rounds}"})  # fmt: skip


def is_skipped(folder: str | Path) -> bool:
    """A skipped round's folder: its ``skipped.json``, or a ``training.json`` that says so."""
    folder = Path(folder)
    return (folder / SKIPPED_FILE).is_file() or _read_json(folder / "training.json").get("skipped") is True


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def extractor_info(model: str | Path) -> dict[str, Any]:
    """``{"model", "registered"}`` of an extractor folder: ``registered`` ({"name", "version"}) when RAR
    registered it (its ``rar.json``), else None."""
    registered = _read_json(Path(str(model)) / RAR_SUMMARY_FILE).get("registered")
    return {"model": str(model), "registered": registered if isinstance(registered, dict) else None}


def _micro_f1(metrics: Any, name: str) -> float | None:
    m = metrics.get(name) if isinstance(metrics, dict) else None
    micro = m.get("micro") if isinstance(m, dict) else None
    f1 = micro.get("f1") if isinstance(micro, dict) else None
    return float(f1) if isinstance(f1, int | float) else None


def attributes_provenance(attributes_file: str | Path | None) -> dict[str, Any]:
    """Where a round's attributes came from, from the extraction report beside ``attributes.parquet``:
    ``source`` (the backend), ``model``, ``extractor`` (lineage), ``micro_f1`` against the reference
    attributes (merged with the sellers' stated ones; None where the catalogue has no references) and
    ``extracted_micro_f1`` (the extractor's own)."""
    if attributes_file is None:
        return {"source": "catalogue", "model": None, "extractor": None, "micro_f1": None, "extracted_micro_f1": None}
    report = _read_json(Path(attributes_file).parent / "report.json")
    return {"file": str(attributes_file), "source": report.get("backend"), "model": report.get("model"),
            "extractor": report.get("extractor"), "micro_f1": _micro_f1(report.get("metrics"), "attributes"),
            "extracted_micro_f1": _micro_f1(report.get("metrics"), "extracted")}  # fmt: skip


def read_rounds(rounds_dir: str | Path) -> list[dict[str, Any]]:
    """``rounds/rounds.json`` of a select stage's output (the folder or the file)."""
    path = Path(rounds_dir)
    if path.is_dir():
        path = path / ROUNDS_FILE
    rounds = read_json_file(str(path), "run `afmrl select` first")
    if not isinstance(rounds, list) or not all(isinstance(r, dict) and "round" in r for r in rounds):
        raise DataError("rounds.json is not a list of rounds", file=str(path), field="round")
    return rounds
