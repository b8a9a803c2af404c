"""The app side: pick up the sockets a starter passed down, tell it when ready.

Stdlib only and imported by ``start_server/__init__.py``: a server that does
``from start_server import listen_from_env`` must not pay for click, yaml or
python-daemon. Works the same under Perl's ``start_server``.
"""

from __future__ import annotations

import os
import socket
from typing import Optional

ENV_PORT = "SERVER_STARTER_PORT"
ENV_GENERATION = "SERVER_STARTER_GENERATION"


class ServerStarterError(RuntimeError):
    """``SERVER_STARTER_PORT`` is missing, malformed, or names an unusable fd."""


def parse_port_env(value: str) -> dict[str, int]:
    """``"8080=3;/tmp/s.sock=4"`` -> ``{"8080": 3, "/tmp/s.sock": 4}``.

    Keys keep their text exactly (they are what ``--port``/``--path`` said);
    an empty string means no sockets.
    """
    ports: dict[str, int] = {}
    if value.strip() == "":
        return ports
    for item in value.split(";"):
        key, sep, fd_text = item.rpartition("=")
        fd_text = fd_text.strip()
        # ASCII digits of a C int: int() takes "\uff13", and a huge fd overflows later.
        if not sep or not key or not (fd_text.isascii() and fd_text.isdigit()) or len(fd_text) > 9:
            raise ServerStarterError(
                f"{ENV_PORT}={value!r}: malformed item {item!r} (expected KEY=FD)"
            )
        ports[key] = int(fd_text)
    return ports


def server_ports(environ: Optional[dict[str, str]] = None) -> dict[str, int]:
    """The ``{key: fd}`` map the starter exported, like Perl's ``server_ports()``."""
    env = os.environ if environ is None else environ
    value = env.get(ENV_PORT)
    if value is None:
        raise ServerStarterError(
            f"no environment variable {ENV_PORT}; was this process started by start_server?"
        )
    return parse_port_env(value)


def _wrap(key: str, fd: int) -> socket.socket:
    try:
        # Family and type come from the fd itself (Python >= 3.7 detects them).
        return socket.socket(fileno=fd)
    except OSError as exc:
        raise ServerStarterError(f"{ENV_PORT}: {key}={fd} is not a usable socket: {exc}") from None


def listen_from_env(
    key: Optional[str] = None, environ: Optional[dict[str, str]] = None
) -> list[socket.socket]:
    """Sockets for every item of ``SERVER_STARTER_PORT`` in its order, or for ``key``.

    Each socket owns its fd: closing it closes the inherited descriptor. If a
    later fd is unusable, the sockets already made are released (detached, so
    the fds stay as they were) before the error is raised.
    """
    ports = server_ports(environ)
    if key is not None:
        if key not in ports:
            raise ServerStarterError(
                f"{ENV_PORT} has no socket for {key!r} (it has: {', '.join(ports) or 'none'})"
            )
        ports = {key: ports[key]}
    made: list[socket.socket] = []
    try:
        for name, fd in ports.items():
            made.append(_wrap(name, fd))
    except ServerStarterError:
        for sock in made:
            sock.detach()
        raise
    return made


def notify(message: str, environ: Optional[dict[str, str]] = None) -> bool:
    """Send one sd_notify datagram (``READY=1``, ``STATUS=...``); False without a socket.

    A no-op without ``NOTIFY_SOCKET``, so an app can call it unconditionally.
    """
    env = os.environ if environ is None else environ
    path = env.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(path)
        sock.sendall(message.encode())
    return True


def notify_ready(status: Optional[str] = None) -> bool:
    """Tell the starter (or systemd) this process is ready to serve."""
    message = "READY=1" if status is None else f"READY=1\nSTATUS={status}"
    return notify(message)
