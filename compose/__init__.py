"""composerag: compose RAG and agent pipelines from atomic typed modules.

Typical use::

    from compose import load_graph
    graph = load_graph("naive_rag", index="runs/demo-index")
    result = graph.invoke({"question": "Who designed the Velmora Bridge?"})

Every name here is imported on first use: ``load_graph`` pulls in LangGraph (about 0.7 s),
which a command-line run imports only after it has started loading the model beside it, and
the module classes pull in pydantic (about 0.25 s), which ``composerag --help`` never needs.
"""

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from compose.api import load_graph
    from compose.module import LLMModule, Module, PromptTemplate
    from compose.registry import get_module, list_modules, register
    from compose.runtime import ModuleContext

_HOMES = {
    "LLMModule": "compose.module",
    "Module": "compose.module",
    "ModuleContext": "compose.runtime",
    "PromptTemplate": "compose.module",
    "get_module": "compose.registry",
    "list_modules": "compose.registry",
    "register": "compose.registry",
    "load_graph": "compose.api",
}
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
    if name in _HOMES:
        return getattr(import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'compose' has no attribute {name!r}")
