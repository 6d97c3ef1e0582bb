"""Compile a resolved graph (:class:`~compose.graph.resolved.ResolvedGraph`) into a LangGraph
``StateGraph``.

Every node wraps one module: it maps state fields to the module input, runs the module with a
fresh context (so its cost is measured), maps the output back, appends a trace event and, for
nodes with branches, decides the route itself. Deciding the route inside the node lets loop
budgets be counted in the same state update, so a budget holds even across checkpoints.
When OpenTelemetry tracing is on (``compose.telemetry``), each node also runs inside its span
and the compiled graph carries the callback that opens the run's span.

A node that writes the graph output ``answer`` streams it when the run asks for tokens
(``compose.streaming.with_tokens``): its module context gets a token sink writing to
LangGraph's custom stream, and when the module returns the sink is settled against the
answer it wrote, so the token events always add up to the node's answer.
"""

from __future__ import annotations

import operator
import time
from collections.abc import Callable, Hashable
from typing import Annotated, Any, Protocol, TypedDict

from langchain_core.runnables import RunnableConfig
from langgraph.config import get_stream_writer
from langgraph.graph import END as LG_END
from langgraph.graph import START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Checkpointer

from compose.graph.resolved import ResolvedGraph
from compose.graph.spec import END, EdgeSpec, GraphSpec
from compose.graph.validate import successors
from compose.runtime import ModuleContext, Runtime
from compose.streaming import TokenSink, tokens_requested
from compose.telemetry import GraphTracing, graph_tracing, params_hash, record_node
from compose.trace import TraceEvent


class NodeError(RuntimeError):
    def __init__(self, node: str, module: str, cause: BaseException) -> None:
        self.node = node
        self.module = module
        super().__init__(f"node {node!r} (module {module!r}) failed: {cause}")


def merge_dicts(left: dict[str, Any] | None,
                right: dict[str, Any] | None) -> dict[str, Any]:
    return {**(left or {}), **(right or {})}


def append_lists(left: list[Any] | None, right: Any) -> list[Any]:
    right_list = right if isinstance(right, list) else [right]
    return [*(left or []), *right_list]


_REDUCERS = {"append": append_lists, "merge": merge_dicts}


def state_schema(graph: ResolvedGraph) -> type:
    spec = graph.spec
    fields: dict[str, Any] = {name: Any for name in spec.inputs}
    for node in graph.nodes.values():
        for field in node.written_fields():
            fields[field] = Any
    for field, declared in spec.state.items():
        reducer = _REDUCERS.get(declared.reducer)
        fields[field] = Annotated[Any, reducer] if reducer else Any
    fields["trace"] = Annotated[list, operator.add]
    fields["_loops"] = Annotated[dict, merge_dicts]
    fields["_route"] = Annotated[dict, merge_dicts]
    # The fields are known only at run time, which the functional form allows and mypy not.
    schema: type = TypedDict(  # type: ignore[misc]
        f"{spec.name.title().replace('_', '')}State", fields, total=False)
    return schema


def choose_branch(name: str, edge: EdgeSpec, state: dict[str, Any]) -> tuple[str, dict[str, int]]:
    """The first branch whose condition holds and whose budget is not spent."""
    loops = state.get("_loops") or {}
    for index, branch in enumerate(edge.branches or []):
        if branch.when is not None and not branch.when.holds(state):
            continue
        if branch.budget is not None:
            key = f"{name}->{branch.to}#{index}"
            if branch.budget_per is not None:
                key += f"@{state.get(branch.budget_per)}"
            used = loops.get(key, 0)
            if used >= branch.budget:
                continue
            return branch.to, {key: used + 1}
        return branch.to, {}
    raise AssertionError(f"validated graph has no default branch out of {name!r}")


ANSWER = "answer"


def answer_field(graph: ResolvedGraph, name: str) -> str | None:
    """The module output field that node ``name`` writes to the graph output ``answer``."""
    if ANSWER not in graph.spec.outputs:
        return None
    node = graph.nodes[name]
    fields = node.module.Output.model_fields
    return next((f for f in fields if node.spec.outputs.get(f, f) == ANSWER), None)


def answer_streams_live(resolved: ResolvedGraph) -> bool:
    """Whether the answer's token events are final as they arrive: some node writes the
    ``answer`` output and no node writing it can run after one that did (in a loop, or
    downstream of another writer), so a consumer never has to take streamed text back
    because the node ran again. (A parse retry inside a node still resets its tokens.)"""
    writers = {name for name in resolved.nodes if answer_field(resolved, name) is not None}
    graph = successors(resolved.spec)
    for writer in writers:
        seen: set[str] = set()
        frontier = list(graph.get(writer, ()))
        while frontier:
            current = frontier.pop()
            if current in writers:
                return False
            if current not in seen:
                seen.add(current)
                frontier.extend(graph.get(current, ()))
    return bool(writers)


