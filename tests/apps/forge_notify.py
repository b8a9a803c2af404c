#!/usr/bin/env python3
"""Send sd_notify datagrams to a generation's NOTIFY_SOCKET from outside it.

  forge_notify.py ADDRESS fork N     N children each send READY=1 and exit at once
                                     (and this process sends one more itself)
  forge_notify.py ADDRESS flood S    send without blocking for S seconds

Prints "sent=N refused=M": datagrams the kernel took, and sends it refused
(EACCES where the socket is not ours to reach; a full queue is not counted).
"""

from __future__ import annotations

import os
import socket
import sys
import time

MESSAGE = b"READY=1\nSTATUS=forged"


def _send(address: str, blocking: bool = True) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(blocking)
        try:
            sock.sendto(MESSAGE, address)
        except PermissionError:
            return "refused"
        except BlockingIOError:
            return "full"
    return "sent"


def main() -> None:
    address, mode, amount = sys.argv[1], sys.argv[2], float(sys.argv[3])
    if address.startswith("@"):
        address = "\0" + address[1:]
    counts = {"sent": 0, "refused": 0, "full": 0}
    if mode == "fork":
        results = []
        for _ in range(int(amount)):
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(read_end)
                os.write(write_end, _send(address).encode())
                os._exit(0)
            os.close(write_end)
            results.append(read_end)
        for fd in results:
            counts[os.read(fd, 16).decode()] += 1
            os.close(fd)
        counts[_send(address)] += 1
        while True:
            try:
                os.wait()
            except ChildProcessError:
                break
    else:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            deadline = time.monotonic() + amount
            while time.monotonic() < deadline:
                try:
                    sock.sendto(MESSAGE, address)
                    counts["sent"] += 1
                except PermissionError:
                    counts["refused"] += 1
                except BlockingIOError:
                    counts["full"] += 1
    print(f"sent={counts['sent']} refused={counts['refused']}", flush=True)


if __name__ == "__main__":
    main()
