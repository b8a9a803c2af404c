#!/usr/bin/env python3
"""A stdlib HTTP app for start_server: inherits its socket, drains on TERM.

    start_server --port 8080 -- python3 examples/hello_app.py

Each request is answered with the generation and pid that served it. On
SIGTERM the app stops accepting, finishes the requests in flight and exits;
the listening socket stays open in start_server, so the next generation
accepts whatever arrives meanwhile: no connection is refused or dropped.
"""

from __future__ import annotations

import os
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from start_server import listen_from_env, notify_ready


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (
            f"hello from generation {os.environ.get('SERVER_STARTER_GENERATION', '?')} "
            f"pid {os.getpid()}\n"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the starter's log readable


class InheritedServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for requests in flight
    block_on_close = True

    def __init__(self) -> None:
        sock = listen_from_env()[0]
        # Other processes (the next generation, other workers) accept on the
        # same socket: a connection select() announced may be gone by the time
        # we accept(), and a blocking accept() would then hang past SIGTERM.
        sock.setblocking(False)
        super().__init__(sock.getsockname()[:2], Handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock


def stop_on(server: InheritedServer, *signums: int) -> None:
    """Drain on these signals: stop accepting, finish the requests in flight.

    The handler only sets an event: starting a thread from a signal handler can
    deadlock when the signal lands while the main thread is itself starting one
    (a request thread) and holds threading's internal lock.
    """
    stop = threading.Event()

    def stopper() -> None:
        stop.wait()
        server.shutdown()  # returns once serve_forever() has returned

    threading.Thread(target=stopper, daemon=True).start()
    for signum in signums:
        signal.signal(signum, lambda *_: stop.set())


def main() -> None:
    server = InheritedServer()
    stop_on(server, signal.SIGTERM, signal.SIGINT)
    notify_ready()  # a no-op unless start_server (or systemd) gave us NOTIFY_SOCKET
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main()
