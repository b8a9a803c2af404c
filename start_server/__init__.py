"""start_server: a superdaemon for zero-downtime hot deploys of any server program.

This module is the app-facing API, from :mod:`start_server.listener`, loaded
on first use: a server importing it pays for that module alone, and the
starter and its clients (``start_server --restart`` on every deploy) for
nothing.
"""

from __future__ import annotations

__version__ = "0.1.0"

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .listener import (
        ServerStarterError,
        listen_from_env,
        notify,
        notify_ready,
        parse_port_env,
        server_ports,
    )

__all__ = [
    "ServerStarterError",
    "__version__",
    "listen_from_env",
    "notify",
    "notify_ready",
    "parse_port_env",
    "server_ports",
]


def __getattr__(name: str) -> object:
    if name in __all__:
        from . import listener

        return getattr(listener, name)
    raise AttributeError(f"module 'start_server' has no attribute {name!r}")
