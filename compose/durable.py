"""Durable runs: the graph's state is saved to SQLite after every node, keyed by a thread id.

A run that stops part-way - a crash, a killed process, a node error, or a pause for human
approval - continues from its last saved step when invoked again with the same thread id;
nodes that finished are not run again (their outputs and trace events come from the
checkpoint). This is LangGraph's checkpointing with ``langgraph-checkpoint-sqlite``; this
file only opens the database the way a long-running, multi-threaded server needs it.

Usage::

    graph = load_graph("compose_rag", checkpointer=sqlite_checkpointer("runs/ck.sqlite"))
    try:
        graph.invoke({"question": "..."}, thread_id="q1")
    except NodeError:
        ...  # fix the cause (say, restart the model server), then:
    state = graph.resume("q1")
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from langgraph.checkpoint.sqlite import SqliteSaver


def sqlite_checkpointer(path: str | Path) -> SqliteSaver:
    """A checkpointer on ``path`` (created with its folder if missing).

    The connection is shared by the server's worker threads; SqliteSaver serialises access
    with its own lock, so ``check_same_thread`` is off."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    saver = SqliteSaver(sqlite3.connect(path, check_same_thread=False))
    saver.setup()
    return saver
