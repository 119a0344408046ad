"""Run a simulator (any ASGI app) on a free local port, in a background thread.

:func:`serve` uses uvicorn (HTTP/1.1); :func:`serve_h2` uses hypercorn, which
also speaks HTTP/2 cleartext with prior knowledge (h2c) on a plain TCP socket:
it recognises the HTTP/2 connection preface and switches protocols, so an
``httpx.Client(http1=False, http2=True)`` needs neither TLS nor ALPN.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve(app: Any, port: int | None = None, log_level: str = "warning") -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 and yield its base URL; stop it on exit."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level, lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("simulator did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=5)


@contextmanager
def serve_h2(app: Any, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` over HTTP/1.1 and h2c on 127.0.0.1; yield its base URL; stop it on exit."""
    port = port or free_port()
    config = HypercornConfig()
    config.bind = [f"127.0.0.1:{port}"]
    config.loglevel = "WARNING"
    config.graceful_timeout = 1.0  # a hanging request must not hold up the shutdown
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    server = hypercorn_serve(app, config, shutdown_trigger=stop.wait)
    thread = threading.Thread(target=loop.run_until_complete, args=(server,), daemon=True)
    thread.start()
    try:
        _wait_listening(port, thread)
        yield f"http://127.0.0.1:{port}"
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=5)
        if not thread.is_alive():
            loop.close()


def _wait_listening(port: int, thread: threading.Thread) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("simulator did not start") from None
            time.sleep(0.01)
