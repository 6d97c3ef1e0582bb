"""The runtime shared by every node of a graph: one generator, one retriever, one cache.

Models and indexes are expensive to load, so they are created lazily and shared process-wide
(a second graph with the same generator settings reuses the loaded model). ``prefetch``
starts loading them on a background thread, so that a command-line run loads the model and
the index while the main thread is still importing LangGraph and compiling the graph.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compose.cache import ModuleCache
from compose.config import RuntimeConfig
from compose.generators.factory import get_generator
from compose.module import ModuleContext

if TYPE_CHECKING:
    from compose.graph.spec import GraphSpec


class NotConfiguredError(RuntimeError):
    """A runtime resource was asked for but is not configured."""


class Runtime:
    _default: Runtime | None = None

    def __init__(self, config: RuntimeConfig | None = None, *, generator=None, retriever=None):
        self.config = config or RuntimeConfig()
        self._loading = {"generator": threading.Lock(), "retriever": threading.Lock()}
        if generator is not None:
            self.__dict__["generator"] = generator
        if retriever is not None:
            self.__dict__["retriever"] = retriever

    @classmethod
    def default(cls) -> Runtime:
        """The process-wide runtime used by modules called without a context."""
        if cls._default is None:
            cls._default = cls()
        return cls._default

    def _shared(self, name: str, create: Callable[[], Any]) -> Any:
        """Create a resource once, even when a prefetch thread and a node ask at once."""
        with self._loading[name]:
            if name not in self.__dict__:
                self.__dict__[name] = create()
            return self.__dict__[name]

    @property
    def generator(self):
        return self._shared("generator", lambda: get_generator(self.config.generator))

    @property
    def retriever(self):
        return self._shared("retriever", self._open_retriever)

    def _open_retriever(self):
        from compose.retrieval.retriever import open_retriever

        if not self.config.retriever.index:
            raise NotConfiguredError(
                "this graph retrieves but no index is configured: pass --index DIR on the "
                "command line or index=DIR to load_graph (build one with `composerag index "
                "build CORPUS DIR`), or set retriever.index"
            )
        return open_retriever(self.config.retriever, encoder_dir=self.config.retriever.encoder_dir)

    def prefetch(self, *, generator: bool, retriever: bool) -> threading.Thread:
        """Load the named resources on a daemon thread. A failure there is left for the
        node that needs the resource to raise, with its own context, so it is not caught
        twice; the thread only spares the wait. Not for a process that speaks a protocol on
        stdout while it loads: llama-cpp-python silences a model load by pointing fd 1 at
        /dev/null, so a reply written meanwhile is lost (the CLI's servers do not prefetch)."""
        def load() -> None:
            for wanted, name in ((retriever, "retriever"), (generator, "generator")):
                if wanted:
                    with contextlib.suppress(Exception):  # re-raised by the node needing it
                        getattr(self, name)

        thread = threading.Thread(target=load, name="composerag-prefetch", daemon=True)
        thread.start()
        return thread

    @cached_property
    def cache(self) -> ModuleCache | None:
        if not self.config.cache.enabled:
            return None
        return ModuleCache(self.config.cache.path)

    def context(self) -> ModuleContext:
        return ModuleContext(self)


def runtime_config(spec: GraphSpec, *, index: str | Path | None = None,
                   cache: bool | None = None, cache_path: str | None = None) -> RuntimeConfig:
    config = RuntimeConfig(generator=spec.generator, retriever=spec.retriever, cache=spec.cache)
    if index is not None:
        config.retriever = config.retriever.model_copy(update={"index": str(index)})
    if cache is not None:
        config.cache = config.cache.model_copy(update={"enabled": cache})
    if cache_path is not None:
        config.cache = config.cache.model_copy(update={"path": cache_path})
    return config
