"""``--status --watch``: the live view, as lines into a pipe and as a table on a terminal."""

from __future__ import annotations

import fcntl
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import termios
import threading
import time

import pytest
from support import APP, PY, Harness, free_port, wakeups

# In the new session: the terminal on stdin becomes its controlling terminal
# (Ctrl-C there is a SIGINT to it), then the watch itself.
TAKE_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, '-m', 'start_server', *sys.argv[1:]])"
)
STAMP = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "


def _start(run: Harness, *extra: str) -> tuple[str, str]:
    """A starter of the test app; returns its --pid-file and --status-file options."""
    files = (f"--pid-file={run.tmp / 'pid'}", f"--status-file={run.tmp / 'status'}")
    s = run.start(f"--port=127.0.0.1:{free_port()}", *files, *extra, "--", PY, APP)
    s.wait_line(r"gen=1 .*is now running", timeout=20)
    return files


def _line_at(w_lines: list[str], pattern: str, start: int = 0) -> int:
    rx = re.compile(STAMP + pattern)
    for i in range(start, len(w_lines)):
        if rx.search(w_lines[i]):
            return i
    return -1


def test_lines_into_a_pipe_see_a_restart_then_the_starter_going(run: Harness) -> None:
    files = _start(run)
    starter = run.procs[0]
    w = run.start("--status", "--watch", *files)
    first = w.wait_line(STAMP + r"generation 1 worker 0 pid (\d+): active$", timeout=20)
    old = first.group(1)
    # The watch sleeps until something changes (an observation window of 1 s:
    # a poll of even 10 per second would show as many wake-ups).
    before = wakeups(w.pid)
    time.sleep(1.0)
    assert wakeups(w.pid) - before <= 3
    mark = w.mark()
    starter.signal(signal.SIGHUP)
    w.wait_line(STAMP + rf"generation 1 worker 0 pid {old}: gone$", timeout=20, start=mark)
    lines = w.lines[mark:]
    starting = _line_at(lines, r"generation 2 worker 0 pid (\d+): starting$")
    active = _line_at(lines, r"generation 2 worker 0 pid \d+: active$", starting + 1)
    retiring = _line_at(lines, rf"generation 1 worker 0 pid {old}: retiring$")
    gone = _line_at(lines, rf"generation 1 worker 0 pid {old}: gone$")
    assert 0 <= starting < active <= gone and starting < retiring < gone, lines
    # The starter going away ends the watch: one line, exit 1.
    starter.signal(signal.SIGTERM)
    assert w.wait(timeout=20) == 1
    assert re.search(rf"^start_server: start_server \(pid {starter.pid}\) exited$",
                     w.output, re.M), w.output


def test_a_storm_of_terms_ends_the_watch_without_a_traceback(run: Harness) -> None:
    """timeout(1) sends TERM to the command, then to its group: the second one
    came while the watch was on its way out and raised from its cleanup."""
    files = _start(run)
    w = run.start("--status", "--watch", *files)
    w.wait_line(STAMP + r"generation 1 worker 0 pid \d+: active$", timeout=20)
    deadline = time.monotonic() + 20
    while w.proc.poll() is None and time.monotonic() < deadline:
        w.signal(signal.SIGTERM)
        time.sleep(0.001)  # pacing, not a wait: a TERM every millisecond until it is gone
    assert w.wait(timeout=20) == 0, w.output
    assert "Traceback" not in w.output, w.output


def test_json_lines_with_a_slots_restarts(run: Harness) -> None:
    files = _start(run, "--workers=2")
    w = run.start("--status", "--watch", "--json", *files)
    victim = w.wait_line(r'"pid": (\d+), "ready": \w+, "restarts": 0, [^}]*"worker": 1\}',
                         timeout=20).group(1)
    os.kill(int(victim), signal.SIGKILL)
    line = w.wait_line(r'"restarts": 1, .*"state": "active", "status": "", "worker": 1\}',
                       timeout=20).string
    assert '"last_event": "worker' in line, line
    assert "updated_at" not in line
    w.signal(signal.SIGTERM)
    assert w.wait(timeout=20) == 0


