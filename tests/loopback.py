"""Run an ASGI app on a free loopback port in a background thread, for protocol tests that
go through real sockets."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serving(app, config: Callable[..., uvicorn.Config] = uvicorn.Config,
            **settings: Any) -> Iterator[str]:
    """Yield the base URL while ``app`` is served; stop the server afterwards. ``config``
    builds the uvicorn config from the app, host, port and ``settings`` (say the CLI's
    ``server_config`` with its request deadline)."""
    port = free_port()
    server = uvicorn.Server(config(app, host="127.0.0.1", port=port, log_level="warning",
                                   **settings))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
