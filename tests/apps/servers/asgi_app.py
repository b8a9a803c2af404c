"""A tiny ASGI app for uvicorn and hypercorn (no framework): generation and pid.

    start_server --port=127.0.0.1:8080=3 --interval=2 -- uvicorn --fd=3 asgi_app:app
"""

from __future__ import annotations

import os
from collections.abc import Awaitable
from typing import Any, Callable

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    body = (
        f"hello from generation {os.environ.get('SERVER_STARTER_GENERATION', '?')} "
        f"pid {os.getpid()}\n"
    ).encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
