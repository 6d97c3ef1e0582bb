"""composerag: compose RAG and agent pipelines from atomic typed modules.

Typical use::

    from compose import load_graph
    graph = load_graph("naive_rag", index="runs/demo-index")
    result = graph.invoke({"question": "Who designed the Velmora Bridge?"})

``load_graph`` is imported on first use: it pulls in LangGraph (about 0.7 s), which a
command-line run imports only after it has started loading the model beside it.
"""

from typing import Any

from compose.module import LLMModule, Module, ModuleContext, PromptTemplate
from compose.registry import get_module, list_modules, register

__all__ = [
    "LLMModule",
    "Module",
    "ModuleContext",
    "PromptTemplate",
    "get_module",
    "list_modules",
    "load_graph",
    "register",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "load_graph":
        from compose.api import load_graph

        return load_graph
    raise AttributeError(f"module 'compose' has no attribute {name!r}")
