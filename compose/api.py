"""The Python entry point: load a graph by name or path and run it.

``load_graph`` returns a :class:`ComposeGraph`, which has ``invoke``/``ainvoke``/``stream``/
``batch`` like any LangGraph runnable; ``.graph`` is the compiled LangGraph object itself, for
use as a subgraph in another application.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from compose.durable import holding_thread
from compose.graph.compiler import compile_spec, recursion_limit
from compose.graph.load import load_spec
from compose.graph.spec import GraphSpec
from compose.graph.validate import GraphValidationError, validate_spec
from compose.runtime import NotConfiguredError, Runtime, runtime_config


class ComposeGraph:
    def __init__(self, spec: GraphSpec, runtime: Runtime, checkpointer=None,
                 interrupt_before: list[str] | None = None) -> None:
        unknown = sorted(set(interrupt_before or []) - set(spec.nodes))
        if unknown:
            raise ValueError(f"graph {spec.name!r} has no node(s) {', '.join(unknown)} to "
                             f"pause before (nodes: {', '.join(spec.nodes)})")
        if interrupt_before and checkpointer is None:
            raise ValueError("pausing before a node needs a checkpointer to resume from")
        self.spec = spec
        self.runtime = runtime
        self.checkpointer = checkpointer
        self.graph = compile_spec(spec, runtime, checkpointer=checkpointer,
                                  interrupt_before=interrupt_before)

    def _initial_state(self, inputs: dict[str, Any] | None, fields: dict[str, Any]):
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

    def _config(self, config: dict | None, thread_id: str | None = None) -> dict:
        merged = {"recursion_limit": recursion_limit(self.spec)}
        merged.update(config or {})
        if thread_id is not None:
            if self.checkpointer is None:
                raise ValueError("a thread id needs a checkpointer (load_graph(checkpointer=))")
            merged["configurable"] = {**merged.get("configurable", {}), "thread_id": thread_id}
        return merged

    def invoke(self, inputs: dict[str, Any] | None = None, config: dict | None = None,
               thread_id: str | None = None, **fields: Any) -> dict[str, Any]:
        """Run to the end (or to a pause); returns the state (outputs plus ``trace``).

        With a checkpointer, ``thread_id`` names the run so :meth:`resume` can continue it;
        the thread is held for the run (:func:`compose.durable.holding_thread`), so a second
        run of it meanwhile is refused with ``ThreadBusyError``."""
        config = self._config(config, thread_id)
        with holding_thread(self.checkpointer, _thread_of(config)):
            return self.graph.invoke(self._initial_state(inputs, fields), config)

    def resume(self, thread_id: str, config: dict | None = None) -> dict[str, Any]:
        """Continue a checkpointed run from its last saved step, without repeating the nodes
        that finished (after a failure, or past a pause for approval)."""
        with holding_thread(self.checkpointer, thread_id):
            if not self.checkpoint(thread_id).values:
                raise ValueError(f"no saved run with thread id {thread_id!r}")
            return self.graph.invoke(None, self._config(config, thread_id))

    def checkpoint(self, thread_id: str):
        """The saved state of a thread: ``.values`` (the state), ``.next`` (nodes still to
        run; empty when the run finished)."""
        return self.graph.get_state(self._config(None, thread_id))

    async def ainvoke(self, inputs: dict[str, Any] | None = None, config: dict | None = None,
                      **fields: Any) -> dict[str, Any]:
        config = self._config(config)
        with holding_thread(self.checkpointer, _thread_of(config)):
            return await self.graph.ainvoke(self._initial_state(inputs, fields), config)

    def stream(self, inputs: dict[str, Any] | None = None, config: dict | None = None,
               stream_mode: str = "updates", **fields: Any) -> Iterator[Any]:
        """Yield each node's state update as it finishes."""
        config = self._config(config)
        with holding_thread(self.checkpointer, _thread_of(config)):
            yield from self.graph.stream(self._initial_state(inputs, fields), config,
                                         stream_mode=stream_mode)

    async def astream(self, inputs: dict[str, Any] | None = None, config: dict | None = None,
                      stream_mode: str = "updates", **fields: Any) -> AsyncIterator[Any]:
        config = self._config(config)
        with holding_thread(self.checkpointer, _thread_of(config)):
            async for chunk in self.graph.astream(self._initial_state(inputs, fields), config,
                                                  stream_mode=stream_mode):
                yield chunk

    def batch(self, inputs: list[dict[str, Any]], config: dict | None = None) -> list[dict]:
        return [self.invoke(item, config) for item in inputs]

    def outputs(self, state: dict[str, Any]) -> dict[str, Any]:
        return {name: state.get(name) for name in self.spec.outputs}


def _thread_of(config: dict) -> str | None:
    return config.get("configurable", {}).get("thread_id")


def retrieving_nodes(spec: GraphSpec) -> list[str]:
    """The nodes that run the ``retrieve`` module, which need an index to open."""
    return [name for name, node in spec.nodes.items() if node.module == "retrieve"]


def load_graph(
    graph: str | Path | GraphSpec,
    *,
    index: str | Path | None = None,
    overrides: list[str] | None = None,
    runtime: Runtime | None = None,
    cache: bool | None = None,
    cache_path: str | None = None,
    checkpointer=None,
    interrupt_before: list[str] | None = None,
) -> ComposeGraph:
    """Load a shipped graph by name, a YAML file, or a spec built in Python.

    ``checkpointer`` (e.g. :func:`compose.durable.sqlite_checkpointer`) makes runs durable;
    ``interrupt_before`` pauses a run before those nodes until it is resumed (approval).
    A graph that retrieves needs ``index`` (or ``retriever.index`` in its spec, or a
    ``runtime`` with a retriever): without one it is refused here, not at the first
    question."""
    if isinstance(graph, GraphSpec):
        spec = graph
        issues = validate_spec(spec)
        if issues:
            raise GraphValidationError(issues, f"<spec {spec.name}>")
    else:
        spec = load_spec(graph, overrides)
    if runtime is None:
        config = runtime_config(spec, index=index, cache=cache, cache_path=cache_path)
        if retrieving_nodes(spec) and not config.retriever.index:
            raise NotConfiguredError(
                f"graph {spec.name!r} retrieves (node(s) {', '.join(retrieving_nodes(spec))}) "
                "but no index is configured: pass index=DIR to load_graph (for the demo "
                "corpus: index=compose.corpora.demo.demo_index(); for your own: "
                "`composerag index build CORPUS DIR`) or set retriever.index in the spec"
            )
        runtime = Runtime(config)
    return ComposeGraph(spec, runtime, checkpointer=checkpointer,
                        interrupt_before=interrupt_before)
