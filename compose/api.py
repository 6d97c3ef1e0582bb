"""The Python entry point: load a graph by name or path and run it.

``load_graph`` returns a :class:`ComposeGraph`, which has ``invoke``/``ainvoke``/``stream``/
``batch`` like any LangGraph runnable; ``.graph`` is the compiled LangGraph object itself, for
use as a subgraph in another application.

``stream(..., stream_mode="tokens")`` also streams the final answer as it is generated: it
yields ``{"event": "node", "node", "update"}`` per finished node and, in between, the answer
node's ``{"event": "token", "node", "text"}`` pieces (and ``token_reset``, see
``compose.streaming``) in the order they happen. ``"tokens"`` combines with other modes in a
list (``["tokens", "values"]``), which yields ``(mode, chunk)`` pairs as LangGraph does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.types import Checkpointer, StateSnapshot
from langgraph.types import StreamMode as LangGraphMode

from compose.durable import holding_thread
from compose.graph.compiler import answer_streams_live, compile_graph, recursion_limit
from compose.graph.load import load_resolved, runtime_config
from compose.graph.resolved import ResolvedGraph
from compose.graph.spec import GraphSpec
from compose.graph.validate import resolve_spec
from compose.runtime import NotConfiguredError, Runtime
from compose.streaming import with_tokens

TOKENS = "tokens"
StreamMode = str | list[str]


class ComposeGraph:
    def __init__(self, resolved: ResolvedGraph, runtime: Runtime,
                 checkpointer: Checkpointer = None,
                 interrupt_before: list[str] | None = None) -> None:
        spec = resolved.spec
        unknown = sorted(set(interrupt_before or []) - set(spec.nodes))
        if unknown:
            raise ValueError(f"graph {spec.name!r} has no node(s) {', '.join(unknown)} to "
                             f"pause before (nodes: {', '.join(spec.nodes)})")
        if interrupt_before and checkpointer is None:
            raise ValueError("pausing before a node needs a checkpointer to resume from")
        self.resolved = resolved
        self.spec = spec
        self.runtime = runtime
        self.checkpointer = checkpointer
        self.graph = compile_graph(resolved, runtime, checkpointer=checkpointer,
                                   interrupt_before=interrupt_before)

    def _initial_state(self, inputs: dict[str, Any] | None,
                       fields: dict[str, Any]) -> dict[str, Any]:
        state = {**(inputs or {}), **fields}
        missing = [name for name in self.spec.inputs if state.get(name) in (None, "")]
        if missing:
            raise ValueError(f"graph {self.spec.name!r} needs input(s): {', '.join(missing)}")
        unknown = sorted(set(state) - set(self.spec.inputs))
        if unknown:
            raise ValueError(
                f"graph {self.spec.name!r} has no input(s) {', '.join(unknown)} "
                f"(inputs: {', '.join(self.spec.inputs)})"
            )
        return {**state, "trace": [], "_loops": {}, "_route": {}}

    def _config(self, config: RunnableConfig | None,
                thread_id: str | None = None) -> RunnableConfig:
        merged: RunnableConfig = {"recursion_limit": recursion_limit(self.spec)}
        merged.update(config or {})
        if thread_id is not None:
            if self.checkpointer is None:
                raise ValueError("a thread id needs a checkpointer (load_graph(checkpointer=))")
            merged["configurable"] = {**merged.get("configurable", {}), "thread_id": thread_id}
        return merged

    def invoke(self, inputs: dict[str, Any] | None = None,
               config: RunnableConfig | None = None, thread_id: str | None = None,
               **fields: Any) -> dict[str, Any]:
        """Run to the end (or to a pause); returns the state (outputs plus ``trace``).

        With a checkpointer, ``thread_id`` names the run so :meth:`resume` can continue it;
        the thread is held for the run (:func:`compose.durable.holding_thread`), so a second
        run of it meanwhile is refused with ``ThreadBusyError``."""
        config = self._config(config, thread_id)
        with holding_thread(self.checkpointer, _thread_of(config)):
            state: dict[str, Any] = self.graph.invoke(self._initial_state(inputs, fields),
                                                      config)
            return state

    def resume(self, thread_id: str, config: RunnableConfig | None = None) -> dict[str, Any]:
        """Continue a checkpointed run from its last saved step, without repeating the nodes
        that finished (after a failure, or past a pause for approval)."""
        with holding_thread(self.checkpointer, thread_id):
            if not self.checkpoint(thread_id).values:
                raise ValueError(f"no saved run with thread id {thread_id!r}")
            state: dict[str, Any] = self.graph.invoke(None, self._config(config, thread_id))
            return state

    def checkpoint(self, thread_id: str) -> StateSnapshot:
        """The saved state of a thread: ``.values`` (the state), ``.next`` (nodes still to
        run; empty when the run finished)."""
        return self.graph.get_state(self._config(None, thread_id))

    async def ainvoke(self, inputs: dict[str, Any] | None = None,
                      config: RunnableConfig | None = None, **fields: Any) -> dict[str, Any]:
        config = self._config(config)
        with holding_thread(self.checkpointer, _thread_of(config)):
            state: dict[str, Any] = await self.graph.ainvoke(
                self._initial_state(inputs, fields), config)
            return state

    @property
    def answer_streams_live(self) -> bool:
        """True when the ``answer`` token events are final as they arrive (the node writing
        the answer cannot run again, say in a retry loop), so a consumer that cannot take
        text back (an OpenAI-style client) may show them at once; otherwise it should wait
        for the node event, or handle ``token_reset``."""
        return answer_streams_live(self.resolved)

    def stream(self, inputs: dict[str, Any] | None = None,
               config: RunnableConfig | None = None, stream_mode: StreamMode = "updates",
               **fields: Any) -> Iterator[Any]:
        """Yield each node's state update as it finishes (LangGraph's modes), or with
        ``"tokens"`` node and answer-token events (see the module docstring)."""
        config = self._config(config)
        with holding_thread(self.checkpointer, _thread_of(config)):
            state = self._initial_state(inputs, fields)
            if not _has_tokens(stream_mode):
                yield from self.graph.stream(state, config,
                                             stream_mode=_as_langgraph(stream_mode))
                return
            for mode, chunk in self.graph.stream(state, _token_config(config),
                                                 stream_mode=_langgraph_modes(stream_mode)):
                yield from _token_items(mode, chunk, stream_mode)

    async def astream(self, inputs: dict[str, Any] | None = None,
                      config: RunnableConfig | None = None,
                      stream_mode: StreamMode = "updates",
                      **fields: Any) -> AsyncIterator[Any]:
        config = self._config(config)
        with holding_thread(self.checkpointer, _thread_of(config)):
            state = self._initial_state(inputs, fields)
            if not _has_tokens(stream_mode):
                async for chunk in self.graph.astream(state, config,
                                                      stream_mode=_as_langgraph(stream_mode)):
                    yield chunk
                return
            async for mode, chunk in self.graph.astream(
                    state, _token_config(config), stream_mode=_langgraph_modes(stream_mode)):
                for item in _token_items(mode, chunk, stream_mode):
                    yield item

    def batch(self, inputs: list[dict[str, Any]],
              config: RunnableConfig | None = None) -> list[dict[str, Any]]:
        return [self.invoke(item, config) for item in inputs]

    def outputs(self, state: dict[str, Any]) -> dict[str, Any]:
        return {name: state.get(name) for name in self.spec.outputs}


def _thread_of(config: RunnableConfig) -> str | None:
    thread: str | None = config.get("configurable", {}).get("thread_id")
    return thread


def _modes(stream_mode: StreamMode) -> list[str]:
    return [stream_mode] if isinstance(stream_mode, str) else list(stream_mode)


def _has_tokens(stream_mode: StreamMode) -> bool:
    return TOKENS in _modes(stream_mode)


def _as_langgraph(stream_mode: StreamMode) -> LangGraphMode | Sequence[LangGraphMode]:
    """A request without ``"tokens"`` names LangGraph's own modes (which LangGraph checks)."""
    return cast("LangGraphMode | list[LangGraphMode]", stream_mode)