class NodeFunction(Protocol):
    """A compiled node: the graph state and LangGraph's config in, the state update out."""

    def __call__(self, state: Any, config: RunnableConfig) -> dict[str, Any]: ...


def make_node(name: str, graph: ResolvedGraph, runtime: Runtime,
              tracing: GraphTracing | None = None) -> NodeFunction:
    node = graph.nodes[name].spec
    module = graph.nodes[name].build()
    in_map = {field: node.inputs.get(field, field) for field in module.Input.model_fields}
    out_map = {field: node.outputs.get(field, field) for field in module.Output.model_fields}
    branching = next((e for e in graph.spec.edges_from(name) if e.branches), None)
    streamed = answer_field(graph, name)

    def context(config: RunnableConfig,
                wrap_generator: Callable[[Any], Any] | None = None) -> ModuleContext:
        tokens = None
        if streamed is not None and tokens_requested(config):
            tokens = TokenSink(name, get_stream_writer())
        return ModuleContext(runtime, wrap_generator=wrap_generator, tokens=tokens)

    def step(state: dict[str, Any], ctx: ModuleContext) -> dict[str, Any]:
        payload = {f: state[s] for f, s in in_map.items() if state.get(s) is not None}
        started = time.perf_counter()
        try:
            output = module(payload, ctx).model_dump(mode="json")
        except Exception as exc:
            raise NodeError(name, node.module, exc) from exc
        if ctx.tokens is not None and streamed is not None:
            ctx.tokens.settle(output[streamed])
        update: dict[str, Any] = {out_map[f]: value for f, value in output.items()}
        route = None
        if branching is not None:
            route, spent = choose_branch(name, branching, {**state, **update})
            update["_route"] = {name: route}
            if spent:
                update["_loops"] = spent
        event = TraceEvent(
            node=name,
            module=node.module,
            input=_jsonable(payload),
            output=output,
            latency_s=time.perf_counter() - started,
            route=route,
            **ctx.stats.model_dump(),
        )
        update["trace"] = [event.model_dump()]
        return update

    if tracing is None:
        def run_node(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
            return step(state, context(config))
    else:
        digest = params_hash(module.params.model_dump(mode="json"))

        def run_node(state: dict[str, Any], config: RunnableConfig) -> dict[str, Any]:
            # LangGraph passes the node's config, whose run id leads to the run span.
            with tracing.node_span(name, node.module, digest, config) as span:
                update = step(state, context(config, tracing.wrap_generator))
                record_node(span, update["trace"][0])
                return update

    run_node.__name__ = f"node_{name}"
    return run_node


def _jsonable(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v.model_dump(mode="json") if hasattr(v, "model_dump") else v
            for k, v in payload.items()}


def recursion_limit(spec: GraphSpec) -> int:
    """LangGraph's step cap, set above what the budgets allow: the product over budgeted
    branches bounds nested loops too. It is a safety net; budgets end loops first."""
    bound = 1
    for edge in spec.edges:
        for branch in edge.branches or []:
            bound *= 1 + (branch.budget or 0)
    return min(len(spec.nodes) * bound, 100_000) + 10


def compile_graph(graph: ResolvedGraph, runtime: Runtime, checkpointer: Checkpointer = None,
                  interrupt_before: list[str] | None = None
                  ) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Return the compiled LangGraph object (usable directly, or as a subgraph)."""
    spec = graph.spec
    builder: StateGraph[Any, Any, Any, Any] = StateGraph(state_schema(graph))
    tracing = graph_tracing(spec.name, runtime.config.generator)
    for name in spec.nodes:
        builder.add_node(name, make_node(name, graph, runtime, tracing))
    builder.add_edge(START, spec.entry)
    for edge in spec.edges:
        if edge.to is not None:
            builder.add_edge(edge.source, LG_END if edge.to == END else edge.to)
        else:
            targets: dict[Hashable, str] = {b.to: (LG_END if b.to == END else b.to)
                                            for b in edge.branches or []}
            builder.add_conditional_edges(
                edge.source, _router(edge.source), targets
            )
    compiled = builder.compile(checkpointer=checkpointer, interrupt_before=interrupt_before,
                               name=spec.name)
    return compiled if tracing is None else compiled.with_config(callbacks=[tracing.callback])


def _router(name: str) -> Callable[[dict[str, Any]], str]:
    def route(state: dict[str, Any]) -> str:
        chosen: str = state["_route"][name]
        return chosen

    route.__name__ = f"route_{name}"
    return route
