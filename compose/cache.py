"""SQLite cache of module outputs, keyed by (module, params, prompt version, model, input).

SQLite because it is in the standard library, survives crashes with WAL, and lets several
processes (eval workers) share one file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any


class ModuleCache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS module_cache ("
            " key TEXT PRIMARY KEY, module TEXT NOT NULL, value TEXT NOT NULL,"
            " created REAL DEFAULT (unixepoch('subsec')))"
        )
        self._conn.commit()

    @staticmethod
    def _digest(key: str) -> str:
        return hashlib.sha256(key.encode("utf-8")).hexdigest()

    def get(self, key: str) -> Any | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT value FROM module_cache WHERE key = ?", (self._digest(key),)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, module: str, value: Any) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO module_cache (key, module, value) VALUES (?, ?, ?)",
                (self._digest(key), module, json.dumps(value, ensure_ascii=False)),
            )
            self._conn.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM module_cache").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._conn.close()
