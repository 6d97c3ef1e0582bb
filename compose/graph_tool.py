"""Any graph as a tool: an agent can delegate a question to a whole RAG pipeline.

The tool takes ``{"question": str}``, runs the graph and returns the chosen outputs. A graph
given by name or path is loaded on first use with the *calling* runtime, so it shares the
agent's model, index and cache; the inner run's LLM cost is added to the calling node's
stats, so evaluation tables count it.

Usage::

    from compose.graph_tool import graph_tool
    graph_tool("naive_rag", name="rag_answer",
               description="Answer a question from the index with cited passages.")
    # then list rag_answer in an agent graph's tools: allow-list
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from compose.runtime import ModuleContext, Runtime
from compose.tools.registry import Tool, get_tool, tool
from compose.trace import totals

if TYPE_CHECKING:
    from compose.api import ComposeGraph


def graph_tool(graph: str | Path | ComposeGraph, *, name: str, description: str,
               outputs: Sequence[str] = ("answer", "citations"), timeout_s: float = 120.0,
               max_result_chars: int = 2000) -> Tool:
    """Register ``graph`` (a shipped name, a YAML path, or a loaded ``ComposeGraph``) as
    tool ``name``; returns the registered :class:`Tool`."""
    loaded: weakref.WeakKeyDictionary[Runtime, ComposeGraph] = weakref.WeakKeyDictionary()
    lock = threading.Lock()

    def graph_for(ctx: ModuleContext) -> ComposeGraph:
        if not isinstance(graph, str | Path):
            return graph
        from compose.api import load_graph

        with lock:
            if ctx.runtime not in loaded:
                loaded[ctx.runtime] = load_graph(graph, runtime=ctx.runtime)
            return loaded[ctx.runtime]

    def run_graph(question: Annotated[str, Field(min_length=1, max_length=500)],
                  ctx: ModuleContext) -> dict[str, Any]:
        state = graph_for(ctx).invoke({"question": question})
        spent = totals(state.get("trace", []))
        for field in ("llm_calls", "tokens_in", "tokens_out", "generator_s", "retriever_s"):
            setattr(ctx.stats, field, getattr(ctx.stats, field) + getattr(spent, field))
        return {key: state.get(key) for key in outputs}

    run_graph.__name__ = name
    tool(name, description=description, timeout_s=timeout_s,
         max_result_chars=max_result_chars)(run_graph)
    return get_tool(name)
