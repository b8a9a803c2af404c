"""start_server: a superdaemon for zero-downtime hot deploys of any server program.

This module is the app-facing API. It imports only :mod:`start_server.listener`
so that a server importing it pays for nothing else.
"""

from __future__ import annotations

from .listener import (
    ServerStarterError,
    listen_from_env,
    notify,
    notify_ready,
    parse_port_env,
    server_ports,
)

__version__ = "0.1.0"

__all__ = [
    "ServerStarterError",
    "__version__",
    "listen_from_env",
    "notify",
    "notify_ready",
    "parse_port_env",
    "server_ports",
]
