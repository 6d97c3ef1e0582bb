"""File hashes of an index directory: recorded at build, checked at open, cached by stat.

Why hashes: two indexes with the same passage count have FAISS and BM25 files of the same
size and shape, so only their content tells a file copied in from another index apart; such a
file is otherwise accepted and answers every query with the other corpus's passages.

Why a cache: hashing is linear in the index size (a flat index of a million 384-dimensional
vectors is 1.5 GB), and ``composerag run`` opens the index once per process. After a file is
hashed and found right, its (size, mtime_ns, ctime_ns, inode, device) and hash go into
``.verified.json`` in the index directory; a later open hashes again only files whose stat
changed. Writing, truncating, copying or renaming a file changes its ctime, which no user call
can set back, so an altered file is always hashed again. The cache guards against accidents,
not against someone with write access to the index: they could rewrite the manifest's hashes
as easily. A directory that cannot be written is simply hashed on every open.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

from compose.retrieval.errors import IndexDamagedError
from compose.retrieval.manifest import MANIFEST_FILE, IndexManifest

VERIFIED_FILE = ".verified.json"
StatKey = list[int]
# a file's stat key followed by its sha256, as the verified cache keeps it
VerifiedEntry = list[int | str]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_cache_file(name: str) -> bool:
    """The verification cache, or a temporary file left by an interrupted write of it."""
    return name == VERIFIED_FILE or name.startswith(f"{VERIFIED_FILE}.")


def digest_files(index_dir: Path) -> dict[str, str]:
    """sha256 of every file an index build wrote, by path relative to ``index_dir``."""
    return {
        path.relative_to(index_dir).as_posix(): file_sha256(path)
        for path in sorted(index_dir.rglob("*"))
        if path.is_file() and path.name != MANIFEST_FILE and not is_cache_file(path.name)
    }


def stat_key(path: Path) -> StatKey:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def read_verified(index_dir: Path) -> dict[str, VerifiedEntry]:
    """The cache, or nothing when it is missing or unreadable: it is only ever a shortcut."""
    try:
        data = json.loads((index_dir / VERIFIED_FILE).read_bytes())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_verified(index_dir: Path, entries: dict[str, VerifiedEntry]) -> None:
    """Replace the cache in one rename, so a concurrent open reads the old or the new one."""
    temporary: str | None = None
    try:
        handle, temporary = tempfile.mkstemp(prefix=f"{VERIFIED_FILE}.", dir=index_dir)
        with os.fdopen(handle, "w") as out:
            json.dump(entries, out)
        os.replace(temporary, index_dir / VERIFIED_FILE)
    except OSError:  # a read-only index: verified again next time
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)


def verify_files(index_dir: str | Path, manifest: IndexManifest) -> None:
    """Raise :class:`IndexDamagedError` for the first file in ``manifest.files`` that is
    missing or whose content differs; hash only files whose stat changed since last verified."""
    index_dir = Path(index_dir)
    verified = read_verified(index_dir)
    fresh: dict[str, VerifiedEntry] = {}
    for name, expected in sorted(manifest.files.items()):
        path = index_dir / name
        if not path.is_file():
            raise IndexDamagedError(
                index_dir, name, "is missing" if not path.exists() else "is not a regular file")
        key = stat_key(path)
        if verified.get(name) == [*key, expected]:
            fresh[name] = [*key, expected]
            continue
        actual = file_sha256(path)
        if actual != expected:
            raise IndexDamagedError(
                index_dir, name,
                f"differs from the file the index was built with (sha256 {actual[:12]}..., "
                f"manifest {expected[:12]}...): it was changed, truncated or copied from "
                "another index")
        if stat_key(path) == key:  # not rewritten while it was being hashed
            fresh[name] = [*key, expected]
    if fresh != verified:
        write_verified(index_dir, fresh)
