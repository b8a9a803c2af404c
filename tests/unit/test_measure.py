"""procfs.measure on real processes: one pass over /proc per health check.

The processes are ``sleep`` (and a shell forking one), started with only the
fds a test gives them, so every count is exact.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from typing import Callable

import pytest
from support import wait_until

from start_server.core import Fds
from start_server.procfs import measure


@pytest.fixture
def spawn() -> Iterator[Callable[..., int]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: Sequence[str], fds: Sequence[int] = ()) -> int:
        p = subprocess.Popen(
            list(argv), pass_fds=tuple(fds),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        procs.append(p)
        wanted = {"0", "1", "2", *map(str, fds)}
        wait_until(lambda: asleep(p.pid) and set(os.listdir(f"/proc/{p.pid}/fd")) == wanted,
                   what=f"{argv[0]} to sleep holding only its fds")
        return p.pid

    yield start
    for p in procs:
        p.kill()
        p.wait()


def asleep(pid: int) -> bool:
    """Whether ``pid`` is exec'd and asleep in sleep(1)'s nanosleep.

    Only then is every count exact: between fork and exec the child already
    holds just the fds it keeps, and after exec the loader and libc open files
    a moment (a loaded machine lets a measure see both).
    """
    with open(f"/proc/{pid}/wchan") as f:
        wchan = f.read()
    if wchan in ("", "0"):  # the kernel hides it: the run state is the next best
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "S"
    return "nanosleep" in wchan


def fds_of(pid: int, listeners: Sequence[int] = ()) -> Fds:
    return measure([pid], fds=True, listeners=listeners).fds[pid]


def test_listening_sockets_and_std_streams_are_not_counted(spawn: Callable[..., int]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener, socket.socket(
        socket.AF_INET, socket.SOCK_DGRAM
    ) as udp:
        pid = spawn(["sleep", "60"], [listener.fileno(), udp.fileno()])
        got = fds_of(pid, [listener.fileno(), udp.fileno()])
        assert (got.count, got.kinds) == (0, ())
        # Not handed as listeners, the same sockets count: it is the exclusion above.
        assert fds_of(pid).count == 2
        assert fds_of(pid, [listener.fileno()]).kinds == (("sockets", 1),)


def test_fd_kinds_most_numerous_first(spawn: Callable[..., int]) -> None:
    r, w = os.pipe()
    a, b = socket.socketpair()
    with tempfile.TemporaryFile() as f1, tempfile.TemporaryFile() as f2:
        try:
            pid = spawn(["sleep", "60"], [r, w, a.fileno(), f1.fileno(), f2.fileno()])
            got = fds_of(pid)
        finally:
            os.close(r)
            os.close(w)
            a.close()
            b.close()
    assert got.kinds == (("files", 2), ("pipes", 2), ("sockets", 1))
    assert got.describe() == "5 fds: 2 files, 2 pipes, 1 sockets"
    assert got.unreadable == ()


def test_a_forked_childs_fds_are_summed(spawn: Callable[..., int]) -> None:
    with tempfile.TemporaryFile() as f1, tempfile.TemporaryFile() as f2:
        pid = spawn(["sh", "-c", "sleep 60 & exec sleep 60"], [f1.fileno(), f2.fileno()])
    # Both processes hold the two files: the shell, exec'd into sleep, and its child.
    got = wait_until(lambda: (f := fds_of(pid)).count == 4 and f, what="two processes counted")
    assert got.kinds == (("files", 4),)
    alone = measure([pid]).usage[pid]  # memory of the tree, from the same pass
    assert alone > 0


def test_the_workers_own_rlimit_nofile(spawn: Callable[..., int]) -> None:
    pid = spawn(["sh", "-c", "ulimit -S -n 123 && exec sleep 60"])
    wait_until(lambda: os.readlink(f"/proc/{pid}/exe").endswith("sleep"), what="exec")
    assert fds_of(pid).nofile == 123


def test_a_gone_root_is_left_out() -> None:
    p = subprocess.Popen(["true"])
    p.wait()
    m = measure([p.pid], fds=True)
    assert m.usage == {} and m.fds == {}


def _measure_as_nobody(out: int) -> None:
    """In a forked copy of the test: drop root (if we are root), fork a child that
    makes itself non-dumpable (its /proc/PID/fd is then root's, unreadable to
    us), measure our tree, write the result as JSON to ``out``."""
    if os.geteuid() == 0:
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    ready_r, ready_w = os.pipe()
    hold_r, _hold_w = os.pipe()
    child = os.fork()
    if child == 0:
        ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0
        os.write(ready_w, b"x")
        os.read(hold_r, 1)  # until killed
        os._exit(0)
    os.read(ready_r, 1)
    m = measure([os.getpid()], fds=True).fds[os.getpid()]
    os.kill(child, signal.SIGKILL)
    os.waitpid(child, 0)
    os.write(out, json.dumps({"child": child, "unreadable": m.unreadable}).encode())


def test_a_process_whose_fds_cannot_be_read_is_skipped() -> None:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the forked copy
        code = 1
        try:
            os.close(r)
            _measure_as_nobody(w)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r) as fh:
        data = fh.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0 and data
    out = json.loads(data)
    assert out["unreadable"] == [[out["child"], "Permission denied"]]
