"""composerag: compose RAG and agent pipelines from atomic typed modules.

Typical use::

    from compose import load_graph
    graph = load_graph("naive_rag", index="runs/demo-index")
    result = graph.invoke({"question": "Who designed the Velmora Bridge?"})
"""

from compose.api import load_graph
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
