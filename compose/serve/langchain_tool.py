"""A graph as a LangChain tool, so a LangChain or LangGraph agent can call it.

The tool's argument schema is the graph's typed request model (the same one the HTTP and
MCP servers publish), so the calling agent's model sees ``question: str`` and a bad call is
refused by validation before the graph runs. The tool returns the graph's declared outputs.

Usage::

    tool = as_langchain_tool(load_graph("naive_rag", index=demo_index()), name="search_docs")
    tool.invoke({"question": "Who invented the kelp-oil lamp?"})
"""

from __future__ import annotations

from typing import Any

from langchain_core.tools import StructuredTool

from compose.api import ComposeGraph
from compose.graph.io import graph_io_models


def as_langchain_tool(graph: ComposeGraph, *, name: str | None = None,
                      description: str | None = None) -> StructuredTool:
    request_model, _ = graph_io_models(graph.resolved)

    def run(**arguments: Any) -> dict[str, Any]:
        return graph.outputs(graph.invoke(arguments))

    async def arun(**arguments: Any) -> dict[str, Any]:
        return graph.outputs(await graph.ainvoke(arguments))

    return StructuredTool.from_function(
        func=run, coroutine=arun, name=name or graph.spec.name,
        description=description or graph.spec.description or graph.spec.name,
        args_schema=request_model)
