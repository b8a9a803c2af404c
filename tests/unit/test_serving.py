"""serve_http is loaded only when used, and loads nothing of the starter's."""

from __future__ import annotations

import ast
import subprocess
import sys


def test_serve_http_is_lazy_and_lean() -> None:
    code = (
        "import sys\n"
        "import start_server\n"
        "before = sorted(m for m in sys.modules if m.startswith('start_server'))\n"
        "start_server.serve_http\n"
        "after = sorted(m for m in sys.modules if m.split('.')[0] in\n"
        "    ('start_server', 'click', 'yaml', 'daemon'))\n"
        "print([before, after])\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    before, after = ast.literal_eval(r.stdout)
    assert before == ["start_server"]
    assert after == ["start_server", "start_server.listener", "start_server.serving"]


def _serve_with(port_env: str, *socks: str) -> subprocess.CompletedProcess[str]:
    """serve_http in a child whose SERVER_STARTER_PORT is ``port_env`` and whose
    fds 20, 21, ... are sockets of the given kinds (``tcp``, ``udp``)."""
    code = (
        "import socket, os, sys\n"
        f"for i, kind in enumerate({list(socks)!r}):\n"
        "    s = socket.socket(type=socket.SOCK_STREAM if kind == 'tcp' else socket.SOCK_DGRAM)\n"
        "    os.dup2(s.fileno(), 20 + i); s.close()\n"
        "from http.server import BaseHTTPRequestHandler\n"
        "from start_server import serve_http, ServerStarterError\n"
        "try:\n"
        "    serve_http(BaseHTTPRequestHandler)\n"
        "except ServerStarterError as exc:\n"
        "    print(exc)\n"
    )
    env = {"SERVER_STARTER_PORT": port_env, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, env=env,
        check=False,
    )


def test_serve_http_needs_a_socket() -> None:
    r = _serve_with("")
    assert r.stdout == "SERVER_STARTER_PORT names no socket: nothing to serve on\n", r.stderr


def test_serve_http_refuses_a_udp_socket() -> None:
    r = _serve_with("u5353=20", "udp")
    assert r.stdout == (
        "SERVER_STARTER_PORT: the first socket is not a stream socket: no HTTP on it\n"
    ), r.stderr
