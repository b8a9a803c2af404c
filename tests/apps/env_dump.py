#!/usr/bin/env python3
"""Write what the starter passed down to a JSON file, then wait for TERM.

Usage: env_dump.py OUT.json. The file (written atomically) holds whether
SERVER_STARTER_PORT is present, its value, the generation, what
``server_ports()`` parsed and, for each socket ``listen_from_env()`` made
from it, its family and type (``["AF_INET", "SOCK_DGRAM"]``).
Serves nothing: for a starter run without any port (the original's t/14), and
to compare what two starters pass down for the same options.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from start_server import listen_from_env, server_ports


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    out = sys.argv[1]
    socks = listen_from_env()
    info = {
        "present": "SERVER_STARTER_PORT" in os.environ,
        "value": os.environ.get("SERVER_STARTER_PORT"),
        "generation": os.environ.get("SERVER_STARTER_GENERATION"),
        "server_ports": server_ports(),
        "sockets": [[s.family.name, s.type.name] for s in socks],
    }
    for s in socks:
        s.detach()
    tmp = f"{out}.{os.getpid()}"
    with open(tmp, "w") as fh:
        json.dump(info, fh)
    os.rename(tmp, out)
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
