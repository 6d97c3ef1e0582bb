"""API keys for the HTTP server, and the rule on which addresses it may bind without one.

With a key configured, every request except ``GET /healthz`` (for load balancers and
orchestrators) must present it, as ``Authorization: Bearer KEY`` (what OpenAI clients send)
or ``X-API-Key: KEY``. A request without it, or with another key, gets 401 with
``WWW-Authenticate: Bearer`` before the app reads its body - in OpenAI's error shape on /v1
paths (so an OpenAI SDK raises ``AuthenticationError``), in FastAPI's elsewhere. Keys are
compared with :func:`hmac.compare_digest`, whose time does not depend on how much of the key
was right.

Without a key the server has no authentication, so it may bind loopback only:
:func:`check_bind` refuses any other address unless told the server is reached through
something that authenticates (a reverse proxy, a private network).

Usage::

    app = create_app(graphs, api_key=os.environ.get(API_KEY_ENV))
    check_bind("0.0.0.0", api_key=None, allow_unauthenticated=False)  # UnsafeBindError
"""

from __future__ import annotations

import hmac
import ipaddress
import json

from starlette.types import ASGIApp, Receive, Scope, Send

from compose.serve.openai_api.errors import error_body, is_openai_path

API_KEY_ENV = "COMPOSERAG_API_KEY"
OPEN_PATHS = frozenset({"/healthz"})
LOOPBACK_NAMES = frozenset({"localhost"})


class UnsafeBindError(ValueError):
    """A non-loopback bind without an API key, not explicitly allowed."""


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the server reachable from this machine only."""
    name = host.strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None, allow_unauthenticated: bool) -> None:
    """Raise :class:`UnsafeBindError` when binding ``host`` would open the graphs to the
    network without a key."""
    if api_key or allow_unauthenticated or is_loopback(host):
        return
    raise UnsafeBindError(
        f"refusing to bind {host!r} without an API key: anyone who can reach it could run "
        f"the graphs. Set --api-key (or {API_KEY_ENV}), bind 127.0.0.1, or pass "
        "--allow-unauthenticated-remote if a proxy in front authenticates")


def _presented(headers: list[tuple[bytes, bytes]]) -> list[bytes]:
    """The keys a request offers: a Bearer token and an X-API-Key value."""
    keys = []
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.strip().partition(b" ")
            if scheme.lower() == b"bearer" and token.strip():
                keys.append(token.strip())
        elif name == b"x-api-key" and value.strip():
            keys.append(value.strip())
    return keys


def key_bytes(api_key: str) -> bytes:
    """``api_key`` as compared with what requests present; a ValueError for a key no
    request could present (empty, or with surrounding whitespace, which headers drop)."""
    if not api_key or api_key != api_key.strip():
        raise ValueError("the API key must be non-empty, without surrounding whitespace")
    return api_key.encode()


class APIKeyAuth:
    """ASGI middleware refusing requests that do not present ``api_key``."""

    def __init__(self, app: ASGIApp, api_key: str) -> None:
        self.app = app
        self.key = key_bytes(api_key)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        offered = _presented(scope.get("headers") or [])
        # Every offered key is compared, so the time does not tell which header matched.
        matches = [hmac.compare_digest(key, self.key) for key in offered]
        if any(matches):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        message = ("invalid API key" if offered else
                   "missing API key: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
        body = json.dumps(error_body(message, code="invalid_api_key")
                          if is_openai_path(scope["path"]) else {"detail": message}).encode()
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", b"Bearer")]})
        await send({"type": "http.response.body", "body": body})
