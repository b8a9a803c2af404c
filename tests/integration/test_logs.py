"""The log: starter lines stamped, worker output verbatim, --log-file rotation and pipes.

The worker here is a small script that writes one line to stdout and one to
stderr when it starts, on SIGUSR2 and on SIGTERM, so a test decides when
output happens and knows which generation wrote it.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Optional

import pytest
from support import PY, Harness, Proc, free_port, wait_until

CHATTY = '''\
import os, signal, sys
from start_server import listen_from_env

gen = os.environ["SERVER_STARTER_GENERATION"]
listening = listen_from_env()  # keep the inherited sockets open, like a server
count = 0

def say(what):
    sys.stdout.write(f"worker-out gen={gen} {what}\\n")
    sys.stdout.flush()
    sys.stderr.write(f"worker-err gen={gen} {what}\\n")
    sys.stderr.flush()

def usr2(*_):
    global count
    count += 1
    say(f"usr2-{count}")

def term(*_):
    say("term")
    sys.exit(0)

# A handler runs between bytecodes: a signal caught just before pause() would wait
# for the next one. Its wakeup byte ends the read() instead.
wake_r, wake_w = os.pipe()
os.set_blocking(wake_w, False)
signal.set_wakeup_fd(wake_w)
signal.signal(signal.SIGUSR2, usr2)
signal.signal(signal.SIGTERM, term)
say("start")
while True:
    os.read(wake_r, 512)
'''

# <UTC time> start_server[<pid>] (gen=N pid=P )message
STARTER_LINE = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z start_server\[(\d+)\] (gen=\d+ pid=\d+ )?\S"
)
WORKER_LINE = re.compile(r"^worker-(out|err) gen=\d+ \S+$")


@pytest.fixture
def chatty(run: Harness) -> str:
    path = run.tmp / "chatty.py"
    path.write_text(CHATTY)
    return str(path)


def text(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def has(path: Path, *patterns: str) -> bool:
    t = text(path)
    return all(re.search(p, t, re.M) for p in patterns)


def worker_pid(path: Path, gen: int) -> int:
    """Generation ``gen``'s worker once it is running and has said "start": its
    handlers are in place then (--interval can pass before, on a loaded machine)."""
    def up() -> Optional[re.Match[str]]:
        t = text(path)
        if not re.search(rf"^worker-out gen={gen} start$", t, re.M):
            return None
        return re.search(rf"gen={gen} pid=(\d+) new worker \d+ is now running", t)

    m = wait_until(up, timeout=20, what=f"generation {gen} in {path}")
    return int(m.group(1))


def start(run: Harness, chatty: str, log: str, *extra: str) -> Proc:
    return run.start(
        f"--port=127.0.0.1:{free_port()}", f"--log-file={log}", "--interval=0.2", *extra,
        "--", PY, chatty,
    )


def check_lines(t: str, starter_pid: int) -> None:
    """Every line is the starter's (stamped, with its pid) or a worker's, as written."""
    for line in t.splitlines():
        m = STARTER_LINE.match(line)
        if m:
            assert int(m.group(1)) == starter_pid, line
            if re.search(r"\bworker \d+\b", line) and "old workers:" not in line:
                assert m.group(2), f"a line about one worker without gen= pid=: {line}"
        else:
            assert WORKER_LINE.match(line), f"neither the starter's nor a worker's: {line!r}"


def test_starter_lines_are_stamped_and_worker_output_is_verbatim(
    run: Harness, chatty: str
) -> None:
    log = run.tmp / "log"
    s = start(run, chatty, str(log))
    worker_pid(log, 1)
    wait_until(lambda: has(log, r"^worker-out gen=1 start$", r"^worker-err gen=1 start$"),
               what="the worker's own lines in the log")
    s.signal(signal.SIGHUP)
    worker_pid(log, 2)
    wait_until(lambda: has(log, r"^worker-err gen=1 term$", r"old worker \d+ died"),
               what="generation 1 to go")
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    t = text(log)
    # The log tells the whole story: from the first line to the last.
    first = t.splitlines()[0]
    assert re.search(r"start_server\[\d+\] start_server \(pid:\d+\) starting now", first)
    assert re.search(r"listening on 127\.0\.0\.1:\d+ \(fd 3\)", t)
    assert t.rstrip("\n").endswith(" exiting")
    check_lines(t, s.pid)
    for line in ("worker-out gen=1 start", "worker-err gen=1 start", "worker-out gen=2 term"):
        assert line in t.splitlines()
    # The terminal got the lines from before the switch to the log file, stamped too.
    assert s.output.splitlines()[0] == t.splitlines()[0]
    assert all(STARTER_LINE.match(line) for line in s.output.splitlines())


def test_usr1_reopens_a_rotated_log_file(run: Harness, chatty: str) -> None:
    """logrotate's way: rename, USR1, restart. The starter and every generation started
    after the USR1 write to the new file; a generation started before it keeps the file
    it inherited (its stdout is its own) until it is replaced."""
    log, rotated = run.tmp / "log", run.tmp / "log.1"
    s = start(run, chatty, str(log))
    p1 = worker_pid(log, 1)

    log.rename(rotated)
    s.signal(signal.SIGUSR1)
    wait_until(lambda: has(log, r"received USR1: reopened log file"), what="the new log file")
    assert "received USR1" not in text(rotated)

    os.kill(p1, signal.SIGUSR2)  # a generation from before the rotation speaks
    wait_until(lambda: has(rotated, r"^worker-out gen=1 usr2-1$", r"^worker-err gen=1 usr2-1$"),
               what="generation 1's output in the file it inherited")
    assert "usr2-1" not in text(log)

    s.signal(signal.SIGHUP)  # the restart that moves the workers to the new file
    p2 = worker_pid(log, 2)
    wait_until(lambda: has(log, r"^worker-out gen=2 start$", rf"old worker {p1} died"),
               what="generation 2 in the new file")
    os.kill(p2, signal.SIGUSR2)
    wait_until(lambda: has(log, r"^worker-out gen=2 usr2-1$", r"^worker-err gen=2 usr2-1$"),
               what="generation 2's output in the new file")
    s.signal(signal.SIGTERM)
    assert s.wait() == 0

    new, old = text(log), text(rotated)
    assert "gen=2" not in old and "received HUP" not in old and "exiting" not in old
    assert "received HUP" in new and new.rstrip("\n").endswith(" exiting")
    assert "worker-err gen=1 term" in old  # generation 1's last words, in its own file
    check_lines(new, s.pid)
    check_lines(old, s.pid)


def test_usr1_reopen_fails_soft(run: Harness, chatty: str) -> None:
    """A log directory that went away: the starter says so and keeps the old file."""
    logdir = run.tmp / "logs"
    logdir.mkdir()
    log = logdir / "log"
    s = start(run, chatty, str(log))
    worker_pid(log, 1)
    moved = run.tmp / "logs.old"
    logdir.rename(moved)
    s.signal(signal.SIGUSR1)
    wait_until(lambda: has(moved / "log", r"received USR1: cannot reopen .*keeping the old one"),
               what="the refusal, in the old file")
    s.signal(signal.SIGHUP)
    worker_pid(moved / "log", 2)
    assert not logdir.exists()


def test_log_to_a_command(run: Harness, chatty: str) -> None:
    piped = run.tmp / "piped"
    s = start(run, chatty, f"| exec cat >> {piped}")
    p1 = worker_pid(piped, 1)
    wait_until(lambda: has(piped, r"^worker-err gen=1 start$"), what="worker output in the pipe")
    s.signal(signal.SIGUSR1)  # nothing to reopen; still logging
    wait_until(lambda: has(piped, r"received USR1: the log goes to a command"),
               what="the USR1 answer")
    os.kill(p1, signal.SIGUSR2)
    wait_until(lambda: has(piped, r"^worker-out gen=1 usr2-1$"), what="more worker output")
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    # The starter waits for the command to drain: its last line is there once it exited.
    t = text(piped)
    assert t.rstrip("\n").endswith(" exiting"), t
    check_lines(t, s.pid)
