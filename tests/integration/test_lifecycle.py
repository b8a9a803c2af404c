"""The basic life of a starter: start, serve, HUP swap, TERM, nothing left."""

from __future__ import annotations

import signal
import time

import pytest
from support import (
    APP,
    PY,
    Harness,
    free_port,
    gen_of,
    http_get,
    read_status,
    wait_until,
    wakeups,
)


def test_start_hup_term(run: Harness) -> None:
    port = free_port()
    status = run.tmp / "status"
    pid_file = run.tmp / "pid"
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--status-file={status}", f"--pid-file={pid_file}",
        "--interval=0.2", "--", PY, APP,
    )
    s.wait_line(r"gen=1 .*is now running")
    assert gen_of(http_get(port)) == 1
    assert [g for g, _ in read_status(status)] == [1]
    assert pid_file.read_text() == f"{s.pid}\n"

    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(r"old worker \d+ died", start=mark)
    wait_until(lambda: [g for g, _ in read_status(status)] == [2], what="status 2 only")
    assert gen_of(http_get(port)) == 2

    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    assert "exiting" in s.output
    assert not status.exists()
    assert not pid_file.exists()


def _asleep_in_epoll(pid: int) -> bool:
    with open(f"/proc/{pid}/wchan") as fh:
        wchan = fh.read()
    if wchan not in ("", "0"):
        return wchan == "do_epoll_wait"
    # The kernel hides wchan here: sleeping, and no switch for a while, will do.
    with open(f"/proc/{pid}/stat") as fh:
        sleeping = fh.read().rsplit(")", 1)[1].split()[0] == "S"
    before = wakeups(pid)
    time.sleep(0.2)
    return sleeping and wakeups(pid) == before


@pytest.mark.parametrize("auto_restart", [False, True])
def test_an_idle_starter_never_wakes_up(run: Harness, auto_restart: bool) -> None:
    """The loop sleeps until a signal, a child exit, a readable fd or a due timer."""
    port = free_port()
    status = run.tmp / "status"
    extra = ["--enable-auto-restart", "--auto-restart-interval=3600"] if auto_restart else []
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--status-file={status}", "--wait-ready", *extra,
        "--", PY, APP, "--notify",
    )
    s.wait_line(r"gen=1 .*is now running")
    wait_until(lambda: len(read_status(status)) == 1, what="status")
    wait_until(lambda: _asleep_in_epoll(s.pid), what="the starter asleep in epoll_wait")
    before = wakeups(s.pid)
    time.sleep(1.5)  # the observation window, not a wait for something to settle
    assert wakeups(s.pid) == before
    assert gen_of(http_get(port)) == 1  # and it was alive all along
