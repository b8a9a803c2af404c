"""Paths, the run's token, errors, log lines, waits, environments, ports and one GET."""

from __future__ import annotations

import os
import random
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Optional, TypeVar

BENCH = Path(__file__).resolve().parent.parent
APP = str(BENCH / "app.py")
LUA = str(BENCH / "report.lua")
PERL_STARTER = "/usr/bin/start_server"
PY = sys.executable
TOKEN_VAR = "START_SERVER_BENCH_TOKEN"
TOKEN = uuid.uuid4().hex
SETTINGS: dict[str, Optional[str]] = {"pycache": None}  # main(): this run's .pyc cache
READY_DELAY = 0.1  # "an app that becomes ready 100 ms after exec"

T = TypeVar("T")


class BenchError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def wait_for(
    predicate: Callable[[], Optional[T]], timeout: float, what: str, step: float = 0.005
) -> T:
    """Poll ``predicate`` until truthy; BenchError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Optional[BaseException] = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ValueError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what} ({last!r})")
        time.sleep(step)


_used_ports: set[int] = set()


def free_port() -> int:
    """A free loopback TCP port below the ephemeral range (no clash with wrk's clients)."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        if port in _used_ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _used_ports.add(port)
        return port
    raise BenchError("no free loopback port found")


def http_get(port: int, timeout: float = 5.0) -> tuple[int, dict[str, str]]:
    """One GET; (status, {"gen": .., "pid": ..}) from the app's body.

    Reads up to Content-Length, then closes: the app waits for its client to
    close first.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while True:
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if m and len(body) >= int(m.group(1)):
                    break
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.decode("latin-1").split(" ", 2)
    status = int(parts[1]) if head.startswith(b"HTTP/") and len(parts) > 1 else 0
    text = body.decode("latin-1")
    fields = dict(item.split("=", 1) for item in text.split() if "=" in item)
    return status, fields


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # Nothing of the caller's own supervision or starter tuning leaks into the runs.
    for name in (
        "NOTIFY_SOCKET",
        "ENVDIR",
        "ENABLE_AUTO_RESTART",
        "AUTO_RESTART_INTERVAL",
        "KILL_OLD_DELAY",
        "SERVER_STARTER_PORT",
        "SERVER_STARTER_GENERATION",
    ):
        env.pop(name, None)
    env["PATH"] = str(Path(PY).parent) + os.pathsep + env.get("PATH", "")
    if SETTINGS["pycache"] is not None:
        # A deployed package has its .pyc files; an editable install under
        # PYTHONDONTWRITEBYTECODE=1 would recompile ours at every start.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = SETTINGS["pycache"]
    env.update(extra)
    return env


def ours_command() -> list[str]:
    """Our console script, next to this interpreter (never /usr/bin/start_server)."""
    script = Path(PY).parent / "start_server"
    if script.exists():
        return [str(script)]
    return [PY, "-m", "start_server"]


OURS = ours_command()


def timed_run(cmd: list[str], timeout: float) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.monotonic()
    r = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=base_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return time.monotonic() - t0, r
