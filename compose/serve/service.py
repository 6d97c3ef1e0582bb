"""One served graph: typed request/response models, a deadline, and runs off the event loop.

Both servers (HTTP and MCP) go through :class:`GraphService`, so they validate, time out
and stream the same way. A graph run is blocking (model calls), so it runs in a worker
thread; the local generators serialise their own calls with a lock, so concurrent requests
interleave retrieval and wait only for the model.

A request whose text cannot fit in the model's context window is refused before the graph
runs (:class:`InputTooLongError`), instead of failing in the first node that prompts the
model. The check counts the request's text with the model's own tokenizer; it applies to
graphs with a node answered by the model, with a backend that reports its context size. A
request that fits but whose prompt overflows once the graph adds to it (the passages) is
still the input's size: it fails as :class:`PromptTooLongError`, a kind of
:class:`InputTooLongError`, so servers answer both as client errors.

A deadline cannot stop a Python thread: when a request times out its caller gets the error
at once, while the run finishes in the background and its result is discarded (the model
lock is held until then, so later requests queue behind it - their own deadlines count that
wait).

Usage::

    service = GraphService(load_graph("naive_rag", index=demo_index()), timeout_s=60)
    result = await service.invoke(service.Request(question="Who invented the kelp-oil lamp?"))
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

from pydantic import BaseModel, Field, create_model
from pydantic_core import to_jsonable_python

from compose.api import ComposeGraph
from compose.generators.base import ContextOverflowError, context_size
from compose.graph.compiler import NodeError
from compose.graph.io import graph_io_models


class RunTimeoutError(TimeoutError):
    """A graph run exceeded the service's deadline."""


class InputTooLongError(ValueError):
    """A request's text alone fills the model's context window, so no prompt with it fits."""

    tokens: int | None  # None in a PromptTooLongError whose backend did not count
    limit: int | None

    def __init__(self, fields: list[str], tokens: int, limit: int) -> None:
        self.fields = fields
        self.tokens = tokens
        self.limit = limit
        named = (f"input {fields[0]!r} is" if len(fields) == 1 else
                 f"inputs {', '.join(map(repr, fields))} are")
        super().__init__(f"{named} {tokens:,} tokens; the model's context holds {limit:,} "
                         "tokens for prompt and answer together (generator.n_ctx): shorten "
                         "the text")


class PromptTooLongError(InputTooLongError):
    """The request's text fit, but a prompt the graph built from it did not: the question
    with its retrieved passages, say. Still the input's size, so still a client error."""

    def __init__(self, node: str, fields: list[str], tokens: int | None,
                 limit: int | None) -> None:
        self.node = node
        self.fields = fields
        self.tokens = tokens
        self.limit = limit
        size = f"{tokens:,} tokens" if tokens is not None else "longer than the context"
        holds = f"{limit:,} tokens" if limit is not None else "less"
        ValueError.__init__(
            self, f"node {node!r}: its prompt (the request with what the graph added to it, "
            f"such as passages) is {size}; the model's context holds {holds} for prompt and "
            "answer together (generator.n_ctx): shorten the text")


class RunResult(BaseModel):
    """A finished run: the graph's outputs, how long it took, and optionally its trace."""

    graph: str
    output: Any
    elapsed_s: float
    trace: list[dict[str, Any]] | None = Field(
        default=None, description="Per-node trace events, when requested.")


