"""The OpenAI-compatible routes: ``GET /v1/models``, ``GET /v1/models/NAME`` and ``POST
/v1/chat/completions``, so chat UIs (Open WebUI) and OpenAI SDK clients can use a graph as a
model named after it.

Bodies are read here rather than by FastAPI, so every refusal is in OpenAI's shape and
status: a body that is not strict JSON or not a valid request is 400
(``invalid_request_error``, ``param`` naming the field), an unknown model 404
(``model_not_found``), a question too long for the model's context 400
(``context_length_exceeded``), a run past the deadline 504 (``timeout``), a failing node 500
(``server_error``). The OpenAI SDK retries 5xx answers (twice by default): a client of slow
graphs should set ``max_retries``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, cast

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError

from compose.graph.compiler import NodeError
from compose.serve.openai_api.chat import ChatGraph, UnfitGraph, chat_graph, usage
from compose.serve.openai_api.errors import PREFIX, OpenAIError
from compose.serve.openai_api.schema import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    ModelCard,
    ModelList,
    RunInfo,
)
from compose.serve.openai_api.sse import chunks, completion_id
from compose.serve.service import GraphService, InputTooLongError, RunTimeoutError
from compose.serve.strict_json import is_json, parse_json_body


def _param(loc: tuple[Any, ...]) -> str:
    return ".".join(str(part) for part in loc)


def _invalid(exc: ValidationError) -> OpenAIError:
    first = exc.errors(include_url=False)[0]
    where = _param(first["loc"])
    return OpenAIError(400, f"{where}: {first['msg']}" if where else first["msg"],
                       param=where or None)


async def _read_request(request: Request) -> ChatCompletionRequest:
    content_type = request.headers.get("content-type") or ""
    if not is_json(content_type):
        raise OpenAIError(415, f"the body must be JSON (content-type: application/json), not "
                               f"{content_type!r}")
    try:
        value = parse_json_body(await request.body())
    except HTTPException as exc:
        problem = cast("list[dict[str, Any]]", exc.detail)[0]  # parse_json_body's error list
        raise OpenAIError(400, f"{problem['msg']}: {problem.get('ctx', {}).get('error', '')}"
                          .rstrip(": ")) from None
    try:
        return ChatCompletionRequest.model_validate(value)
    except ValidationError as exc:
        raise _invalid(exc) from None


class ChatRoutes:
    """The chat view of the served graphs: those that fit, and why the others do not."""

    def __init__(self, services: Mapping[str, GraphService]) -> None:
        self.chats: dict[str, ChatGraph] = {}
        self.unfit: dict[str, str] = {}
        for name, service in services.items():
            try:
                self.chats[name] = chat_graph(service)
            except UnfitGraph as exc:
                self.unfit[name] = str(exc)
        self.created = int(time.time())

    def card(self, name: str) -> ModelCard:
        return ModelCard(id=name, created=self.created,
                         description=self.chats[name].service.description)

    def chat(self, model: str) -> ChatGraph:
        if model in self.chats:
            return self.chats[model]
        reason = self.unfit.get(model) or (
            f"no graph named {model!r} is served; models: {', '.join(self.chats) or 'none'}")
        raise OpenAIError(404, f"The model {model!r} does not exist: {reason}",
                          param="model", code="model_not_found")

    async def complete(self, request: Request) -> Response:
        body = await _read_request(request)
        chat = self.chat(body.model)
        try:
            graph_request = chat.request(body.messages)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            raise OpenAIError(400, f"graph input {_param(first['loc'])!r} (from the messages): "
                                   f"{first['msg']}", param="messages") from None
        except ValueError as exc:
            raise OpenAIError(400, str(exc), param="messages") from None
        if body.stream:
            await _checked(chat, graph_request)
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                chunks(chat, graph_request, body.model, include_usage),
                media_type="text/event-stream",
                headers={"cache-control": "no-cache", "x-accel-buffering": "no"})
        return JSONResponse((await _completion(chat, graph_request, body.model))
                            .model_dump(mode="json"))


async def _checked(chat: ChatGraph, request: BaseModel) -> None:
    try:
        await chat.service.check(request)
    except InputTooLongError as exc:
        raise _too_long(exc) from exc


def _too_long(exc: InputTooLongError) -> OpenAIError:
    return OpenAIError(400, str(exc), param="messages", code="context_length_exceeded")


async def _completion(chat: ChatGraph, request: BaseModel, model: str) -> ChatCompletion:
    try:
        result = await chat.service.invoke(request, with_trace=True)
    except InputTooLongError as exc:
        raise _too_long(exc) from exc
    except RunTimeoutError as exc:
        raise OpenAIError(504, str(exc), type_="timeout_error", code="timeout") from exc
    except NodeError as exc:
        raise OpenAIError(500, str(exc), type_="server_error", code="graph_failed") from exc
    output = result.output.model_dump(mode="json")
    return ChatCompletion(
        id=completion_id(), created=int(time.time()), model=model,
        choices=[Choice(message=AssistantMessage(content=chat.content(output)))],
        usage=usage(result.trace or []),
        composerag=RunInfo(graph=result.graph, output=output, elapsed_s=result.elapsed_s))


def openai_router(services: Mapping[str, GraphService]) -> APIRouter:
    """The /v1 routes over ``services`` (the graphs that fit a chat model; see
    ``compose.serve.openai_api.chat``). Their errors need the app to have
    :func:`~compose.serve.openai_api.errors.install_error_shape`."""
    routes = ChatRoutes(services)
    router = APIRouter(prefix=PREFIX, tags=["openai"])

    @router.get("/models", summary="The graphs served as chat models")
    async def list_models() -> JSONResponse:
        cards = ModelList(data=[routes.card(name) for name in routes.chats])
        return JSONResponse(cards.model_dump(mode="json"))

    @router.get("/models/{model}", summary="One graph served as a chat model")
    async def get_model(model: str) -> JSONResponse:
        return JSONResponse(routes.card(routes.chat(model).service.name)
                            .model_dump(mode="json"))

    @router.post("/chat/completions", summary="Run a graph on the last user message",
                 description="OpenAI chat completions; `model` names the graph; "
                             "`stream: true` answers server-sent events.")
    async def chat_completions(request: Request) -> Response:
        return await routes.complete(request)

    return router
