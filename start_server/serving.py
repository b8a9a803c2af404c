"""``serve_http``: a stdlib HTTP server that gets the hot-deploy traps right.

Loaded on first use of ``start_server.serve_http`` (stdlib only). What it does
for the app, each a trap of ``http.server`` under a starter:

- the listening socket is the inherited one, made non-blocking: other
  processes accept on it too, so a connection announced as ready may be gone;
- request threads are not daemon threads and are joined on the way out
  (``ThreadingHTTPServer`` defaults to daemon threads, which the interpreter
  kills mid-response at exit: every restart would drop requests in flight);
- the stop signal only writes to a wake-up fd that the loop waits on with the
  listening socket: no polling, no work in a signal handler;
- on the stop signal it stops accepting, waits for the requests in flight up
  to ``drain_timeout``, then runs the ``on_shutdown`` callbacks, whatever
  happened to the requests (a client gone mid-request included).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any, Callable, Optional

from .listener import ENV_PORT, ServerStarterError, listen_from_env, notify, notify_ready


class _InheritedServer(HTTPServer):
    """HTTPServer on an inherited socket; one non-daemon thread per connection."""

    def __init__(self, sock: socket.socket, handler: type[BaseHTTPRequestHandler]) -> None:
        address = sock.getsockname()
        # BaseServer's, not TCPServer's: no socket of our own is made, bound or listened on.
        socketserver.BaseServer.__init__(self, address, handler)
        sock.setblocking(False)
        self.socket = sock
        self.address_family = sock.family
        if isinstance(address, tuple):
            self.server_name, self.server_port = str(address[0]), int(address[1])
        else:  # a unix socket
            self.server_name, self.server_port = str(address), 0
        self.requests: set[threading.Thread] = set()
        self.connections: dict[threading.Thread, socket.socket] = {}
        self.lock = threading.Lock()

    def accept(self) -> None:
        """Take one connection if it is still there (another process may have taken it)."""
        try:
            conn, address = self.socket.accept()
        except OSError:  # BlockingIOError: taken by another process; ECONNABORTED
            return
        if not isinstance(address, tuple):  # unix: the handler's log wants (host, port)
            address = ("local", 0)
        thread = threading.Thread(target=self._serve, args=(conn, address), daemon=False)
        with self.lock:
            self.requests.add(thread)
            self.connections[thread] = conn
        thread.start()

    def _serve(self, conn: socket.socket, address: Any) -> None:
        try:
            self.finish_request(conn, address)
        except ConnectionError:
            pass  # the client went away: nothing to answer
        except Exception:
            self.handle_error(conn, address)
        finally:
            self.shutdown_request(conn)
            with self.lock:
                me = threading.current_thread()
                self.requests.discard(me)
                self.connections.pop(me, None)

    def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` for the requests in flight; then cut the rest off.

        Returns how many were still running at the bound.
        """
        deadline = time.monotonic() + timeout
        for thread in self._running():
            thread.join(max(deadline - time.monotonic(), 0))
        late = self._running()
        with self.lock:
            for thread in late:  # a keep-alive connection or a stuck request
                conn = self.connections.get(thread)
                if conn is not None:
                    with contextlib.suppress(OSError):
                        conn.shutdown(socket.SHUT_RDWR)
        for thread in late:
            thread.join(1.0)
        return len(late)

    def _running(self) -> list[threading.Thread]:
        with self.lock:
            return list(self.requests)


def serve_http(
    handler_class: type[BaseHTTPRequestHandler],
    *,
    key: Optional[str] = None,
    on_shutdown: Iterable[Callable[[], object]] = (),
    drain_timeout: float = 30.0,
    stop_signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT),
) -> None:
    """Serve HTTP with ``handler_class`` on the inherited socket until a stop signal.

    ``key`` picks the socket (a ``--port``/``--path`` as given), else the first.
    Returns once the requests in flight are done and every ``on_shutdown``
    callback has run. Requests still running ``drain_timeout`` seconds after
    the signal get their connections closed; if one is still running after
    that, the callbacks run and the process exits with status 1 (a request
    thread is not a daemon thread, so the interpreter would wait for it).
    Call it from the main thread (signal handlers live there).
    """
    sock = _stream_socket(key)
    server = _InheritedServer(sock, handler_class)
    wake_read, wake_write = socket.socketpair()
    wake_read.setblocking(False)
    wake_write.setblocking(False)
    previous = {signum: signal.signal(signum, _ignore) for signum in stop_signals}
    old_wakeup = signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)
    try:
        notify_ready()
        _accept_until_stopped(server, wake_read, stop_signals)
        notify("STOPPING=1")
        sock.close()  # our copy: the starter keeps the socket open for the next generation
        late = server.drain(drain_timeout)
    finally:
        signal.set_wakeup_fd(old_wakeup)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        wake_read.close()
        wake_write.close()
        sock.close()
        _run_callbacks(on_shutdown)
    if late:
        # Not daemon threads, so the interpreter would wait for them at exit:
        # the bound is kept by leaving now, after the callbacks.
        sys.stderr.write(
            f"serve_http: {late} request(s) still running {drain_timeout:g} s after the "
            "stop signal; exiting without them\n"
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


def _stream_socket(key: Optional[str]) -> socket.socket:
    """The inherited socket to serve on: ``key``'s, else the first; a stream one."""
    socks = listen_from_env(key)
    if not socks:
        raise ServerStarterError(f"{ENV_PORT} names no socket: nothing to serve on")
    for extra in socks[1:]:
        extra.detach()  # not ours to close: leave the fd as inherited
    if socks[0].type != socket.SOCK_STREAM:
        name = key if key is not None else "the first socket"
        socks[0].detach()
        raise ServerStarterError(f"{ENV_PORT}: {name} is not a stream socket: no HTTP on it")
    return socks[0]


def _ignore(signum: int, frame: object) -> None:
    """The handler only has to exist: the wake-up fd carries the signal to the loop."""


def _accept_until_stopped(
    server: _InheritedServer, wake: socket.socket, stop_signals: tuple[int, ...]
) -> None:
    with selectors.DefaultSelector() as sel:
        sel.register(server.socket, selectors.EVENT_READ, "accept")
        sel.register(wake, selectors.EVENT_READ, "signal")
        while True:
            for key, _ in sel.select():
                if key.data == "accept":
                    server.accept()
                    continue
                try:
                    received = wake.recv(256)
                except BlockingIOError:
                    continue
                if any(signum in stop_signals for signum in received):
                    return


def _run_callbacks(callbacks: Iterable[Callable[[], object]]) -> None:
    """Every callback runs, in order; one that raises is reported, not fatal to the rest."""
    import traceback

    for callback in callbacks:
        try:
            callback()
        except Exception:
            sys.stderr.write(f"serve_http: on_shutdown callback {callback!r} failed:\n")
            traceback.print_exc()
