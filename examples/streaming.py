"""Stream a run's node updates as each node finishes - for progress display or early output.

``stream`` yields ``{node_name: state_update}`` per finished node (LangGraph's "updates"
mode); the update holds exactly what that node wrote, plus its trace event with cost and
latency.

    python examples/streaming.py "Who invented the kelp-oil lamp?"
"""

from __future__ import annotations

import sys
from pathlib import Path

from compose import load_graph


def main(question: str, index: Path | None = None) -> list[tuple[str, list[str], float]]:
    from compose.corpora.demo import demo_index

    graph = load_graph("naive_rag", index=index or demo_index())
    seen = []
    for update in graph.stream({"question": question}):
        for node, written in update.items():
            event = written["trace"][0]
            fields = sorted(k for k in written if k != "trace" and not k.startswith("_"))
            print(f"{node:10s} wrote {', '.join(fields)} in {event['latency_s']:.2f} s")
            seen.append((node, fields, event["latency_s"]))
    return seen


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "Who invented the kelp-oil lamp?")
