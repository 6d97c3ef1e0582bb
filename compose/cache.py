"""SQLite cache of module outputs, keyed by (module, params, prompt version, model, input).

SQLite because it is in the standard library, survives crashes with WAL, and lets several
processes (eval workers) share one file.

A cache is disposable, the answers of a run are not, so a damaged cache file must never
cost a question. Opening checks the file (its ``-wal``/``-shm`` headers, ``PRAGMA
quick_check`` and the schema: about 1 ms per MB, 4 ms for 3,000 cached outputs, 120 ms for
100,000, once per process): a file cut short, with
overwritten pages, a bad header, another schema or not SQLite at all is renamed, with its
``-wal``/``-shm``, to ``<name>.corrupt-<UTC time>`` (never deleted: ``sqlite3 <it>
.recover`` can salvage from it) and a new empty cache takes its place. A garbage ``-wal`` or
``-shm`` beside a sound database is copied aside instead: SQLite discards a log or index
whose header is not its own, so the cached outputs stay usable. Either case logs
one warning on the ``compose.cache`` logger saying where the damaged copy went. Damage that
shows only later, mid-run, makes ``get`` a miss and ``put`` a no-op, with one warning; the
next open finds it and sets the file aside.

Opening holds an exclusive ``flock`` on ``<name>.lock`` (which stays), so that two workers
opening one damaged file at once set it aside once, and neither renames the other's new one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import sqlite3
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SCHEMA = {"key": "TEXT", "module": "TEXT", "value": "TEXT", "created": "REAL"}
CREATE = ("CREATE TABLE IF NOT EXISTS module_cache ("
          " key TEXT PRIMARY KEY, module TEXT NOT NULL, value TEXT NOT NULL,"
          " created REAL DEFAULT (unixepoch('subsec')))")
SIDECARS = ("-wal", "-shm")
# https://www.sqlite.org/fileformat2.html#walformat: big-endian magic then format version;
# the wal-index (-shm) starts with the same version in native byte order.
WAL_MAGICS = {struct.pack(">II", magic, 3007000) for magic in (0x377F0682, 0x377F0683)}
SHM_VERSION = struct.pack("=I", 3007000)


def _sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


@contextlib.contextmanager
def _opening(path: Path) -> Iterator[None]:
    """Serialise opening (checking, setting aside, creating) across processes."""
    fd = os.open(_sidecar(path, ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def _corruption(exc: sqlite3.DatabaseError) -> str:
    """Why an error means a damaged file (SQLITE_CORRUPT, SQLITE_NOTADB are raised as plain
    DatabaseError); any other error (cannot open, locked) is re-raised."""
    if type(exc) is not sqlite3.DatabaseError:
        raise exc
    return f"damaged ({exc})"


def database_damage(path: Path) -> str | None:
    """Why the database at ``path`` is not a sound module cache; None when it is (or is
    absent). Read-only, so a damaged file is left as it was found."""
    if not path.exists():
        return None
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        verdict = conn.execute("PRAGMA quick_check").fetchall()
        if verdict != [("ok",)]:
            return f"damaged (quick_check: {'; '.join(str(row[0]) for row in verdict[:3])})"
        tables = {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")}
        if not tables:
            return None  # an empty database: the table is created on opening
        columns = {name: kind for _, name, kind, *_ in
                   conn.execute("PRAGMA table_info(module_cache)")}
        if tables != {"module_cache"} or columns != SCHEMA:
            return f"not a module cache (tables: {', '.join(sorted(tables))})"
        return None
    except sqlite3.DatabaseError as exc:
        return _corruption(exc)
    finally:
        conn.close()


def sidecar_damage(path: Path) -> dict[str, str]:
    """The suffixes (``-wal``, ``-shm``) of the sidecars of ``path`` whose header is not
    SQLite's, and why. An empty one is normal; a live one always has the header."""
    expected = {"-wal": WAL_MAGICS, "-shm": {SHM_VERSION}}
    found: dict[str, str] = {}
    for suffix in SIDECARS:
        side = _sidecar(path, suffix)
        if not side.is_file() or side.stat().st_size == 0:
            continue
        with open(side, "rb") as handle:
            head = handle.read(8 if suffix == "-wal" else 4)
        if head not in expected[suffix]:
            found[suffix] = f"{side.name} has no SQLite {suffix[1:]} header"
    return found


