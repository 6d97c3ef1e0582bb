"""Refuse requests whose Host or Origin header names another site: DNS-rebinding protection.

A web page on any site can point its own DNS name at 127.0.0.1 and then have the browser
send requests to a server on loopback; the browser takes the replies as coming from the
page's own origin and lets it read them. Such requests still carry the attacker's name in
``Host`` (and a cross-site ``fetch`` carries its ``Origin``), so a server that answers only
to its own names cannot be driven that way. The policy is the one the MCP SDK applies to
its streamable HTTP transport on loopback: hosts ``127.0.0.1``, ``localhost`` and ``[::1]``
on any port, and origins on those hosts; an absent ``Origin`` (curl, Python clients,
same-origin navigation) is accepted.

Starlette's ``TrustedHostMiddleware`` checks ``Host`` only and answers in plain text; this
checks both and answers in the server's JSON error shape, naming the setting to change.

Usage::

    app = HostCheck(app, allowed_hosts=[*LOOPBACK_HOSTS, "lab.example"])
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
ANY_HOST = "*"
HOW_TO_ALLOW = ("serve under another name with `composerag serve --allowed-host NAME` "
                "(create_app(allowed_hosts=...))")


def normalise_host(name: str) -> str:
    """``[::1]`` and ``::1`` are one host; names compare case-insensitively."""
    return name.strip().lower().removeprefix("[").removesuffix("]")


# host[:port] as browsers send it: a name or IPv4 address, or an IPv6 address in brackets.
# Anything else (user info, paths, spaces) is refused rather than parsed leniently.
_HOST_PORT = r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::[0-9]*)?"
_HOST_HEADER = re.compile(_HOST_PORT)
_ORIGIN_HEADER = re.compile(r"https?://" + _HOST_PORT)


def host_of_header(value: str) -> str | None:
    """The host named by a ``Host`` header (``name``, ``name:port``, ``[v6]:port``)."""
    match = _HOST_HEADER.fullmatch(value)
    return normalise_host(match[1]) if match else None


def host_of_origin(value: str) -> str | None:
    """The host of an ``Origin`` header, or None when it is not an http(s) origin (a
    sandboxed page sends ``null``)."""
    match = _ORIGIN_HEADER.fullmatch(value)
    return normalise_host(match[1]) if match else None


def allow_list(hosts: Iterable[str]) -> frozenset[str]:
    """The normalised host names of ``hosts``; refuses an empty list, which would refuse
    every request."""
    allowed = frozenset(normalise_host(h) for h in hosts)
    if not allowed:
        raise ValueError(f"allowed_hosts is empty, so no request could be answered: pass "
                         f"{', '.join(LOOPBACK_HOSTS)} for loopback, or {ANY_HOST!r} to turn "
                         "the check off")
    return allowed


class HostCheck:
    """ASGI middleware: 421 for a ``Host`` off the allow-list, 403 for such an ``Origin``.

    ``allowed_hosts`` holds host names without ports; ``"*"`` turns the check off (only for
    a server behind a proxy that checks ``Host`` itself)."""

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str] = LOOPBACK_HOSTS) -> None:
        self.app = app
        self.allowed = allow_list(allowed_hosts)
        self.allow_any = ANY_HOST in self.allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allow_any or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host_header = headers.get("host", "")
        host = host_of_header(host_header)
        if host is None or host not in self.allowed:
            await self._refuse(send, 421, f"Host header {host_header!r} is not one this server "
                                          f"answers to ({self._names()}); {HOW_TO_ALLOW}")
            return
        origin = headers.get("origin")
        if origin is not None and host_of_origin(origin) not in self.allowed:
            await self._refuse(send, 403, f"requests from origin {origin!r} are refused: only "
                                          f"pages served from {self._names()} may call this "
                                          f"server; {HOW_TO_ALLOW}")
            return
        await self.app(scope, receive, send)

    def _names(self) -> str:
        return ", ".join(sorted(self.allowed))

    @staticmethod
    async def _refuse(send: Send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
