"""A damaged module cache never costs a question. Real SQLite files are damaged the ways
disks, crashes and mistakes damage them, then a real evaluation runs over them (the scripted
generator stands in for the model: what is tested is the cache, not answers): every question
completes, one warning says where the damaged copy went, and the copy is kept byte for byte.
"""

from __future__ import annotations

import gc
import logging
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from compose.cache import ModuleCache
from compose.eval.runner import run_eval
from compose.testing import ScriptedGenerator

QUESTIONS = 3
CACHED_NODES = 2  # naive_rag: retrieve and answer


@pytest.fixture
def evaluate(monkeypatch, demo_index, tmp_path) -> Callable[[Path], list[dict]]:
    """Run naive_rag over the demo questions with the cache at the given path."""
    generator = ScriptedGenerator(lambda messages: {"answer": "Ilse Ranneth", "citations": [1]})
    monkeypatch.setattr("compose.runtime.get_generator", lambda config: generator)
    runs = iter(range(100))

    def run(cache_path: Path) -> list[dict]:
        records = run_eval("naive_rag", "demo", out=tmp_path / f"run{next(runs)}.jsonl",
                           limit=QUESTIONS, cache=True, cache_path=str(cache_path),
                           index_root=demo_index.parent, show_progress=False)
        gc.collect()  # close this run's connection, as the end of an eval process would
        return records

    return run


def cache_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "compose.cache" and r.levelno >= logging.WARNING]


def sidecar(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def garbage(size: int, seed: int = 16) -> bytes:
    return random.Random(seed).randbytes(size)


def truncate_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def truncate_into_header(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:60])


def garbage_pages(path: Path) -> None:
    with open(path, "r+b") as handle:  # every page after the first (the header and schema)
        handle.seek(4096)
        handle.write(garbage(path.stat().st_size - 4096))


def bad_header(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.write(b"SQLite format 2\x00")


def not_sqlite(path: Path) -> None:
    path.write_text("notes that happened to be named like the cache\n" * 40)


def foreign_schema(path: Path) -> None:
    path.unlink()
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
        conn.execute("INSERT INTO notes VALUES ('keep me')")
    conn.close()


def garbage_wal(path: Path) -> None:
    sidecar(path, "-wal").write_bytes(garbage(40_000))


def garbage_shm(path: Path) -> None:
    sidecar(path, "-shm").write_bytes(garbage(32_768))


DATABASE_DAMAGE = [truncate_half, truncate_into_header, garbage_pages, bad_header, not_sqlite,
                   foreign_schema]
SIDECAR_DAMAGE = {garbage_wal: "-wal", garbage_shm: "-shm"}


@pytest.mark.parametrize("damage", DATABASE_DAMAGE, ids=lambda f: f.__name__)
def test_damaged_database_is_set_aside_and_rebuilt_without_error_records(
        damage, evaluate, tmp_path, caplog):
    path = tmp_path / "cache.sqlite"
    assert all(r["cache_hits"] == 0 for r in evaluate(path))
    damage(path)
    damaged = path.read_bytes()

    caplog.set_level(logging.WARNING)
    records = evaluate(path)
    assert len(records) == QUESTIONS
    assert [r["error"] for r in records] == [None] * QUESTIONS
    assert all(r["cache_hits"] == 0 for r in records)  # nothing trusted from the damaged file
    [warning] = cache_warnings(caplog)
    [aside] = tmp_path.glob("cache.sqlite.corrupt-*[0-9Z]")  # the database, not its sidecars
    assert aside.read_bytes() == damaged  # kept as found, never deleted
    assert str(aside) in warning and "moved aside" in warning

    caplog.clear()
    again = evaluate(path)  # the rebuilt cache works: a second run is all hits, no warning
    assert all(r["cache_hits"] == CACHED_NODES for r in again)
    assert cache_warnings(caplog) == []


@pytest.mark.parametrize("damage", SIDECAR_DAMAGE, ids=lambda f: f.__name__)
def test_garbage_sidecar_is_copied_aside_and_the_cached_outputs_still_serve(
        damage, evaluate, tmp_path, caplog):
    path = tmp_path / "cache.sqlite"
    first = evaluate(path)
    damage(path)
    suffix = SIDECAR_DAMAGE[damage]
    junk = sidecar(path, suffix).read_bytes()

    caplog.set_level(logging.WARNING)
    records = evaluate(path)
    assert [r["error"] for r in records] == [None] * QUESTIONS
    assert all(r["cache_hits"] == CACHED_NODES for r in records)
    assert [r["prediction"] for r in records] == [r["prediction"] for r in first]
    [warning] = cache_warnings(caplog)
    [aside] = tmp_path.glob(f"cache.sqlite.corrupt-*{suffix}")
    assert aside.read_bytes() == junk
    assert str(aside) in warning


def fill(path: Path, count: int) -> None:
    cache = ModuleCache(path)
    for i in range(count):
        cache.put(f"key {i}", "answer", {"output": {"answer": f"answer {i}"}, "stats": {}})
    cache.close()


def test_damage_found_mid_run_is_a_miss_and_the_next_open_sets_it_aside(tmp_path, caplog):
    path = tmp_path / "cache.sqlite"
    fill(path, 200)
    caplog.set_level(logging.WARNING)
    cache = ModuleCache(path)  # sound when opened (no page of the table read yet)
    assert cache_warnings(caplog) == []
    garbage_pages(path)  # a disk fault while the run goes on

    assert [cache.get(f"key {i}") for i in range(50, 200)] == [None] * 150  # misses, no raise
    cache.put("key new", "answer", {"output": {}, "stats": {}})  # skipped, no raise
    [warning] = cache_warnings(caplog)
    assert "set aside when the cache is next opened" in warning
    cache.close()

    caplog.clear()
    reopened = ModuleCache(path)
    assert len(reopened) == 0
    assert len(list(tmp_path.glob("cache.sqlite.corrupt-*[0-9Z]"))) == 1
    assert len(cache_warnings(caplog)) == 1
    reopened.close()


def test_an_unreadable_value_is_a_miss_and_the_next_put_repairs_it(tmp_path, caplog):
    path = tmp_path / "cache.sqlite"
    fill(path, 3)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE module_cache SET value = '{\"output\": tor'")
    conn.close()
    caplog.set_level(logging.WARNING)
    cache = ModuleCache(path)  # quick_check cannot see inside a value: it opens sound
    assert cache.get("key 0") is None
    assert cache.get("key 1") is None
    cache.put("key 0", "answer", {"output": {"answer": "again"}, "stats": {}})
    assert cache.get("key 0") == {"output": {"answer": "again"}, "stats": {}}
    assert len(cache_warnings(caplog)) == 1
    cache.close()


def test_a_cache_path_that_cannot_be_opened_runs_uncached_with_one_warning(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    caplog.set_level(logging.WARNING)
    cache = ModuleCache(blocker / "cache.sqlite")
    cache.put("key", "answer", {"output": {}, "stats": {}})
    assert cache.get("key") is None and len(cache) == 0
    [warning] = cache_warnings(caplog)
    assert "running without the cache" in warning
    assert blocker.read_text() == "a file where the cache directory should be"
