"""Where an index may be written, and how it replaces an older one.

``composerag index build CORPUS OUT`` used to delete whatever OUT named before moving the new
index in, so a typo (or ``.``) destroyed user files. An index is now written only into a
directory that does not exist, is empty, or already is an index (a readable manifest and
nothing but index files and their verification cache); the current directory, its parents,
the home directory and ``/`` are refused even when empty. An existing index is swapped for
the new one in a single rename where the filesystem can (readers see the old index or the new
one, never none).
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import uuid
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from compose.retrieval.integrity import is_cache_file
from compose.retrieval.manifest import IndexManifest

INDEX_FILES = frozenset({"manifest.json", "passages.jsonl", "dense.faiss", "bm25"})
OutputState = Literal["absent", "empty", "index"]
SHOWN_ENTRIES = 5


class IndexOutputError(ValueError):
    """The directory named for an index holds something an index build must not replace."""


def protected_reason(path: Path) -> str | None:
    """Why ``path`` (resolved) may never be an index directory, or None."""
    cwd = Path.cwd().resolve()
    if path == cwd:
        return "it is the current directory"
    if path in cwd.parents:
        return "it contains the current directory"
    if path == Path.home().resolve():
        return "it is the home directory"
    if path == Path(path.anchor):
        return "it is the filesystem root"
    return None


def describe_entries(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN_ENTRIES])
    more = len(names) - SHOWN_ENTRIES
    return shown + (f" and {more} more" if more > 0 else "")


def output_state(out_dir: str | Path) -> OutputState:
    """Whether ``out_dir`` is absent, empty or an index; raise :class:`IndexOutputError`
    naming what is in the way for anything else."""
    shown = Path(out_dir)
    path = shown.expanduser().resolve()
    where = f"{shown}" if str(shown) == str(path) else f"{shown} ({path})"
    refuse = f"refusing to write an index into {where}"
    reason = protected_reason(path)
    if reason:
        raise IndexOutputError(f"{refuse}: {reason}; name a new directory, e.g. {shown}/index")
    if not path.exists():
        blocking = next((parent for parent in path.parents if parent.exists()), None)
        if blocking is not None and not blocking.is_dir():
            raise IndexOutputError(f"{refuse}: {blocking} is a file, not a directory")
        return "absent"
    if not path.is_dir():
        raise IndexOutputError(f"{refuse}: it is a file, not a directory")
    entries = sorted(path.iterdir())
    if not entries:
        return "empty"
    foreign = [e.name + ("/" if e.is_dir() else "") for e in entries
               if e.name not in INDEX_FILES and not is_cache_file(e.name)]
    if foreign:
        raise IndexOutputError(
            f"{refuse}: it is not empty and holds files that are not part of an index "
            f"({describe_entries(foreign)}); choose a new or empty directory"
        )
    manifest = path / "manifest.json"
    try:
        IndexManifest.model_validate_json(manifest.read_bytes())
    except (OSError, ValidationError) as exc:
        problem = "has no manifest.json" if not manifest.exists() else "has an unreadable manifest"
        raise IndexOutputError(
            f"{refuse}: it {problem} ({describe_entries([e.name for e in entries])}), so it is "
            "not an index this command may replace; choose a new or empty directory"
        ) from exc
    return "index"


def exchange(a: Path, b: Path) -> bool:
    """Swap two directories in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where
    the platform or filesystem cannot, so the caller falls back to two renames."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def install_index(staging: Path, out_dir: Path) -> None:
    """Move the complete index in ``staging`` to ``out_dir`` (resolved). An old index ends up
    in ``staging``, which the caller removes; ``out_dir`` is checked again first, since the
    embedding may have taken minutes."""
    if output_state(out_dir) != "index":
        staging.replace(out_dir)  # a missing or empty directory: one rename
        return
    if exchange(staging, out_dir):
        return
    aside = out_dir.with_name(f".{out_dir.name}.previous-{uuid.uuid4().hex[:8]}")
    out_dir.rename(aside)
    try:
        staging.rename(out_dir)
    except OSError:
        aside.rename(out_dir)
        raise
    shutil.rmtree(aside, ignore_errors=True)  # the new index is in place; this is garbage
