"""``--daemonize`` with every signal the starter handles, to a log file and to a
log command: the daemon keeps its log, and a signal does what it does in the
foreground (once, a USR1 closed the daemon's epoll fd: python-daemon had closed
the log target's fd, whose number the selector then reused)."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Optional

import pytest
from support import APP, PY, Harness, daemon_guard, free_port, gone, http_get, wait_until


def _log_target(tmp: Path, kind: str) -> tuple[str, Path]:
    """The --log-file value, and the file where the lines end up."""
    log = tmp / "log"
    if kind == "file":
        return str(log), log
    # exec, its own output to the file: as in the original, a log command
    # inherits the foreground's stdout and stderr, which would keep the test's
    # pipes open after the foreground has exited.
    return f"| exec cat >> {log} 2>&1", log


def _line(log: Path, pattern: str, after: int = 0) -> re.Match[str]:
    def find() -> Optional[re.Match[str]]:
        return re.search(pattern, log.read_text()[after:], re.M)

    return wait_until(find, timeout=20, what=f"{pattern!r} in the log")


@pytest.mark.parametrize("kind", ["file", "command"])
@pytest.mark.parametrize("signum", ["HUP", "USR1", "TERM", "INT", "QUIT"])
def test_daemonized_starter_handles_each_signal(run: Harness, kind: str, signum: str) -> None:
    port = free_port()
    pid_file = run.tmp / "pid"
    status = run.tmp / "status"
    target, log = _log_target(run.tmp, kind)
    with daemon_guard(pid_file):
        fg = run.run(
            "--daemonize", f"--log-file={target}", f"--pid-file={pid_file}",
            f"--status-file={status}", f"--port=127.0.0.1:{port}", "--interval=0.2",
            "--", PY, APP, timeout=20,
        )
        assert fg.returncode == 0, fg
        daemon = wait_until(lambda: pid_file.read_text().endswith("\n")
                            and int(pid_file.read_text()), what="the pid file")
        p1 = int(_line(log, r"gen=1 pid=(\d+) new worker \d+ is now running").group(1))
        assert http_get(port) == f"gen=1 pid={p1}\n"

        mark = len(log.read_text())
        os.kill(daemon, getattr(signal, "SIG" + signum))
        if signum in ("TERM", "INT", "QUIT"):
            wait_until(lambda: gone(daemon), timeout=20, what="the daemon to exit")
            text = log.read_text()
            assert f"received {signum}" in text
            assert "exiting" in text[mark:]
            assert "Traceback" not in text
            assert gone(p1)
            assert not pid_file.exists() and not status.exists()
            return
        if signum == "USR1":
            said = "reopened log file" if kind == "file" else "nothing to reopen"
            _line(log, f"received USR1: .*{said}", mark)
            mark = len(log.read_text())
        # Still supervising: a HUP starts generation 2, which serves.
        os.kill(daemon, signal.SIGHUP)
        p2 = int(_line(log, r"gen=2 pid=(\d+) new worker \d+ is now running", mark).group(1))
        wait_until(lambda: http_get(port) == f"gen=2 pid={p2}\n", what="generation 2 serving")
        assert not gone(daemon)
        assert "Traceback" not in log.read_text()
        os.kill(daemon, signal.SIGTERM)
        wait_until(lambda: gone(daemon), timeout=20, what="the daemon to exit")
        assert not pid_file.exists()
