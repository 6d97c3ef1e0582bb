"""Expose a composerag graph as a LangChain tool, for LangChain / LangGraph agents.

The tool's argument schema is the graph's typed request model, so an agent's model is told
to send ``{"question": "..."}`` and anything else is refused before the graph runs.

    python examples/langchain_tool.py "Who invented the kelp-oil lamp?"
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from compose import load_graph
from compose.serve.langchain_tool import as_langchain_tool


def make_tool(index: Path | None = None):
    from compose.corpora.demo import demo_index

    graph = load_graph("naive_rag", index=index or demo_index())
    return as_langchain_tool(graph, name="search_lighthouse_docs",
                             description="Answer a question from the lighthouse documents, "
                             "with the ids of the passages that support the answer.")


def main(question: str, index: Path | None = None) -> dict:
    tool = make_tool(index)
    print("tool schema:", json.dumps(tool.tool_call_schema.model_json_schema()))
    # What an agent does when its model emits a tool call:
    return tool.invoke({"question": question})


if __name__ == "__main__":
    result = main(sys.argv[1] if len(sys.argv) > 1 else "Who invented the kelp-oil lamp?")
    print(result["answer"], result["citations"])
