"""Use a composerag graph as one node of your own LangGraph application.

``load_graph(...).graph`` is a compiled LangGraph graph, so it can be added to another
``StateGraph`` like any node. State keys the two graphs share (here ``question``, ``answer``
and ``citations``) flow in and out; composerag's internal keys (its trace and loop counters)
stay inside the subgraph.

    python examples/subgraph.py "  who invented the kelp-oil lamp  "
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TypedDict

from langgraph.graph import END, START, StateGraph

from compose import load_graph


class SupportState(TypedDict, total=False):
    question: str
    answer: str
    citations: list[str]
    reply: str


def tidy_question(state: SupportState) -> SupportState:
    question = " ".join(state["question"].split())
    return {"question": question[:1].upper() + question[1:].rstrip("?") + "?"}


def format_reply(state: SupportState) -> SupportState:
    sources = ", ".join(state.get("citations") or []) or "no sources"
    return {"reply": f"{state['answer']} (sources: {sources})"}


def build_app(index: Path | None = None):
    from compose.corpora.demo import demo_index

    rag = load_graph("naive_rag", index=index or demo_index())
    builder = StateGraph(SupportState)
    builder.add_node("tidy", tidy_question)
    builder.add_node("rag", rag.graph)  # the whole composerag graph as one node
    builder.add_node("format", format_reply)
    builder.add_edge(START, "tidy")
    builder.add_edge("tidy", "rag")
    builder.add_edge("rag", "format")
    builder.add_edge("format", END)
    return builder.compile()


def main(question: str, index: Path | None = None) -> SupportState:
    return build_app(index).invoke({"question": question})


if __name__ == "__main__":
    print(main(sys.argv[1] if len(sys.argv) > 1 else "who invented the kelp-oil lamp")["reply"])
