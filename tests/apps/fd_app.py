#!/usr/bin/env python3
"""examples/hello_app.py with a handle leak, for --max-open-files.

  --leak-per-request  keep one socket open for every request answered (a
                      connection opened per request and never closed), up to
                      --leak-max sockets (default 2000)
  --hold N            open N sockets at start and keep them
  --once PATH         leak (either way) only if this process is the one that
                      removes PATH: one generation leaks, its successor not
  --child             fork a child (holding what the app holds so far) that waits for TERM
  --hidden-child      fork a child that makes itself non-dumpable (its fds can be
                      listed but not read without CAP_SYS_PTRACE) and waits for TERM

Answers and drains on TERM as hello_app does ("hello from generation G pid P").
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))

from hello_app import Handler  # type: ignore[import-not-found]

from start_server import serve_http

LEAKED: list[socket.socket] = []
LOCK = threading.Lock()


# Handler comes from the example app, which mypy does not follow from here.
class LeakingHandler(Handler):  # type: ignore[misc]
    limit = 0  # sockets to leak at most; 0: none

    def do_GET(self) -> None:
        with LOCK:
            if len(LEAKED) < self.limit:
                LEAKED.append(socket.socket())  # never closed
        super().do_GET()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leak-per-request", action="store_true")
    ap.add_argument("--leak-max", type=int, default=2000)
    ap.add_argument("--hold", type=int, default=0)
    ap.add_argument("--once", default=None)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--hidden-child", action="store_true")
    args = ap.parse_args()
    leaks = True
    if args.once is not None:
        try:
            os.unlink(args.once)  # exactly one process wins the file
        except FileNotFoundError:
            leaks = False
    if leaks:
        LEAKED.extend(socket.socket() for _ in range(args.hold))
        if args.leak_per_request:
            LeakingHandler.limit = args.leak_max
    if (args.child or args.hidden_child) and os.fork() == 0:
        if args.hidden_child:
            ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
        while True:
            signal.pause()  # until TERM (its default action) from the starter
    serve_http(LeakingHandler)


if __name__ == "__main__":
    main()