def _langgraph_modes(stream_mode: StreamMode) -> list[LangGraphMode]:
    """The LangGraph modes behind a request with ``"tokens"``: node updates and the custom
    stream the answer nodes write their tokens to, plus whatever else was asked for."""
    modes = [m for m in _modes(stream_mode) if m != TOKENS]
    return cast("list[LangGraphMode]",
                modes + [m for m in ("updates", "custom") if m not in modes])


def _token_config(config: RunnableConfig) -> RunnableConfig:
    return cast(RunnableConfig, with_tokens(config))


def _token_items(mode: str, chunk: Any, stream_mode: StreamMode) -> Iterator[Any]:
    """What one LangGraph ``(mode, chunk)`` pair becomes for the caller: token-mode events
    (bare when ``"tokens"`` was the only mode, else ``("tokens", event)``), and the chunk
    itself when its own mode was asked for."""
    requested = _modes(stream_mode)
    events: list[dict[str, Any]] = []
    if mode == "updates":
        events = [{"event": "node", "node": node, "update": update}
                  for node, update in chunk.items()]
    elif mode == "custom" and isinstance(chunk, dict) and chunk.get("event") in (
            "token", "token_reset"):
        events = [chunk]
    for event in events:
        yield event if isinstance(stream_mode, str) else (TOKENS, event)
    if mode in requested:
        yield (mode, chunk)


def load_graph(
    graph: str | Path | GraphSpec | ResolvedGraph,
    *,
    index: str | Path | None = None,
    overrides: list[str] | None = None,
    runtime: Runtime | None = None,
    cache: bool | None = None,
    cache_path: str | None = None,
    checkpointer: Checkpointer = None,
    interrupt_before: list[str] | None = None,
) -> ComposeGraph:
    """Load a shipped graph by name, a YAML file, a spec built in Python, or a graph already
    resolved (``compose.graph.load.load_resolved``).

    ``checkpointer`` (e.g. :func:`compose.durable.sqlite_checkpointer`) makes runs durable;
    ``interrupt_before`` pauses a run before those nodes until it is resumed (approval).
    A graph that searches an index (a ``retrieve`` node, or an agent allowed a tool that
    searches it) needs ``index`` (or ``retriever.index`` in its spec, or a ``runtime`` with a
    retriever): without one it is refused here, not at the first question."""
    if isinstance(graph, ResolvedGraph):
        resolved = graph
    elif isinstance(graph, GraphSpec):
        resolved = resolve_spec(graph)
    else:
        resolved = load_resolved(graph, overrides)
    spec = resolved.spec
    if runtime is None:
        config = runtime_config(spec, index=index, cache=cache, cache_path=cache_path)
        if resolved.needs_index and not config.retriever.index:
            raise NotConfiguredError(
                f"graph {spec.name!r} retrieves (node(s) {', '.join(resolved.index_nodes())}) "
                "but no index is configured: pass index=DIR to load_graph (for the demo "
                "corpus: index=compose.corpora.demo.demo_index(); for your own: "
                "`composerag index build CORPUS DIR`) or set retriever.index in the spec"
            )
        runtime = Runtime(config)
    return ComposeGraph(resolved, runtime, checkpointer=checkpointer,
                        interrupt_before=interrupt_before)
