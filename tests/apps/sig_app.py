#!/usr/bin/env python3
"""An HTTP test server that records the signals it gets (like the original's echod).

  --record PATH      append "GEN SIGNAME MONOTONIC" to PATH for every TERM,
                     USR1 or INT it receives (one write per line)
  --hold-until PATH  after a stop signal: stop accepting and close the listener,
                     but exit only once PATH exists (an old generation that
                     lingers while it finishes its work, released by the test)
  --notify           send READY=1 once serving

TERM, USR1 and INT all mean "stop gracefully", so the app suits both
``--signal-on-hup=TERM`` and ``--signal-on-hup=USR1``; it exits 0.
Every response is "gen=G pid=P\n".
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from typing import Optional

from app import Handler, Server  # the test app next to this one: same handler, same server

from start_server import listen_from_env, notify

GEN = os.environ.get("SERVER_STARTER_GENERATION", "?")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--record", default=None)
    ap.add_argument("--hold-until", default=None)
    ap.add_argument("--notify", action="store_true")
    args = ap.parse_args()

    record_fd: Optional[int] = None
    if args.record:
        record_fd = os.open(args.record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    sock = listen_from_env()[0]
    sock.setblocking(False)  # shared with other processes: accept() must never block
    server = Server(("127.0.0.1", 0), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    stopping = threading.Event()

    def stopper() -> None:
        stopping.wait()
        server.shutdown()

    # The handler only sets an event: starting a thread from a signal handler
    # deadlocks if the main thread was starting a request thread at that moment.
    threading.Thread(target=stopper, daemon=True).start()

    def on_signal(signum: int, _frame: object) -> None:
        if record_fd is not None:
            name = signal.Signals(signum).name[3:]
            os.write(record_fd, f"{GEN} {name} {time.monotonic():.6f}\n".encode())
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT):
        signal.signal(sig, on_signal)
    if args.notify:
        notify("READY=1")
    server.serve_forever(poll_interval=0.05)
    server.server_close()  # the listener is closed: this generation no longer accepts
    if args.hold_until:
        while not os.path.exists(args.hold_until):
            time.sleep(0.01)
    if record_fd is not None:
        os.close(record_fd)


if __name__ == "__main__":
    main()