def aside_name(path: Path) -> Path:
    """``<name>.corrupt-<UTC time>``, numbered if that is taken (with or without sidecars)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    candidate, number = path.with_name(f"{path.name}.corrupt-{stamp}"), 1
    while any(_sidecar(candidate, s).exists() for s in ("", *SIDECARS)):
        number += 1
        candidate = path.with_name(f"{path.name}.corrupt-{stamp}-{number}")
    return candidate


class ModuleCache:
    """Module outputs by key. A damaged or unusable file never raises here (see the module
    docstring): the cache warns once and the run goes on with fewer or no hits."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._lock = threading.Lock()
        self._warned = False
        self._conn: sqlite3.Connection | None = None  # None: no caching in this process
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _opening(self.path):
                self._set_aside_if_damaged()
                conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(CREATE)
                conn.commit()
                self._conn = conn
        except (OSError, sqlite3.DatabaseError) as exc:
            self._warn(f"cannot be used ({type(exc).__name__}: {exc}); running without the "
                       "cache: fix the path or its permissions, or pass --no-cache")

    def _set_aside_if_damaged(self) -> None:
        target = aside_name(self.path)
        garbage = sidecar_damage(self.path)
        for suffix in garbage:  # copied before SQLite reads them (it rewrites a bad -shm)
            shutil.copy2(_sidecar(self.path, suffix), _sidecar(target, suffix))
        why = database_damage(self.path)
        if why is not None:
            # sidecars keep SQLite's suffixes, so the copy opens with its log; a garbage one,
            # already copied, stays for SQLite to discard
            for suffix in ("", *SIDECARS):
                source = _sidecar(self.path, suffix)
                if suffix not in garbage and source.exists():
                    os.replace(source, _sidecar(target, suffix))
            self._warn(f"{why}; moved aside to {target} (with its -wal/-shm) and a new empty "
                       "cache started")
        elif garbage:
            self._warn(f"{'; '.join(garbage.values())}: SQLite discards it and the cached "
                       f"outputs are kept; a copy of the damaged file is at {target}"
                       f"{'/'.join(garbage)}")

    def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            log.warning("module cache %s: %s", self.path, message)

    def _failed(self, action: str, exc: Exception) -> None:
        """A read or write that failed mid-run: the question goes on without the cache.
        Corruption (a plain DatabaseError) ends all use of the file in this process;
        anything else (locked, disk full, one unreadable value) may pass, so the next call
        tries again."""
        if type(exc) is sqlite3.DatabaseError:
            with self._lock, contextlib.suppress(sqlite3.DatabaseError):
                conn, self._conn = self._conn, None
                if conn is not None:
                    conn.close()  # may fail on a damaged file; nothing more to do then
            self._warn(f"{action} failed ({exc}); caching is off for the rest of this run and "
                       "the file is set aside when the cache is next opened")
        else:
            self._warn(f"{action} failed ({type(exc).__name__}: {exc}); the question goes on "
                       "without the cache")

    @staticmethod
    def _digest(key: str) -> str:
        return hashlib.sha256(key.encode("utf-8")).hexdigest()

    def get(self, key: str) -> Any | None:
        try:
            with self._lock:
                if self._conn is None:
                    return None
                row = self._conn.execute(
                    "SELECT value FROM module_cache WHERE key = ?", (self._digest(key),)
                ).fetchone()
            return json.loads(row[0]) if row else None
        except (sqlite3.DatabaseError, ValueError) as exc:  # ValueError: a value not JSON
            self._failed("a read", exc)
            return None

    def put(self, key: str, module: str, value: Any) -> None:
        text = json.dumps(value, ensure_ascii=False)
        try:
            with self._lock:
                if self._conn is None:
                    return
                self._conn.execute(
                    "INSERT OR REPLACE INTO module_cache (key, module, value) VALUES (?, ?, ?)",
                    (self._digest(key), module, text),
                )
                self._conn.commit()
        except sqlite3.DatabaseError as exc:
            self._failed("a write", exc)

    def __len__(self) -> int:
        with self._lock:
            if self._conn is None:
                return 0
            count: int = self._conn.execute("SELECT COUNT(*) FROM module_cache").fetchone()[0]
            return count

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
