"""A tiny aiohttp server on the socket start_server passed down.

    start_server --port=127.0.0.1:8080 --wait-ready -- python3 aiohttp_app.py

``notify_ready()`` in ``on_startup`` tells the starter (with ``--wait-ready``)
that this generation is about to serve: aiohttp starts the site right after the
startup hooks, and the inherited socket already queues connections meanwhile.
``handle_signals=True`` (run_app's default) makes SIGTERM a graceful exit: the
site stops accepting, requests in flight finish (up to ``shutdown_timeout``),
then the process exits; the listening socket stays open in start_server.
"""

from __future__ import annotations

import os

from aiohttp import web

from start_server import listen_from_env, notify_ready


async def hello(request: web.Request) -> web.Response:
    return web.Response(
        text=(
            f"hello from generation {os.environ.get('SERVER_STARTER_GENERATION', '?')} "
            f"pid {os.getpid()}\n"
        )
    )


async def ready(app: web.Application) -> None:
    notify_ready()  # a no-op without NOTIFY_SOCKET


def main() -> None:
    app = web.Application()
    app.router.add_get("/", hello)
    app.on_startup.append(ready)
    web.run_app(
        app, sock=listen_from_env()[0], handle_signals=True, print=None, access_log=None
    )


if __name__ == "__main__":
    main()
