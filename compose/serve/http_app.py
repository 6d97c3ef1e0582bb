"""HTTP server: one typed endpoint per graph (FastAPI), with streaming, size limits and
deadlines.

Routes, for each served graph NAME:

- ``POST /graphs/NAME/invoke`` - body: the graph's request model; reply: :class:`RunResult`
  (``?trace=true`` adds the per-node trace). 422 on a bad body, 413 over the size limit,
  504 past the deadline, 500 when a node fails (the detail names the node).
- ``POST /graphs/NAME/stream`` - NDJSON: one ``node`` event per finished node, then ``end``
  with the outputs (or ``error``).
- ``GET /graphs`` lists the graphs with their input/output schemas; ``GET /healthz``;
  ``GET /openapi.json`` and ``/docs`` come from FastAPI.

Usage::

    app = create_app([load_graph("naive_rag")], timeout_s=60)
    uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Iterable

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from compose.api import ComposeGraph
from compose.graph.compiler import NodeError
from compose.serve.service import GraphService, RunResult, RunTimeoutError

DEFAULT_MAX_BODY_BYTES = 64 * 1024


class BodySizeLimit:
    """Refuse request bodies over ``max_bytes`` with 413 before the app reads them, whether
    or not the client sent a Content-Length (chunked bodies are counted as they arrive)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": f"request body over {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


def _invoke_endpoint(service: GraphService) -> Callable[..., Awaitable[RunResult]]:
    async def invoke(body, trace: bool = Query(False, description="Include the trace.")):
        try:
            return await service.invoke(body, with_trace=trace)
        except RunTimeoutError as exc:
            raise HTTPException(status_code=504, detail=str(exc)) from exc
        except NodeError as exc:
            raise HTTPException(status_code=500, detail=str(exc)) from exc

    _annotate_body(invoke, service.Request)
    return invoke


def _stream_endpoint(service: GraphService) -> Callable[..., Awaitable[StreamingResponse]]:
    async def stream(body):
        async def lines():
            async for event in service.stream(body):
                yield json.dumps(event, ensure_ascii=False) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    _annotate_body(stream, service.Request)
    return stream


def _annotate_body(endpoint: Callable, request_model: type) -> None:
    """FastAPI reads the body model from the signature; each graph has its own model."""
    signature = inspect.signature(endpoint)
    params = [p.replace(annotation=request_model) if p.name == "body" else p
              for p in signature.parameters.values()]
    endpoint.__signature__ = signature.replace(parameters=params)


def create_app(graphs: Iterable[ComposeGraph], *, timeout_s: float = 300.0,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> FastAPI:
    services = {g.spec.name: GraphService(g, timeout_s=timeout_s) for g in graphs}
    if not services:
        raise ValueError("create_app needs at least one graph")
    app = FastAPI(title="composerag", description="composerag graphs over HTTP.",
                  version="1")
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/graphs")
    async def list_graphs() -> JSONResponse:
        return JSONResponse([
            {"name": name, "description": s.description,
             "input_schema": s.Request.model_json_schema(),
             "output_schema": s.Response.model_json_schema()}
            for name, s in services.items()])

    for name, service in services.items():
        app.post(f"/graphs/{name}/invoke", response_model=service.Result, tags=[name],
                 summary=f"Run {name} to the end",
                 description=service.description)(_invoke_endpoint(service))
        app.post(f"/graphs/{name}/stream", tags=[name], summary=f"Stream {name}'s node updates",
                 response_class=StreamingResponse,
                 description="NDJSON: a `node` event per finished node, then `end` or `error`.",
                 )(_stream_endpoint(service))
    return app
