"""Generation cache: (model fingerprint + generation settings, listing content hash) -> raw output.

One SQLite file (``attributes.cache_path``). A re-run generates only listings whose content
(title, description, image bytes, prompt keys) or model/prompt/generation settings changed; the
raw text is stored, not the parse, so a better parser applies to cached generations too. Keys are
:func:`afmrl.digest.content_hash` values.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (
    model TEXT NOT NULL,
    content TEXT NOT NULL,
    raw TEXT NOT NULL,
    seconds REAL NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (model, content)
)
"""


class GenerationCache:
    """``get_many`` / ``put_many`` by (model key, content key); a context manager."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(str(self.path), timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(_SCHEMA)
        self._conn.commit()

    def get_many(self, model: str, keys: Sequence[str]) -> dict[str, tuple[str, float]]:
        out: dict[str, tuple[str, float]] = {}
        keys = list(dict.fromkeys(keys))
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT content, raw, seconds FROM generations WHERE model = ? AND content IN ({marks})",
                [model, *chunk],
            )
            out.update({c: (r, s) for c, r, s in rows})
        return out

    def put_many(self, model: str, rows: Iterable[tuple[str, str, float]]) -> int:
        now = time.time()
        data = [(model, key, raw, float(sec), now) for key, raw, sec in rows]
        self._conn.executemany("INSERT OR REPLACE INTO generations VALUES (?, ?, ?, ?, ?)", data)
        self._conn.commit()
        return len(data)

    def __len__(self) -> int:
        return int(self._conn.execute("SELECT COUNT(*) FROM generations").fetchone()[0])

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> GenerationCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
