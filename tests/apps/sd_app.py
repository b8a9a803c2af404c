#!/usr/bin/env python3
"""A test server that speaks only systemd's protocol (sd_listen_fds(3)).

It takes its sockets from ``LISTEN_FDS`` (fds 3, 4, ...) when ``LISTEN_PID``
is its own pid, exactly as gunicorn or any sd_listen_fds() user does, and
never reads ``SERVER_STARTER_PORT``. Without such sockets it exits 3. Every
stream socket is served (HTTP, one thread each); every response is one JSON
object: the generation, the pid, the ``LISTEN_*`` and ``SERVER_STARTER_PORT``
variables as it saw them at start, and for each fd its family and address.
On TERM: stop accepting, finish, exit 0.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEEN = {
    name: os.environ.get(name)
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "SERVER_STARTER_PORT")
}


def take_sockets() -> list[socket.socket]:
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        sys.stderr.write(f"sd_app: LISTEN_PID={os.environ.get('LISTEN_PID')} is not mine\n")
        sys.exit(3)
    count = int(os.environ.get("LISTEN_FDS", "0"))
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        os.environ.pop(name, None)  # sd_listen_fds(unset_environment=1)
    return [socket.socket(fileno=3 + i) for i in range(count)]


def describe(sock: socket.socket) -> list[str]:
    name = sock.getsockname()
    where = name if isinstance(name, str) else f"{name[0]}:{name[1]}"
    return [sock.family.name, sock.type.name, where]


def main() -> None:
    socks = take_sockets()
    body = json.dumps(
        {
            "gen": os.environ.get("SERVER_STARTER_GENERATION"),
            "pid": os.getpid(),
            "env": SEEN,
            "fds": {str(s.fileno()): describe(s) for s in socks},
        }
    ).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    servers = []
    for sock in socks:
        if sock.type != socket.SOCK_STREAM:
            continue
        sock.setblocking(False)  # shared with other generations: never block in accept
        server = ThreadingHTTPServer(("", 0), Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = sock
        server.daemon_threads = False
        server.block_on_close = True
        servers.append(server)

    def stop(*_: object) -> None:
        for server in servers:
            threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    threads = [
        threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.05}) for s in servers
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for server in servers:
        server.server_close()


if __name__ == "__main__":
    main()
