"""Drop clients that take too long to send a request: the server's slowloris defence.

uvicorn has no timeout on receiving a request. ``timeout_keep_alive`` covers only the idle
time between two requests and is reset by every byte, so a client that sends its headers or
its body a byte at a time holds a connection (and the request's task) for as long as it
likes; 40 such clients held a server for 45 s in issue 16. ASGI middleware cannot help, as
the app is called only once the headers are complete.

So the HTTP protocol is wrapped: from the moment a connection opens, or the first byte of
a further request on a kept-alive connection arrives, the whole request (headers and body)
must arrive within ``request_timeout_s``. Past it the client gets a 408 (if no response has
started) and the connection is closed. Once a request is complete the clock stops, so a
slow graph run or a long stream is never cut; its deadline is the service's ``timeout_s``.

Usage::

    uvicorn.Server(server_config(app, host="127.0.0.1", port=8000,
                                 request_timeout_s=10)).run()
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import uvicorn
from uvicorn.protocols.http.auto import AutoHTTPProtocol

DEFAULT_REQUEST_TIMEOUT_S = 10.0
LINGER_S = 2.0  # how long a refused connection still drains late bytes before closing
"""Seconds a client has to send one whole request: ample for 64 KB on any real link."""


def _timeout_response(timeout_s: float) -> bytes:
    body = json.dumps({"detail": f"request not received within {timeout_s:g} s "
                                 "(the server's request timeout)"}).encode()
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() +
            b"\r\n\r\n" + body)


def deadline_protocol(request_timeout_s: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools or h11, as uvicorn picks) with a deadline on
    receiving each request. Both implementations keep the request in flight as ``cycle``,
    whose ``more_body`` turns false once the body is complete."""
    if request_timeout_s <= 0:
        raise ValueError(f"request_timeout_s must be positive, not {request_timeout_s}")
    refusal = _timeout_response(request_timeout_s)

    class RequestDeadline(AutoHTTPProtocol):  # type: ignore[valid-type, misc]
        _deadline: asyncio.TimerHandle | None = None
        # the request answered before the clock started: a cycle of either implementation
        _armed_after: Any = None
        _lingering = False  # refused: draining the client's late bytes before the close

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            if self._lingering:
                return
            if self._deadline is None and self._between_requests():
                self._arm()
            super().data_received(data)
            if self._deadline is not None and (self._request_received() or self._upgraded()):
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _between_requests(self) -> bool:
            return self.cycle is None or self.cycle.response_complete

        def _request_received(self) -> bool:
            return (self.cycle is not None and not self.cycle.response_complete
                    and not self.cycle.more_body)

        def _upgraded(self) -> bool:
            """A WebSocket upgrade hands the transport to another protocol: not ours to cut."""
            return self.transport.get_protocol() is not self

        def _arm(self) -> None:
            self._armed_after = self.cycle
            self._deadline = self.loop.call_later(request_timeout_s, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if self.transport.is_closing():
                return
            if self._unanswered():
                self.transport.write(refusal)
            if not self.transport.can_write_eof():
                self.transport.close()
                return
            # A lingering close: closing outright while the client is still sending makes
            # the kernel answer its late bytes with a reset, which can destroy the 408 before
            # the client reads it. Half-close, ignore what still arrives, close soon after.
            self._lingering = True
            self.transport.write_eof()
            self.loop.call_later(LINGER_S, self.transport.close)

        def _unanswered(self) -> bool:
            """Whether the late request has no response yet, so a 408 may be sent: not when
            the app answered early (a 413 before the whole body came) - two responses to one
            request would garble the connection."""
            cycle = self.cycle
            if cycle is None or not cycle.response_started:
                return True
            return cycle is self._armed_after and cycle.response_complete

    return RequestDeadline


def server_config(app: Any, *, host: str = "127.0.0.1", port: int = 8000,
                  request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
                  **uvicorn_options: Any) -> uvicorn.Config:
    """A uvicorn configuration serving ``app`` with the request deadline in place."""
    return uvicorn.Config(app, host=host, port=port,
                          http=deadline_protocol(request_timeout_s), **uvicorn_options)
