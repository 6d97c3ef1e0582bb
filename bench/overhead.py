"""Bench 9c: framework overhead of a naive RAG run.

    python bench/overhead.py [--questions 10]

Overhead = wall time of ``graph.invoke`` minus the time spent inside generator and retriever
calls (both measured where they happen, see ``CallStats``). It covers state mapping, pydantic
validation, tracing and LangGraph scheduling. The module cache is off.
"""

from __future__ import annotations

import argparse
import time

from rich.console import Console
from rich.table import Table

from compose.api import load_graph
from compose.corpora.demo import load_demo
from compose.retrieval.store import ensure_index
from compose.trace import totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=10)
    parser.add_argument("--graph", default="naive_rag")
    args = parser.parse_args()
    demo = load_demo()
    graph = load_graph(args.graph, index=ensure_index(demo.corpus, "demo"), cache=False)
    graph.invoke({"question": "warm-up: who designed the Velmora Bridge?"})
    wall = inside = 0.0
    nodes = 0
    for item in demo.questions[: args.questions]:
        started = time.perf_counter()
        state = graph.invoke({"question": item.question})
        wall += time.perf_counter() - started
        spent = totals(state["trace"])
        inside += spent.generator_s + spent.retriever_s
        nodes += len(state["trace"])
    overhead = wall - inside
    table = Table(title=f"{args.graph}: framework overhead over {args.questions} demo questions")
    for column in ("wall s", "generator+retriever s", "overhead s", "overhead %",
                   "overhead ms / node", "nodes run"):
        table.add_column(column, justify="right")
    table.add_row(f"{wall:.2f}", f"{inside:.2f}", f"{overhead:.3f}",
                  f"{100 * overhead / wall:.2f}%", f"{1000 * overhead / nodes:.2f}", str(nodes))
    Console(width=150).print(table)


if __name__ == "__main__":
    main()
