"""Real servers under start_server: serve, survive restarts under load, stop cleanly.

Each server inherits the listening socket from the starter (placed on fd 3 with
``--port=HOST:PORT=3`` so that the command line can name it), answers with the
generation that served it, and is hot-restarted (HUP) three times in a row
while eight client threads keep sending requests. Every request uses a new
connection: zero downtime is a promise about the listening socket (no
connection refused, none dropped by a generation that retires), not about an
idle keep-alive connection, which any server may close at any time. Then TERM:
the starter exits 0 and nothing of the test is left running.

Readiness: a generation is "started" when it says READY=1 (``--wait-ready``:
gunicorn's arbiter does so natively, after ``--preload`` imported the app; the
stdlib example and the aiohttp app call ``notify_ready()``), else when it is
alive after ``--interval`` seconds, set well above the server's start-up time
on a loaded 2-core machine (uvicorn answered within 1 s, hypercorn within
1.6 s, Starlet within 0.4 s under this load).

Known limitation, checked precisely rather than hidden: uvicorn, hypercorn and
aiohttp close, at graceful shutdown, connections they accepted but whose
request they have not read yet. Under continuous load a retiring generation may
so drop a few connections per restart (uvicorn#2757, aio-libs/aiohttp#2298).
For these servers the test allows only that failure (a connection reset or
closed before any response, at most one per client per restart) and reports it
as an expected failure (XFAIL, with the count); every other check still applies.

The servers are test extras (``pip install .[test]``; Debian package
``starlet`` for Starlet), never runtime dependencies.
"""

from __future__ import annotations

import importlib.metadata
import re
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest
from support import (
    APPS,
    HELLO,
    PY,
    ClientLoad,
    Harness,
    Proc,
    free_port,
    http_get,
    wait_until,
)

SERVERS = APPS / "servers"
HELLO_APP = str(Path(__file__).resolve().parents[2] / "examples" / "hello_app.py")
FD = 3  # where the starter places the socket: the server command names it
CLIENTS = 8
RESTARTS = 3
STEP_TIMEOUT = 30.0  # one restart under load on a slow 2-core box, generously


def _version(dist: str) -> tuple[int, ...]:
    try:
        text = importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return ()
    return tuple(int(part) for part in re.findall(r"\d+", text)[:2])


# gunicorn >= 25.1 opens a control socket at one fixed path ($XDG_RUNTIME_DIR/gunicorn.ctl):
# two overlapping generations would share it, and the retiring one unlinks it.
NO_CONTROL_SOCKET = ("--no-control-socket",) if _version("gunicorn") >= (25, 1) else ()
# --preload imports the app in the arbiter, before it sends READY=1: the workers it
# forks next accept at once, so READY=1 means "about to accept", not "still importing".
GUNICORN = (PY, "-m", "gunicorn", f"--bind=fd://{FD}", "--workers=2", "--preload",
            *NO_CONTROL_SOCKET)
DROPS_UNREAD = "drops connections it accepted during its shutdown without reading them"


@dataclass(frozen=True)
class Server:
    """How to run one server under start_server, and what it is known to get wrong."""

    starter_args: tuple[str, ...]  # readiness: --wait-ready or --interval
    command: tuple[str, ...]
    known_drop: Optional[str] = None  # the upstream race that may drop a connection


SERVER_CASES = {
    "gunicorn-sync": Server(
        ("--wait-ready",), (*GUNICORN, "--worker-class=sync", "wsgi_app:app")
    ),
    "gunicorn-gthread": Server(
        ("--wait-ready",), (*GUNICORN, "--worker-class=gthread", "--threads=4", "wsgi_app:app")
    ),
    "uvicorn": Server(
        ("--interval=2",),
        (PY, "-m", "uvicorn", f"--fd={FD}", "--no-access-log", "asgi_app:app"),
        f"uvicorn {DROPS_UNREAD} (Kludex/uvicorn#2757)",
    ),
    # hypercorn starts its worker with multiprocessing "spawn": two interpreter start-ups.
    "hypercorn": Server(
        ("--interval=3",),
        (PY, "-m", "hypercorn", f"--bind=fd://{FD}", "asgi_app:app"),
        f"hypercorn {DROPS_UNREAD} (same race as Kludex/uvicorn#2757)",
    ),
    "aiohttp": Server(
        ("--wait-ready",),
        (PY, "aiohttp_app.py"),
        f"aiohttp {DROPS_UNREAD} (aio-libs/aiohttp#2298)",
    ),
    "stdlib-example": Server(("--wait-ready",), (PY, HELLO_APP)),
    # Starlet reads SERVER_STARTER_PORT itself (Server::Starter::server_ports); TERM is
    # its graceful signal (workers finish the connection in hand), so no --signal-on-hup.
    "starlet": Server(
        ("--interval=1",),
        ("plackup", "-E", "deployment", "-s", "Starlet", "--max-workers=2", "app.psgi"),
    ),
}


def restart(s: Proc, load: ClientLoad, new_gen: int) -> None:
    """HUP; wait until ``new_gen`` runs, its predecessor has exited, and it answers."""
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(rf"gen={new_gen} .*is now running", timeout=STEP_TIMEOUT, start=mark)
    s.wait_line(rf"gen={new_gen - 1} .*old worker \d+ died", timeout=STEP_TIMEOUT, start=mark)
    wait_until(lambda: new_gen in load.generations(), timeout=STEP_TIMEOUT,
               what=f"generation {new_gen} to answer")


@pytest.mark.timeout(90)
@pytest.mark.parametrize("name", list(SERVER_CASES))
def test_real_server_survives_restarts_under_load(run: Harness, name: str) -> None:
    server = SERVER_CASES[name]
    port = free_port()
    s = run.start(
        f"--port=127.0.0.1:{port}={FD}",
        *server.starter_args,
        "--",
        *server.command,
        env={"PYTHONDONTWRITEBYTECODE": "1"},
        cwd=str(SERVERS),
    )
    s.wait_line(r"gen=1 .*is now running", timeout=STEP_TIMEOUT)
    body = wait_until(lambda: http_get(port), timeout=STEP_TIMEOUT, what=f"{name} to answer")
    m = HELLO.match(body.strip())
    assert m and m.group(1) == "1", body

    with ClientLoad(port, CLIENTS, timeout=15) as load:
        for gen in range(2, RESTARTS + 2):
            restart(s, load, gen)

    assert not load.other, f"{len(load.other)} failed requests, e.g. {load.other[:5]}"
    assert load.generations() == set(range(1, RESTARTS + 2)), dict(load.answered)

    s.signal(signal.SIGTERM)
    assert s.wait(STEP_TIMEOUT) == 0, s.output
    s.wait_line(r"start_server\[\d+\] exiting$")
    wait_until(lambda: not run.leftovers(), timeout=10, what=f"{name} processes to exit")

    total = sum(load.answered.values()) + len(load.dropped)
    if server.known_drop is None:
        assert not load.dropped, f"{len(load.dropped)} dropped requests, e.g. {load.dropped[:5]}"
    elif load.dropped:
        # Each client has one connection at a time: a retiring generation can drop at most
        # one per client. More would be a different bug.
        assert len(load.dropped) <= CLIENTS * RESTARTS, load.dropped
        pytest.xfail(f"{len(load.dropped)} of {total} requests dropped: {server.known_drop}")
