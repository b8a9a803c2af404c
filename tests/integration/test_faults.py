"""No silent death: faults of the environment are logged and the starter keeps
serving; a programming error is logged with its traceback, the generations are
stopped, and the starter exits 70."""

from __future__ import annotations

import re
import shutil
import signal
from pathlib import Path

import pytest
from support import APP, PY, Harness, Proc, free_port, gone, http_get, read_status, wait_until


def _hup_serves(s: Proc, port: int, status: Path, generation: int) -> None:
    """A HUP still leads to a new generation that serves (seen in the status
    file and on the port, since the log may be lost)."""
    s.signal(signal.SIGHUP)
    wait_until(lambda: [g for g, _ in read_status(status)] == [generation], timeout=20,
               what=f"generation {generation} alone in the status file")
    wait_until(lambda: http_get(port).startswith(f"gen={generation} "),
               what=f"generation {generation} serving")


def _stops_cleanly(s: Proc) -> None:
    s.signal(signal.SIGTERM)
    assert s.wait() == 0, s.output
    assert "Traceback" not in s.output


def test_status_directory_removed_mid_run(run: Harness) -> None:
    port = free_port()
    where = run.tmp / "run"
    where.mkdir()
    status = where / "status"
    s = run.start(f"--port=127.0.0.1:{port}", f"--status-file={status}", "--interval=0.1",
                  "--", PY, APP)
    s.wait_line(r"gen=1 .*is now running")
    wait_until(lambda: read_status(status), what="the status file")
    shutil.rmtree(where)
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(r"cannot write status file", start=mark)
    s.wait_line(r"gen=2 .*is now running", start=mark)
    wait_until(lambda: http_get(port).startswith("gen=2 "), what="generation 2 serving")
    where.mkdir()  # back: the next change is written again
    _hup_serves(s, port, status, 3)
    _stops_cleanly(s)


@pytest.mark.parametrize("target", ["| head -c 100", "/dev/full"], ids=["pipe-closed", "dev-full"])
def test_a_log_target_that_refuses_writes(run: Harness, target: str) -> None:
    port = free_port()
    status = run.tmp / "status"
    s = run.start(f"--port=127.0.0.1:{port}", f"--status-file={status}", "--interval=0.1",
                  f"--log-file={target}", "--", PY, APP)
    wait_until(lambda: [g for g, _ in read_status(status)] == [1], what="generation 1")
    for generation in (2, 3):  # writes go on failing (the pipe's reader is gone)
        _hup_serves(s, port, status, generation)
    _stops_cleanly(s)


def test_a_low_open_files_limit(run: Harness) -> None:
    port = free_port()
    status = run.tmp / "status"
    pid_file = run.tmp / "pid"
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--status-file={status}", f"--pid-file={pid_file}",
        "--interval=0.1", "--max-memory=1G", "--memory-check-interval=0.05", "--", PY, APP,
        argv0=["sh", "-c", 'ulimit -n 32 && exec "$0" "$@"', PY, "-m", "start_server"],
    )
    s.wait_line(r"gen=1 .*is now running")
    for generation in (2, 3):
        _hup_serves(s, port, status, generation)
    limits = Path(f"/proc/{s.pid}/limits").read_text()
    assert any(line.startswith("Max open files") and line.split()[3] == "32"
               for line in limits.splitlines()), limits
    _stops_cleanly(s)


def test_an_upstream_notify_socket_that_is_gone(run: Harness) -> None:
    port = free_port()
    status = run.tmp / "status"
    s = run.start(f"--port=127.0.0.1:{port}", f"--status-file={status}", "--interval=0.1",
                  "--", PY, APP, env={"NOTIFY_SOCKET": str(run.tmp / "no-such-socket")})
    s.wait_line(r"cannot notify")
    _hup_serves(s, port, status, 2)
    _stops_cleanly(s)


# A programming error, put in for the test: the starter is run in-process
# (main with an argument list: no lean re-exec) with a core method replaced.
BREAK_CORE = """
import sys
from start_server import core
from start_server.cli import main

original = core.Supervisor._on_signal

def broken(self, signum, now):
    if signum in WHEN:
        raise ZeroDivisionError("a bug in the core")
    return original(self, signum, now)

core.Supervisor._on_signal = broken
main(sys.argv[1:])
"""


@pytest.mark.parametrize(
    ("when", "how"),
    [("(signal.SIGHUP,)", "through the core"), ("range(99)", "directly")],
    ids=["core-stops-them", "core-broken-too"],
)
def test_a_programming_error_stops_the_generations_and_exits_70(
    run: Harness, when: str, how: str
) -> None:
    port = free_port()
    log = run.tmp / "log"
    pid_file = run.tmp / "pid"
    status = run.tmp / "status"
    code = f"import signal\nWHEN = {when}\n" + BREAK_CORE
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--log-file={log}", f"--pid-file={pid_file}",
        f"--status-file={status}", "--interval=0.1", "--", PY, APP,
        argv0=[PY, "-c", code],
    )
    running = r"gen=1 pid=(\d+) new worker \d+ is now running"
    found = wait_until(lambda: re.search(running, log.read_text()), what="generation 1")
    worker = int(found.group(1))
    s.signal(signal.SIGHUP)
    assert s.wait(timeout=30) == 70
    text = log.read_text()
    assert "unexpected error; stopping the generations" in text
    assert "ZeroDivisionError: a bug in the core" in text
    assert "Traceback (most recent call last):" in text
    if how == "directly":
        assert "unexpected error while stopping; stopping every child directly" in text
    else:
        assert "exiting" in text
    assert gone(worker)
    assert not pid_file.exists() and not status.exists()


@pytest.mark.parametrize("closed", [">&-", "<&- >&- 2>&-"])
def test_started_with_standard_fds_closed(run: Harness, closed: str) -> None:
    """With fd 1 closed the socket took fd 1, and the log, put on fds 1 and 2,
    closed it: every generation failed ('not a usable socket'), forever."""
    port = free_port()
    log = run.tmp / "log"
    argv0 = ["sh", "-c", f'exec "$0" -m start_server "$@" {closed}', PY]
    s = run.start(f"--port=127.0.0.1:{port}", f"--log-file={log}", "--", PY, APP, argv0=argv0)
    wait_until(lambda: http_get(port).startswith("gen=1 "), timeout=20, what="generation 1")
    assert f"listening on 127.0.0.1:{port} (fd 3)" in log.read_text()
    _hup_serves_on_the_port(s, port, 2)
    _stops_cleanly(s)
    assert "Traceback" not in log.read_text()


def _hup_serves_on_the_port(s: Proc, port: int, generation: int) -> None:
    s.signal(signal.SIGHUP)
    wait_until(lambda: http_get(port).startswith(f"gen={generation} "), timeout=20,
               what=f"generation {generation} serving")
