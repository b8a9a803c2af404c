"""Telling the service manager that started us (its NOTIFY_SOCKET) how we are."""

from __future__ import annotations

import socket

from .log import log


def notify_socket(address: str, message: str) -> None:
    """Send one sd_notify datagram to ``address`` (``@`` = abstract namespace)."""
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.send(message.encode())
        except OSError as exc:
            log(f"cannot notify {address!r}: {exc.strerror}")
