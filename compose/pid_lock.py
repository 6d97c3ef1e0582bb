"""An exclusive, non-blocking file lock stamped with the holder's PID.

``flock`` because the kernel drops it when the holder ends, however it ends (a SIGKILL
included), so a stale lock never needs clearing by hand; the PID inside lets the refusal
name who holds it. Used by evaluation results files and durable threads.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def pid_lock(path: Path, busy: Callable[[str], Exception]) -> Iterator[None]:
    """Hold ``path`` for this process, or raise ``busy(holder_pid)``. Locks of one process
    conflict too: each ``open`` is its own open file description. The lock file stays
    afterwards (removing it would let two holders lock different files)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise busy(holder) from None
        stamp = f"{os.getpid()}\n".encode()
        os.pwrite(fd, stamp, 0)
        os.ftruncate(fd, len(stamp))
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the flock
