"""Durable runs: the graph's state is saved to SQLite after every node, keyed by a thread id.

A run that stops part-way - a crash, a killed process, a node error, or a pause for human
approval - continues from its last saved step when invoked again with the same thread id;
nodes that finished are not run again (their outputs and trace events come from the
checkpoint). This is LangGraph's checkpointing with ``langgraph-checkpoint-sqlite``; this
file opens the database the way a long-running, multi-threaded server needs it, and locks
a thread while it runs.

Two runs of one thread at once would each start from the same checkpoint and each run
every node (twice the model time, and the later writes win). So a run holds an exclusive
``flock`` on a lock file of its thread, beside the database (``ck.sqlite.threads/``), with
its PID in it; a second run, in another process or another thread or task of the same one,
is refused with :class:`ThreadBusyError` naming that PID. Code already holding the lock may
take it again (a caller's hold around ``invoke``, which holds it too); "already holding" is
kept in a context variable, so it follows a run into the worker threads it hands work to
(``asyncio.to_thread``), and not into unrelated threads or tasks. The kernel drops the lock
when the holder ends, however it ends, so a killed run never leaves its thread locked.

Usage::

    saver = sqlite_checkpointer("runs/ck.sqlite")
    graph = load_graph("compose_rag", index=demo_index(), checkpointer=saver)
    with holding_thread(saver, "q1"):
        try:
            graph.invoke({"question": "..."}, thread_id="q1")
        except NodeError:
            ...  # fix the cause (say, restart the model server), then:
        state = graph.resume("q1")
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver

from compose.pid_lock import pid_lock


class ThreadBusyError(RuntimeError):
    """Another run (in this process or another) is running the same durable thread."""


# The thread lock files held by this flow of control (thread or task), for re-entry.
_held_here: ContextVar[frozenset[Path]] = ContextVar("composerag_held_threads",
                                                     default=frozenset())


class DurableSaver(SqliteSaver):
    """A :class:`SqliteSaver` that knows its file, so runs can lock their thread beside it."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        super().__init__(conn)
        self.path = path.resolve()  # one lock per file, however the path was spelled

    def thread_lock_path(self, thread_id: str) -> Path:
        """One lock file per thread, named by a digest: thread ids are free text."""
        digest = hashlib.sha256(thread_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]
        return self.path.with_name(self.path.name + ".threads") / f"{digest}.lock"

    @contextmanager
    def hold(self, thread_id: str) -> Iterator[None]:
        """Hold ``thread_id`` for one run, or raise :class:`ThreadBusyError` naming the PID
        of the run that holds it. The lock file stays (removing it would let two runs lock
        different files)."""
        path = self.thread_lock_path(thread_id)
        held = _held_here.get()
        if path in held:
            yield
            return
        with self._flock(thread_id, path):
            _held_here.set(held | {path})
            try:
                yield
            finally:
                _held_here.set(held)  # not reset(token): an async generator may close elsewhere

    def _flock(self, thread_id: str, path: Path) -> AbstractContextManager[None]:
        path.parent.mkdir(parents=True, exist_ok=True)
        return pid_lock(path, lambda holder: ThreadBusyError(
            f"thread {thread_id!r} of {self.path} is being run by PID {holder}"
            f"{' (this process)' if holder == str(os.getpid()) else ''} (lock {path}); wait "
            "for that run to finish, or use another thread id"))


def sqlite_checkpointer(path: str | Path) -> DurableSaver:
    """A checkpointer on ``path`` (created with its folder if missing).

    The connection is shared by the server's worker threads; SqliteSaver serialises access
    with its own lock, so ``check_same_thread`` is off."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    saver = DurableSaver(sqlite3.connect(path, check_same_thread=False), path)
    saver.setup()
    return saver


def holding_thread(checkpointer: object,
                   thread_id: str | None) -> AbstractContextManager[None]:
    """Hold ``thread_id`` for one run when the checkpointer can lock its threads (see
    :meth:`DurableSaver.hold`); a no-op without a thread id or for other checkpointers
    (LangGraph's in-memory saver lives in one process, whose caller orders its runs)."""
    hold: Callable[[str], AbstractContextManager[None]] | None = getattr(
        checkpointer, "hold", None)
    if thread_id is None or hold is None:
        return nullcontext()
    return hold(thread_id)
