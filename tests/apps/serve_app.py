#!/usr/bin/env python3
"""An app on start_server.serve_http, for its tests.

  --slow S          answer each request after S seconds (a request in flight)
  --marker PATH     "request" is appended to PATH as each request starts, and the
                    on_shutdown callbacks append "pool closed" and "flushed"
  --drain-timeout S serve_http's bound on the drain
Every response is "hello from generation G pid P\n", as examples/hello_app.py's.
"""

from __future__ import annotations

import argparse
import os
import time
from http.server import BaseHTTPRequestHandler

from start_server import serve_http


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--slow", type=float, default=0.0)
    ap.add_argument("--marker", default=None)
    ap.add_argument("--drain-timeout", type=float, default=30.0)
    args = ap.parse_args()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            note("request")
            if args.slow:
                time.sleep(args.slow)  # the work of a slow request
            gen = os.environ.get("SERVER_STARTER_GENERATION")
            body = f"hello from generation {gen} pid {os.getpid()}\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *a: object) -> None:
            pass

    def note(text: str) -> None:
        if args.marker:
            with open(args.marker, "a") as fh:
                fh.write(text + "\n")

    serve_http(
        Handler,
        on_shutdown=[lambda: note("pool closed"), lambda: note("flushed")],
        drain_timeout=args.drain_timeout,
    )


if __name__ == "__main__":
    main()
