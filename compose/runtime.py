"""The runtime shared by every node of a graph: one generator, one retriever, one cache.

Models and indexes are expensive to load, so they are created lazily and shared process-wide
(a second graph with the same generator settings reuses the loaded model).
"""

from __future__ import annotations

from functools import cached_property

from compose.cache import ModuleCache
from compose.config import RuntimeConfig
from compose.generators.factory import get_generator
from compose.module import ModuleContext


class NotConfiguredError(RuntimeError):
    """A runtime resource was asked for but is not configured."""


class Runtime:
    _default: Runtime | None = None

    def __init__(self, config: RuntimeConfig | None = None, *, generator=None, retriever=None):
        self.config = config or RuntimeConfig()
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

    @cached_property
    def generator(self):
        return get_generator(self.config.generator)

    @cached_property
    def retriever(self):
        from compose.retrieval.retriever import open_retriever

        if not self.config.retriever.index:
            raise NotConfiguredError(
                "this graph retrieves but no index is configured: pass --index DIR "
                "(build one with `composerag index build CORPUS DIR`) or set retriever.index"
            )
        return open_retriever(self.config.retriever)

    @cached_property
    def cache(self) -> ModuleCache | None:
        if not self.config.cache.enabled:
            return None
        return ModuleCache(self.config.cache.path)

    def context(self) -> ModuleContext:
        return ModuleContext(self)
