"""Provenance tags: the git commit and DVC's record of the pipeline and its data.

``afmrl.git_commit`` (``AFMRL_GIT_COMMIT`` or ``git rev-parse HEAD``), ``afmrl.dvc_lock_md5`` (when a
``dvc.lock`` is found from the working directory up), and ``afmrl.data.<context>.dvc_md5`` /
``dvc_path``: the hash ``dvc.lock`` records for a catalogue.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

from afmrl.digest import file_digest

GIT_COMMIT_ENV = "AFMRL_GIT_COMMIT"


@functools.lru_cache(maxsize=8)
def _git_commit(cwd: str) -> str | None:
    git = shutil.which("git")
    if not git:
        return None
    try:
        out = subprocess.run([git, "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def git_commit() -> str | None:
    return os.environ.get(GIT_COMMIT_ENV) or _git_commit(os.getcwd())


def find_dvc_lock(start: str | Path | None = None) -> Path | None:
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.lock").is_file():
            return folder / "dvc.lock"
        if (folder / ".dvc").is_dir() or (folder / ".git").exists():
            return None
    return None


def _dvc_outs(lock: Path) -> dict[str, str]:
    import yaml

    try:
        doc = yaml.safe_load(lock.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}
    found: dict[str, str] = {}
    for stage in (doc.get("stages") or {}).values():
        for entry in (stage.get("outs") or []) + (stage.get("deps") or []):
            if isinstance(entry, dict) and entry.get("path") and entry.get("md5"):
                found.setdefault(str(entry["path"]).rstrip("/"), str(entry["md5"]))
    return found


def provenance_tags() -> dict[str, str]:
    tags: dict[str, str] = {}
    if commit := git_commit():
        tags["afmrl.git_commit"] = commit
    if lock := find_dvc_lock():
        tags["afmrl.dvc_lock_md5"] = file_digest(lock, "md5")
    return tags


def dvc_data_tags(catalog_dir: str | Path, context: str) -> dict[str, str]:
    """``afmrl.data.<context>.dvc_md5``: the hash dvc.lock records for the catalogue (folder or parquet)."""
    lock = find_dvc_lock()
    if lock is None:
        return {}
    outs = _dvc_outs(lock)
    folder = Path(catalog_dir).resolve()
    for candidate in (folder, folder / "listings.parquet"):
        rel = Path(os.path.relpath(candidate, lock.parent)).as_posix()
        if rel in outs:
            return {f"afmrl.data.{context}.dvc_md5": outs[rel], f"afmrl.data.{context}.dvc_path": rel}
    return {}
