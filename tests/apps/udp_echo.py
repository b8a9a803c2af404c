#!/usr/bin/env python3
"""A UDP echo server on the first inherited socket.

Each datagram is answered with "gen=G pid=P port=SERVER_STARTER_PORT data=DATA".
TERM (or INT) exits 0 at once: the starter keeps the socket, so datagrams sent
meanwhile wait in its buffer for the next generation.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys

from start_server import listen_from_env


def main() -> None:
    # A Python handler runs between bytecodes: a TERM landing just before a blocking
    # recvfrom() would wait for the next datagram. Its wakeup byte ends the select().
    wake_r, wake_w = socket.socketpair()
    wake_w.setblocking(False)
    signal.set_wakeup_fd(wake_w.fileno())
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    gen = os.environ.get("SERVER_STARTER_GENERATION", "?")
    port_env = os.environ.get("SERVER_STARTER_PORT", "<unset>")
    with listen_from_env()[0] as sock:
        if sock.type != socket.SOCK_DGRAM:
            sys.exit(f"udp_echo: expected a datagram socket, got {sock.type!r}")
        while True:
            if sock not in select.select([sock, wake_r], [], [])[0]:
                continue  # a signal: its handler runs now
            try:  # the socket is shared with other generations: one may take it first
                data, peer = sock.recvfrom(65536, socket.MSG_DONTWAIT)
            except BlockingIOError:
                continue
            reply = f"gen={gen} pid={os.getpid()} port={port_env} data=".encode() + data
            sock.sendto(reply, peer)


if __name__ == "__main__":
    main()