class _Terminal:
    """A pseudo-terminal whose other end is a watch's controlling terminal."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        fcntl.ioctl(self.slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        self.data = b""
        self._lock = threading.Lock()

    def spawn(self, run: Harness, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [PY, "-c", TAKE_TERMINAL, *args], env=run.env(), cwd=str(run.tmp),
            stdin=self.slave, stdout=self.slave, stderr=self.slave, start_new_session=True,
        )

    def read_until(self, what: bytes, timeout: float = 20.0, count: int = 1) -> bytes:
        """Read until ``what`` was written ``count`` times in all."""
        deadline = time.monotonic() + timeout
        while self.data.count(what) < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no {what!r} on the terminal: {self.data!r}"
            if select.select([self.master], [], [], remaining)[0]:
                try:
                    self.data += os.read(self.master, 65536)
                except OSError:  # EIO: no process has the terminal open any more
                    break
        return self.data

    def close(self) -> None:
        os.close(self.master)
        os.close(self.slave)


@pytest.mark.parametrize("key", [b"q", b"\x03", b""], ids=["q", "ctrl-c", "starter-exits"])
def test_a_terminal_shows_the_table_and_is_restored(run: Harness, key: bytes) -> None:
    """Left with q or Ctrl-C (0), or ended by the starter's exit (1): the terminal
    is as it was before, its screen and cursor back."""
    files = _start(run)
    term = _Terminal()
    before = termios.tcgetattr(term.slave)
    try:
        w = term.spawn(run, "--status", "--watch", *files)
        try:
            screen = term.read_until(b"q or Ctrl-C: leave")
            assert b"\x1b[?1049h" in screen  # the alternate screen
            assert re.search(rb"GEN +WORKER +PID +STATE +READY +UPTIME +MEMORY +FDS +RESTARTS",
                             screen), screen
            assert re.search(rb"\n1 +0 +\d+ +active +- +\d+s +[\d.]+M +- +0", screen), screen
            assert b"last event" in screen
            # cbreak: keys one at a time, no echo; Ctrl-C still a signal.
            lflag = termios.tcgetattr(term.slave)[3]
            assert not lflag & (termios.ICANON | termios.ECHO) and lflag & termios.ISIG
            # The uptime moves: the screen is redrawn, with nothing else changing.
            redraws = term.data.count(b"\x1b[H")
            term.read_until(b"\x1b[H", timeout=10, count=redraws + 1)
            if key:
                os.write(term.master, key)
                assert w.wait(timeout=20) == 0
            else:
                run.procs[0].signal(signal.SIGTERM)
                assert w.wait(timeout=20) == 1
                term.read_until(b"exited\r\n", timeout=5)
                assert term.data.endswith(
                    b"\x1b[?25h\x1b[?1049l"
                    + f"start_server: start_server (pid {run.procs[0].pid}) exited\r\n".encode()
                ), term.data[-200:]
        finally:
            if w.poll() is None:
                w.kill()
                w.wait()
        term.read_until(b"\x1b[?1049l", timeout=5)
        if key:
            assert term.data.endswith(b"\x1b[?25h\x1b[?1049l"), term.data[-200:]
        assert termios.tcgetattr(term.slave) == before
    finally:
        term.close()


def test_the_status_directory_removed_and_made_anew(run: Harness) -> None:
    """A status directory removed under the starter (a tmp cleaner) made the
    watch say the worker was gone, and, made anew, it saw no change ever again."""
    where = run.tmp / "run"
    where.mkdir()
    files = (f"--pid-file={run.tmp / 'pid'}", f"--status-file={where / 'status'}")
    s = run.start(f"--port=127.0.0.1:{free_port()}", *files, "--", PY, APP)
    s.wait_line(r"gen=1 .*is now running", timeout=20)
    w = run.start("--status", "--watch", *files)
    w.wait_line(STAMP + r"generation 1 worker 0 pid \d+: active$", timeout=20)
    shutil.rmtree(where)
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(r"gen=1 .*old worker .* died", timeout=20, start=mark)
    where.mkdir()
    s.signal(signal.SIGHUP)
    w.wait_line(STAMP + r"generation 3 worker 0 pid \d+: active$", timeout=20)
    # Generation 1 is gone only once the status file is back and without it.
    assert _line_at(w.lines, r"generation 1 worker 0 pid \d+: gone$") > _line_at(
        w.lines, r"generation 3 worker 0 pid \d+: starting$"), w.output
    mark = w.mark()
    s.signal(signal.SIGHUP)  # and the directory made anew is watched from now on
    w.wait_line(STAMP + r"generation 4 worker 0 pid \d+: active$", timeout=20, start=mark)
