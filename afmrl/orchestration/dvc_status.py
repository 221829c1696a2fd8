"""Data changes: ``dvc status`` of the pipeline, read as changes (a reason to retrain) and inputs
merely absent locally (no verdict).

A stage whose dependencies, parameters or command differ from ``dvc.lock``, or a ``.dvc`` data
pointer whose data differs from the recorded hash, is a change. Inputs that are merely absent
locally (``deleted``, ``not in cache``: not pulled yet) and out-of-date *outputs* of pipeline stages
are not: they say nothing about new data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from afmrl.errors import TriggerError


@dataclass
class DataStatus:
    changes: list[str] = field(default_factory=list)  # each one is a reason to retrain
    missing: list[str] = field(default_factory=list)  # inputs absent locally (not pulled): no verdict


def parse_dvc_status(status: dict[str, Any]) -> DataStatus:
    """Turn ``dvc status --json`` (or ``Repo.status()``) into changes and missing inputs."""
    out = DataStatus()
    for name, items in sorted(status.items()):
        is_pointer = name.endswith(".dvc")
        for item in items:
            if isinstance(item, str):
                if item in ("changed command", "changed cmd"):
                    out.changes.append(f"{name}: command changed")
                continue  # "always changed" stages say nothing about data
            for kind, entries in item.items():
                if kind == "changed deps":
                    for path, state in sorted(entries.items()):
                        if isinstance(state, dict):  # a params file: {key: state}
                            out.changes.extend(
                                f"{name}: parameter {key} {s}" for key, s in sorted(state.items())
                            )
                        elif state in ("deleted", "not in cache"):
                            out.missing.append(f"{name}: input {path} {state}")
                        else:
                            out.changes.append(f"{name}: input {path} {state}")
                elif kind == "changed outs" and is_pointer:
                    for path, state in sorted(entries.items()):
                        if state in ("deleted", "not in cache"):
                            out.missing.append(f"{name}: data {path} {state}")
                        else:
                            out.changes.append(
                                f"{name}: data {path} {state} (not yet recorded with dvc add/commit)"
                            )
    return out


def dvc_data_status(repo_dir: str | Path = ".", targets: list[str] | None = None) -> DataStatus | None:
    """``dvc status`` through DVC's Python API; None when ``repo_dir`` is not a DVC repository."""
    from dvc.exceptions import DvcException, NotDvcRepoError
    from dvc.repo import Repo

    try:
        repo = Repo(str(repo_dir))
    except NotDvcRepoError:
        return None
    try:
        with repo:
            status = repo.status(targets=list(targets) if targets else None)
    except DvcException as exc:
        raise TriggerError(f"dvc status failed: {exc}", file=str(repo_dir)) from exc
    return parse_dvc_status(status)
