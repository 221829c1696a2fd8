"""One afmrl pipeline at a time on the local stores: a lock file next to each, held with ``flock``.

Milvus Lite serves one process per ``.db``, and a SQLite MLflow store's registry (the gate reads the
champion, then moves it) must not be changed by two pipelines at once. The lock files sit next to the
stores (``outputs/milvus.db.afmrl.lock``, ``mlflow.db.afmrl.lock``) and are held by:

- a whole pipeline run in one process (:func:`afmrl.tracking.pipeline.pipeline_run`) for its duration,
  and ``afmrl run start`` while it opens the parent run (both stores);
- each stage that writes shared state, for its duration: ``index``, ``publish`` and ``afmrl index alias``
  and ``evaluate --index`` (the Milvus Lite file), ``promote`` (the SQLite registry).

A second holder gets :class:`PipelineLocked` naming the lock file and its holder (pid, what, since when)
before it has changed anything. Servers (Milvus standalone, an MLflow server) take concurrent clients:
nothing is locked for them. Stages that only log runs (train, extract, ...) take no lock, so processes
can still log to one SQLite store at once. The kernel drops a ``flock`` when its process dies, so a
crashed pipeline leaves no stale lock (the file stays; its content is only informative).

Child processes share their parent's locks: the holder exports ``AFMRL_LOCK_TOKEN`` (also written into
the lock file) while it holds them, so stages that a held pipeline runs as processes (``dvc repro``
under a pipeline run) go ahead. Re-entering in one process (a stage inside a pipeline run) is counted.
"""

from __future__ import annotations

import fcntl
import functools
import inspect
import json
import os
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from afmrl.errors import AfmrlError
from afmrl.tracking.redact import scrub
from afmrl.tracking.store import sqlite_path

if TYPE_CHECKING:
    from afmrl.config import Config

LOCK_SUFFIX = ".afmrl.lock"
TOKEN_ENV = "AFMRL_LOCK_TOKEN"
PIPELINE_ID_ENV = "AFMRL_PIPELINE_RUN_ID"  # afmrl.tracking.runs.PIPELINE_ID_ENV (not imported: runs imports mlflow)


class PipelineLocked(AfmrlError):
    """Another afmrl pipeline holds a local store (Milvus Lite file, SQLite MLflow store)."""


def lock_paths(cfg: Config, *, index: bool = True, tracking: bool = True) -> list[Path]:
    """The lock files of the local stores ``cfg`` names: next to the Milvus Lite file (``index``) and next
    to the SQLite MLflow store (``tracking``, when tracking is on). Empty for servers."""
    paths = set()
    if index and (lite := cfg.index.lite_path()) is not None:
        paths.add(lite.with_name(lite.name + LOCK_SUFFIX))
    if tracking and cfg.tracking.enabled and (db := sqlite_path(cfg.tracking.resolved_uri())) is not None:
        db = db.expanduser().resolve()
        paths.add(db.with_name(db.name + LOCK_SUFFIX))
    return sorted(paths)


_state = threading.RLock()
_held: dict[Path, list[Any]] = {}  # path -> [fd (None when a parent process holds it), depth]
_own_token: str | None = None  # the token this process created and exported (removed when it holds nothing)


def _holder_info(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def is_held(path: str | Path) -> bool:
    """Whether some process (this one included) holds the lock file ``path`` now."""
    path = Path(path)
    if not path.is_file():
        return False
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken by this probe
    return False


def _locked_error(path: Path, store: str) -> PipelineLocked:
    info = _holder_info(path)
    who = [f"pid {info['pid']}" if info.get("pid") else "pid unknown"]
    if info.get("holder"):
        who.append(str(info["holder"]))
    if info.get("started_at"):
        who.append(f"started at {info['started_at']}")
    if info.get("pipeline_run_id"):
        who.append(f"pipeline run {info['pipeline_run_id']}")
    server = ("a Milvus server (index.uri / MILVUS_URI = http://HOST:19530)" if store == "milvus" else
              "an MLflow server (tracking.uri / MLFLOW_TRACKING_URI = http://HOST:5000)")  # fmt: skip
    return PipelineLocked(
        f"another afmrl pipeline ({', '.join(who)}) holds {path}; nothing was changed here: wait for it to "
        f"finish, or use {server} to run pipelines at once"
    )


def _acquire(path: Path, store: str, holder: str) -> None:
    global _own_token
    with _state:
        if path in _held:
            _held[path][1] += 1
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise AfmrlError(f"cannot open the pipeline lock file: {exc.strerror or exc}", file=str(path)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            token = os.environ.get(TOKEN_ENV)
            if token and _holder_info(path).get("token") == token:  # our parent process holds it
                _held[path] = [None, 1]
                return
            raise _locked_error(path, store) from None
        except BaseException:
            os.close(fd)
            raise
        token = os.environ.get(TOKEN_ENV)
        if not token:
            token = _own_token = uuid.uuid4().hex
            os.environ[TOKEN_ENV] = token
        info = {"pid": os.getpid(), "holder": holder, "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "pipeline_run_id": os.environ.get(PIPELINE_ID_ENV), "command": scrub(" ".join(sys.argv))[:500],
                "token": token}  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        _held[path] = [fd, 1]


def _release(path: Path) -> None:
    global _own_token
    with _state:
        entry = _held.get(path)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _held[path]
        fd = entry[0]
        if fd is not None:
            try:
                os.ftruncate(fd, 0)  # before unlocking: the next holder's record must stay
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
        if not _held and _own_token is not None:
            if os.environ.get(TOKEN_ENV) == _own_token:
                os.environ.pop(TOKEN_ENV, None)
            _own_token = None


@contextmanager
def pipeline_lock(cfg: Config, holder: str, *, index: bool = True, tracking: bool = True) -> Iterator[list[Path]]:
    """Hold the locks of the local stores (:func:`lock_paths`) for the block; :class:`PipelineLocked` at
    once (nothing waited for, nothing changed) when another pipeline holds one. ``holder`` says what holds
    it in the message the other pipeline gets (``index stage``, ``pipeline run``)."""
    paths = lock_paths(cfg, index=index, tracking=tracking)
    milvus = cfg.index.lite_path()
    taken: list[Path] = []
    try:
        for path in paths:
            store = "milvus" if milvus is not None and path == milvus.with_name(milvus.name + LOCK_SUFFIX) else "mlflow"
            _acquire(path, store, holder)
            taken.append(path)
        yield paths
    finally:
        for path in reversed(taken):
            _release(path)


def holds_stores(holder: str, *, index: bool = True, tracking: bool = True,
                 only_with: str | None = None) -> Callable[[Callable[..., Any]], Callable[..., Any]]:  # fmt: skip
    """Decorate a stage's ``run(cfg, ...)``: it holds :func:`pipeline_lock` for its whole duration (taken
    before it reads or writes anything). ``only_with``: only when that argument is given (not None)."""

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            if only_with is not None and bound.arguments.get(only_with) is None:
                return fn(*args, **kwargs)
            with pipeline_lock(bound.arguments["cfg"], holder, index=index, tracking=tracking):
                return fn(*args, **kwargs)

        return wrapper

    return decorate
