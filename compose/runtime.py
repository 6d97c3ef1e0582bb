"""The runtime shared by every node of a graph: one generator, one retriever, one cache.

Models and indexes are expensive to load, so they are created lazily and shared process-wide
(a second graph with the same generator settings reuses the loaded model). ``prefetch``
starts loading them on a background thread, so that a command-line run loads the model and
the index while the main thread is still importing LangGraph and compiling the graph.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from compose.cache import ModuleCache
from compose.config import RuntimeConfig
from compose.corpus import ScoredPassage
from compose.generators.base import Generation, Generator, Message
from compose.generators.factory import get_generator
from compose.streaming import TokenSink
from compose.structured import generate_structured

if TYPE_CHECKING:  # the retriever's imports (FAISS, bm25s) load only for graphs that retrieve
    from compose.retrieval.retriever import Retriever

T = TypeVar("T")


class NotConfiguredError(RuntimeError):
    """A runtime resource was asked for but is not configured."""


class Runtime:
    _default: Runtime | None = None

    def __init__(self, config: RuntimeConfig | None = None, *, generator: Generator | None = None,
                 retriever: Retriever | None = None) -> None:
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

    def _shared(self, name: str, create: Callable[[], T]) -> T:
        """Create a resource once, even when a prefetch thread and a node ask at once."""
        with self._loading[name]:
            if name not in self.__dict__:
                self.__dict__[name] = create()
            resource: T = self.__dict__[name]
            return resource

    @property
    def generator(self) -> Generator:
        return self._shared("generator", lambda: get_generator(self.config.generator))

    @property
    def retriever(self) -> Retriever:
        return self._shared("retriever", self._open_retriever)

    def _open_retriever(self) -> Retriever:
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


class CallStats(BaseModel):
    """What one module call cost; the trace and the eval tables are built from these."""

    llm_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    generator_s: float = 0.0
    retriever_s: float = 0.0
    parse_retries: int = 0
    cache_hit: bool = False

    def add_generation(self, generation: Generation) -> None:
        self.llm_calls += 1
        self.tokens_in += generation.tokens_in
        self.tokens_out += generation.tokens_out
        self.generator_s += generation.latency_s


COST_FIELDS = ("llm_calls", "tokens_in", "tokens_out", "parse_retries")


class ModuleContext:
    """Per-call access to the shared runtime (generator, retriever, cache) plus cost stats.

    ``wrap_generator`` sees every generator call the module makes: a traced graph node passes
    one that makes each call a span (``compose.telemetry``). ``tokens`` is set for a graph
    node that writes the final answer while the run streams tokens: structured calls that
    name a ``stream_field`` then stream that field into it (``compose.streaming``)."""

    def __init__(self, runtime: Runtime | None = None, *,
                 wrap_generator: Callable[[Generator], Generator] | None = None,
                 tokens: TokenSink | None = None) -> None:
        if runtime is None:
            runtime = Runtime.default()
        self.runtime = runtime
        self.stats = CallStats()
        self.wrap_generator = wrap_generator
        self.tokens = tokens

    def fresh(self) -> ModuleContext:
        return ModuleContext(self.runtime, wrap_generator=self.wrap_generator,
                             tokens=self.tokens)

    @property
    def generator(self) -> Generator:
        generator = self.runtime.generator
        return generator if self.wrap_generator is None else self.wrap_generator(generator)

    @property
    def retriever(self) -> Retriever:
        return self.runtime.retriever

    def generate(self, messages: list[Message], **kwargs: Any) -> Generation:
        generation = self.generator.generate(messages, **kwargs)
        self.stats.add_generation(generation)
        return generation

    def generate_structured(
        self, messages: list[Message], output_model: type[BaseModel], *, max_tokens: int,
        stream_field: str | None = None,
    ) -> tuple[BaseModel, Generation]:
        """A schema-valid reply; ``stream_field`` names the emitted string field that holds
        the answer, streamed as it is generated when this context streams tokens."""
        stream_to = (partial(self.tokens.attempt, stream_field)
                     if self.tokens is not None and stream_field is not None else None)
        parsed, generation, retries = generate_structured(
            self.generator,
            messages,
            output_model,
            max_tokens=max_tokens,
            max_retries=self.runtime.config.generator.max_parse_retries,
            on_generation=self.stats.add_generation,
            stream_to=stream_to,
        )
        self.stats.parse_retries += retries
        return parsed, generation

    def retrieve(self, query: str, *, k: int, mode: str | None = None) -> list[ScoredPassage]:
        started = time.perf_counter()
        try:
            return self.retriever.search(query, k=k, mode=mode)
        finally:
            self.stats.retriever_s += time.perf_counter() - started
