"""Errors in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, so an
OpenAI SDK client raises its own typed exceptions (``NotFoundError``, ``BadRequestError``,
``AuthenticationError``...) with the message and code readable, instead of a generic error
on FastAPI's ``{"detail": ...}``."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

PREFIX = "/v1"


def is_openai_path(path: str) -> bool:
    """Whether ``path`` is served by the OpenAI-compatible routes (and so errs in their
    shape)."""
    return path == PREFIX or path.startswith(PREFIX + "/")


def error_body(message: str, type_: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


class OpenAIError(Exception):
    """A refusal or failure of an OpenAI-compatible route, answered with ``status``."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(message, type_, param, code)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body, status_code=self.status)


def install_error_shape(app: FastAPI) -> None:
    """Answer :class:`OpenAIError` raised by the routes, and the framework's own errors on
    /v1 paths (an unknown route's 404, a wrong method's 405), in OpenAI's shape; every other
    path keeps FastAPI's."""

    async def refused(request: Request, exc: OpenAIError) -> Response:
        return exc.response()

    async def handler(request: Request, exc: StarletteHTTPException) -> Response:
        if not is_openai_path(request.url.path):
            return await http_exception_handler(request, exc)
        code = "unknown_url" if exc.status_code == 404 else None
        return JSONResponse(error_body(str(exc.detail), code=code),
                            status_code=exc.status_code, headers=exc.headers)

    # Starlette types a handler as taking any Exception, though it is called only with the
    # class it is registered for
    app.add_exception_handler(OpenAIError, refused)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, handler)  # type: ignore[arg-type]
