#!/usr/bin/env python3
"""A configurable test server: HTTP on the first inherited socket.

Behaviour comes from the command line so one app serves every test:
  --delay S         sleep S seconds before serving (a slow start)
  --notify          send READY=1 once serving (--notify-delay S before it)
  --ignore-term     ignore SIGTERM (only SIGKILL stops it)
  --exit N          exit with code N right away (a broken build)
  --fail-if PATH    exit 3 at once if PATH exists (break a deploy from a test)
  --fork N          fork N grandchildren that ignore TERM and sleep (a forking server);
                    each is named app-grandchild (/proc/PID/comm), and reaped by its parent
  --setsid-child    leave a double-forked helper in its own session (ignores TERM)
  --leak MB         hold MB mebibytes of resident memory (over a --max-memory)
  --leak-once PATH  ... only if this process is the one that removes PATH
  --never-ready     never send READY=1, even with --notify (a deploy that hangs)
Extra flags may come from $APP_EXTRA, so an envdir can change one generation.
Every response is "gen=G pid=P\n"; GET /leak/N first makes the process hold N more
mebibytes (a memory spike). On TERM: stop accepting, finish, exit 0.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from start_server import listen_from_env, notify

GRANDCHILD = b"app-grandchild"  # its /proc/PID/comm, so a test can tell it from a worker
HOARDS: list[bytearray] = []  # memory held on purpose


def hoard(mib: int) -> None:
    """Hold ``mib`` more mebibytes, touched so they are really resident."""
    block = bytearray(mib * 1048576)
    for i in range(0, len(block), 4096):
        block[i] = 1
    HOARDS.append(block)


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        gen = os.environ.get("SERVER_STARTER_GENERATION", "?")
        body = f"gen={gen} pid={os.getpid()}\n".encode()
        if self.path.startswith("/env/"):
            body = (os.environ.get(self.path[5:], "<unset>") + "\n").encode()
        elif self.path == "/cwd":
            body = (os.getcwd() + "\n").encode()
        elif self.path.startswith("/kill0/"):  # may this process signal that pid?
            try:
                os.kill(int(self.path[7:]), 0)
                body = b"ok\n"
            except OSError as exc:
                body = f"{type(exc).__name__}\n".encode()
        elif self.path.startswith("/leak/"):
            hoard(int(self.path[6:]))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    request_queue_size = 128


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--notify", action="store_true")
    ap.add_argument("--notify-delay", type=float, default=0.0)
    ap.add_argument("--ignore-term", action="store_true")
    ap.add_argument("--exit", type=int, default=None)
    ap.add_argument("--fail-if", default=None)
    ap.add_argument("--fork", type=int, default=0)
    ap.add_argument("--setsid-child", action="store_true")
    ap.add_argument("--leak", type=int, default=0)
    ap.add_argument("--leak-once", default=None)
    ap.add_argument("--never-ready", action="store_true")
    args = ap.parse_args(sys.argv[1:] + os.environ.get("APP_EXTRA", "").split())
    if args.exit is not None:
        sys.exit(args.exit)
    if args.fail_if and os.path.exists(args.fail_if):
        sys.exit(3)
    if args.ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    forked = []
    for _ in range(args.fork):
        pid = os.fork()
        if pid == 0:
            import ctypes  # here only: the app's start stays as fast as it was

            ctypes.CDLL(None).prctl(15, GRANDCHILD)  # PR_SET_NAME
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True:
                time.sleep(3600)
        forked.append(pid)
    if args.setsid_child and os.fork() == 0:
        # A double-forked helper in a session of its own: out of our process group.
        os.setsid()
        if os.fork() == 0:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            while True:
                time.sleep(3600)
        os._exit(0)
    for pid in forked:  # threads once every fork is done: no zombie of --fork's
        threading.Thread(target=os.waitpid, args=(pid, 0), daemon=True).start()
    leak = args.leak
    if args.leak_once is not None:
        try:
            os.unlink(args.leak_once)  # exactly one process wins the file
        except FileNotFoundError:
            leak = 0
    hoard(leak)
    time.sleep(args.delay)
    sock = listen_from_env()[0]
    sock.setblocking(False)  # shared with other processes: accept() must never block
    server = Server(sock.getsockname()[:2], Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    if not args.ignore_term:
        # The handler only sets an event: starting a thread from a signal handler
        # deadlocks if the main thread was starting a request thread at that moment.
        stop = threading.Event()

        def stopper() -> None:
            stop.wait()
            server.shutdown()

        threading.Thread(target=stopper, daemon=True).start()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    if args.notify and not args.never_ready:
        def ready() -> None:
            time.sleep(args.notify_delay)
            notify("READY=1")
        threading.Thread(target=ready, daemon=True).start()
    server.serve_forever(poll_interval=0.05)
    server.server_close()


if __name__ == "__main__":
    main()
