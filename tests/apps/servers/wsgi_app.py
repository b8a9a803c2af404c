"""A tiny WSGI app for gunicorn: answers with the generation and pid that served it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Callable


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = (
        f"hello from generation {os.environ.get('SERVER_STARTER_GENERATION', '?')} "
        f"pid {os.getpid()}\n"
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
    )
    return [body]
