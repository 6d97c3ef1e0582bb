"""HTTP server: one typed endpoint per graph (FastAPI), with streaming, size limits and
deadlines.

Routes, for each served graph NAME:

- ``POST /graphs/NAME/invoke`` - body: the graph's request model; reply: :class:`RunResult`
  (``?trace=true`` adds the per-node trace). 422 on a bad body (not strict JSON, wrong
  fields or types, or text longer than the model's context), 415 for a body that is not
  JSON, 413 over the size limit, 504 past the deadline, 500 when a node fails (the detail
  names the node).
- ``POST /graphs/NAME/stream`` - NDJSON: one ``node`` event per finished node, then ``end``
  with the outputs (or ``error``); a bad body is refused with the same statuses first. With
  ``?tokens=true`` the answer's ``token`` events arrive as it is generated.
- ``GET /graphs`` lists the graphs with their input/output schemas; ``GET /healthz``;
  ``GET /openapi.json`` and ``/docs`` come from FastAPI.
- ``GET /v1/models`` and ``POST /v1/chat/completions``: the graphs as OpenAI chat models, for
  chat UIs and OpenAI SDK clients (``compose.serve.openai_api``).

Errors have FastAPI's shape, ``{"detail": ...}``, except on /v1 paths, which answer in
OpenAI's, ``{"error": {...}}``. With ``api_key`` every route but ``/healthz`` needs the key
(``compose.serve.api_key``); without one, bind loopback only (``check_bind``).

Requests naming another host in ``Host`` (421) or coming from a page on another origin
(403) are refused: DNS-rebinding protection (``host_check``), loopback names only unless
``allowed_hosts`` says otherwise. Clients that send a request too slowly are cut by the
server configuration of ``slow_clients``.

Usage::

    from compose.serve.slow_clients import server_config

    app = create_app([load_graph("naive_rag", index=demo_index())], timeout_s=60)
    uvicorn.Server(server_config(app, host="127.0.0.1", port=8000)).run()
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Any

from fastapi import FastAPI, HTTPException, Query
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from compose.api import ComposeGraph
from compose.graph.compiler import NodeError
from compose.serve.api_key import APIKeyAuth, key_bytes
from compose.serve.host_check import LOOPBACK_HOSTS, HostCheck, allow_list
from compose.serve.openai_api import install_error_shape, is_openai_path, openai_router
from compose.serve.openai_api.errors import error_body
from compose.serve.service import GraphService, InputTooLongError, RunResult, RunTimeoutError
from compose.serve.strict_json import StrictJSONRoute

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
            await self._refuse(scope, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client went away (or was cut as too slow) mid-body
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(scope, send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        detail = f"request body over {self.max_bytes} bytes"
        body = json.dumps(error_body(detail, code="request_too_large")
                          if is_openai_path(scope["path"]) else {"detail": detail}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


def _too_long(exc: InputTooLongError) -> HTTPException:
    """422 in FastAPI's validation shape, with the limit in ``ctx``."""
    return HTTPException(status_code=422, detail=[{
        "type": "too_long_for_context", "loc": ["body", *exc.fields], "msg": str(exc),
        "ctx": {"tokens": exc.tokens, "context_tokens": exc.limit}}])


def _invoke_endpoint(service: GraphService) -> Callable[..., Awaitable[RunResult]]:
    async def invoke(body: BaseModel,
                     trace: bool = Query(False, description="Include the trace.")) -> RunResult:
        try:
            return await service.invoke(body, with_trace=trace)
        except InputTooLongError as exc:
            raise _too_long(exc) from exc
        except RunTimeoutError as exc:
            raise HTTPException(status_code=504, detail=str(exc)) from exc
        except NodeError as exc:
            raise HTTPException(status_code=500, detail=str(exc)) from exc

    _annotate_body(invoke, service.Request)
    return invoke


def _stream_endpoint(service: GraphService) -> Callable[..., Awaitable[StreamingResponse]]:
    async def stream(body: BaseModel, tokens: bool = Query(
            False, description="Also stream the final answer's tokens as they are generated."),
                     ) -> StreamingResponse:
        try:
            await service.check(body)
        except InputTooLongError as exc:
            raise _too_long(exc) from exc

        async def lines() -> AsyncIterator[str]:
            async for event in service.stream(body, tokens=tokens):
                yield json.dumps(event, ensure_ascii=False) + "\n"

        return StreamingResponse(lines(), media_type="application/x-ndjson")

    _annotate_body(stream, service.Request)
    return stream


def _annotate_body(endpoint: Callable[..., Any], request_model: type[BaseModel]) -> None:
    """FastAPI reads the body model from the signature; each graph has its own model."""
    signature = inspect.signature(endpoint)
    params = [p.replace(annotation=request_model) if p.name == "body" else p
              for p in signature.parameters.values()]
    # inspect.signature reads __signature__, which typeshed does not declare on callables
    endpoint.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=params)


def create_app(graphs: Iterable[ComposeGraph], *, timeout_s: float = 300.0,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
               allowed_hosts: Iterable[str] = LOOPBACK_HOSTS,
               api_key: str | None = None) -> FastAPI:
    """The app serving ``graphs``. ``allowed_hosts``: the host names (no ports) the server
    answers to in ``Host`` and accepts pages from in ``Origin``; ``"*"`` turns the check
    off, for a server behind a proxy that checks ``Host`` itself. ``api_key``: the key every
    request but ``/healthz`` must present (None: no authentication)."""
    services = {g.spec.name: GraphService(g, timeout_s=timeout_s) for g in graphs}
    if not services:
        raise ValueError("create_app needs at least one graph")
    hosts = allow_list(allowed_hosts)
    app = FastAPI(title="composerag", description="composerag graphs over HTTP.",
                  version="1")
    app.router.route_class = StrictJSONRoute
    install_error_shape(app)
    # The last added runs first: Host/Origin, then the key, then the body is read.
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    if api_key is not None:
        key_bytes(api_key)  # a bad key fails here, not at the first request
        app.add_middleware(APIKeyAuth, api_key=api_key)
    app.add_middleware(HostCheck, allowed_hosts=hosts)

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
                 description="NDJSON: a `node` event per finished node, then `end` or "
                 "`error`; with `?tokens=true` also `token`/`token_reset` events for the "
                 "answer.",
                 )(_stream_endpoint(service))
    app.include_router(openai_router(services))
    return app