class GraphService:
    def __init__(self, graph: ComposeGraph, timeout_s: float = 300.0) -> None:
        self.graph = graph
        self.name = graph.spec.name
        self.description = graph.spec.description or self.name
        self.timeout_s = timeout_s
        self.Request, self.Response = graph_io_models(graph.resolved)
        self.Result = create_model(self.Response.__name__.replace("Response", "Result"),
                                   __base__=RunResult, output=(self.Response, ...))
        self._prompts_model = graph.resolved.prompts_model

    def check_length(self, request: BaseModel) -> None:
        """Raise :class:`InputTooLongError` when the request's text alone fills the model's
        context. Blocking: it may load the model, and tokenizes."""
        if not self._prompts_model:
            return
        generator = self.graph.runtime.generator
        limit = context_size(generator)
        if limit is None:
            return
        texts = {name: value for name, value in request.model_dump().items()
                 if isinstance(value, str)}
        tokens = sum(generator.count_tokens(text) for text in texts.values())
        if tokens >= limit:
            raise InputTooLongError(list(texts), tokens, limit)

    async def check(self, request: BaseModel) -> None:
        """:meth:`check_length` off the event loop."""
        await asyncio.to_thread(self.check_length, request)

    def _run(self, request: BaseModel) -> dict[str, Any]:
        self.check_length(request)
        try:
            return self.graph.invoke(request.model_dump())
        except NodeError as exc:
            cause = exc.__cause__
            if isinstance(cause, ContextOverflowError):
                texts = [name for name, value in request.model_dump().items()
                         if isinstance(value, str)]
                raise PromptTooLongError(exc.node, texts, cause.tokens, cause.limit) from exc
            raise

    def _outputs(self, state: dict[str, Any]) -> dict[str, Any]:
        validated = self.Response.model_validate(self.graph.outputs(state))
        return validated.model_dump(mode="json")

    async def invoke(self, request: BaseModel, with_trace: bool = False) -> RunResult:
        """Run to the end within the deadline; raises :class:`RunTimeoutError` past it and
        :class:`InputTooLongError` before running when the request cannot fit."""
        started = time.perf_counter()
        try:
            state = await asyncio.wait_for(asyncio.to_thread(self._run, request),
                                           self.timeout_s)
        except asyncio.TimeoutError:
            raise RunTimeoutError(
                f"graph {self.name!r} did not finish within {self.timeout_s:g} s") from None
        return self.Result(graph=self.name, output=self._outputs(state),
                         elapsed_s=round(time.perf_counter() - started, 4),
                         trace=state.get("trace") if with_trace else None)

    async def stream(self, request: BaseModel,
                     tokens: bool = False) -> AsyncIterator[dict[str, Any]]:
        """Yield ``{"event": "node", ...}`` per finished node, then one ``"end"`` event with
        the outputs, or one ``"error"`` event; the stream itself never raises (so await
        :meth:`check` before starting it, to refuse an over-long request with a status).

        With ``tokens``, the final answer's ``{"event": "token", "node", "text"}`` pieces
        (and ``token_reset`` events, see ``compose.streaming``) come too, in order with the
        node events, as they are generated; whether they are final as they arrive is
        ``self.graph.answer_streams_live``."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        cancelled = threading.Event()
        modes = ["tokens", "values"] if tokens else ["updates", "values"]

        def produce() -> None:
            final: dict[str, Any] = {}
            try:
                for mode, chunk in self.graph.stream(request.model_dump(), stream_mode=modes):
                    if cancelled.is_set():
                        return
                    if mode == "values":
                        final = chunk
                    else:
                        for event in _events(mode, chunk):
                            loop.call_soon_threadsafe(queue.put_nowait, ("event", event))
                loop.call_soon_threadsafe(queue.put_nowait, ("end", final))
            except Exception as exc:  # reported to the client as an error event
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))

        started = time.perf_counter()
        deadline = started + self.timeout_s
        loop.run_in_executor(None, produce)
        try:
            while True:
                remaining = deadline - time.perf_counter()
                try:
                    kind, payload = await asyncio.wait_for(queue.get(), max(remaining, 0.0))
                except asyncio.TimeoutError:
                    yield {"event": "error", "error": "timeout",
                           "detail": f"graph {self.name!r} did not finish within "
                                     f"{self.timeout_s:g} s"}
                    return
                if kind == "event":
                    yield payload
                elif kind == "end":
                    yield {"event": "end", "graph": self.name, "output": self._outputs(payload),
                           "elapsed_s": round(time.perf_counter() - started, 4)}
                    return
                else:
                    yield {"event": "error", "error": type(payload).__name__,
                           "detail": str(payload)}
                    return
        finally:  # a client that went away stops the run at its next node
            cancelled.set()


def _events(mode: str, chunk: Any) -> list[dict[str, Any]]:
    """The client events of one streamed chunk: an ``updates`` chunk is a node event per
    node; in token mode the node events come ready and the token events pass as they are."""
    if mode == "updates":
        return [{"event": "node", "node": node, "update": _public_update(update)}
                for node, update in chunk.items()]
    if chunk["event"] == "node":
        return [{**chunk, "update": _public_update(chunk["update"])}]
    return [chunk]


def _public_update(update: dict[str, Any] | None) -> dict[str, Any]:
    """A node's state update without the compiler's bookkeeping, as plain JSON."""
    update = update or {}
    public: dict[str, Any] = to_jsonable_python(
        {k: v for k, v in update.items() if not k.startswith("_")}, fallback=str)
    return public
