"""Request bodies read as strict JSON, so every malformed body is a 4xx and never a 500.

FastAPI reads bodies with Python's ``json``, which accepts what JSON does not: ``NaN`` and
``Infinity``, numbers that overflow to infinity (``1e400``) and lone UTF-16 surrogates
(``"\\ud800"``). None of these can be written back out - not in the 422 that echoes the
input, not in a graph's answer - so each ended in a bare 500. Here bodies are parsed by
pydantic-core's JSON parser, which refuses NaN, lone surrogates, invalid UTF-8 and nesting
deeper than its recursion limit with a line and column, and numbers that overflowed are
refused by path. A body not labelled as JSON is a 415 (FastAPI would pass its raw bytes on
to validation, whose error message then fails on bytes that are not UTF-8).

Each refusal keeps FastAPI's 422 shape: ``{"detail": [{"type", "loc", "msg", ...}]}``.

Usage::

    app = FastAPI()
    app.router.route_class = StrictJSONRoute  # before adding the routes
"""

from __future__ import annotations

import email.message
import math
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from pydantic_core import from_json

JSON_MEDIA_TYPE = "application/json"


def _non_finite_path(value: Any,
                     path: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """Where the first infinite float is, or None. Depth is bounded by the parser's own
    recursion limit, so this recursion is too."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    items = (value.items() if isinstance(value, dict)
             else enumerate(value) if isinstance(value, list) else ())
    for key, item in items:
        found = _non_finite_path(item, (*path, key))
        if found is not None:
            return found
    return None


def _refused(kind: str, loc: tuple[str | int, ...], msg: str, **ctx: Any) -> HTTPException:
    error: dict[str, Any] = {"type": kind, "loc": ["body", *loc], "msg": msg}
    if ctx:
        error["ctx"] = ctx
    return HTTPException(status_code=422, detail=[error])


def parse_json_body(body: bytes) -> Any:
    """The JSON value of ``body``, or an :class:`HTTPException` (422) saying what is wrong."""
    try:
        value = from_json(body, allow_inf_nan=False)
    except ValueError as exc:
        raise _refused("json_invalid", (), "JSON decode error", error=str(exc)) from None
    where = _non_finite_path(value)
    if where is not None:
        raise _refused("finite_number", where,
                       "number out of range: JSON numbers must be finite")
    return value


def is_json(content_type: str) -> bool:
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json"))


class StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = parse_json_body(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """A route whose JSON body goes through :func:`parse_json_body`, and which refuses a body
    of another media type with 415."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict_handler(request: Request) -> Response:
            content_type = request.headers.get("content-type")
            if self.body_field is not None and not is_json(content_type or ""):
                sent = f"not {content_type!r}" if content_type else "the request names none"
                raise HTTPException(
                    status_code=415,
                    detail=f"the body must be JSON (content-type: {JSON_MEDIA_TYPE}); {sent}")
            return await handler(StrictJSONRequest(request.scope, request.receive))

        return strict_handler
