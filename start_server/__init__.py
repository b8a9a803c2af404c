"""start_server: a superdaemon for zero-downtime hot deploys of any server program.

This module is the app-facing API, from :mod:`start_server.listener` (and
``serve_http`` from :mod:`start_server.serving`), loaded on first use: a server
importing it pays for that module alone, and the starter and its clients
(``start_server --restart`` on every deploy) for nothing.
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
    from .serving import serve_http

__all__ = [
    "ServerStarterError",
    "__version__",
    "listen_from_env",
    "notify",
    "notify_ready",
    "parse_port_env",
    "serve_http",
    "server_ports",
]


def __getattr__(name: str) -> object:
    if name == "serve_http":  # its own module: apps that only take a socket never load it
        from . import serving

        return serving.serve_http
    if name in __all__:
        from . import listener

        return getattr(listener, name)
    raise AttributeError(f"module 'start_server' has no attribute {name!r}")
