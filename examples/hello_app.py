#!/usr/bin/env python3
"""A stdlib HTTP app for start_server: inherits its socket, drains on TERM.

    start_server --port 8080 -- python3 examples/hello_app.py

Each request is answered with the generation and pid that served it.
serve_http() takes the inherited socket, says READY=1, and on SIGTERM stops
accepting, finishes the requests in flight and returns; the listening socket
stays open in start_server, so the next generation accepts whatever arrives
meanwhile: no connection is refused or dropped.
"""

from __future__ import annotations

import os
from http.server import BaseHTTPRequestHandler

from start_server import serve_http


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        generation = os.environ.get("SERVER_STARTER_GENERATION", "?")
        body = f"hello from generation {generation} pid {os.getpid()}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the starter's log readable


if __name__ == "__main__":
    serve_http(Handler)
