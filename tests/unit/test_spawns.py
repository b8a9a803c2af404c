"""Spawns under way (spawns.py): real children, their exec reports read
without waiting, in whichever order the report and the exit come."""

from __future__ import annotations

import os
import selectors
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import wait_until

from start_server import children
from start_server.events import Spawned, SpawnFailed
from start_server.spawns import Pending, Spawns

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


@pytest.fixture
def spawns() -> Iterator[Spawns]:
    sel = selectors.DefaultSelector()
    s = Spawns(sel)
    yield s
    for pid in s.pids():
        children.kill(pid, signal.SIGKILL, group=True)
        os.waitpid(pid, 0)
    s.close()
    sel.close()


def _start(spawns: Spawns, *command: str) -> int:
    pid, fd = children.start(tuple(command), ENV, None, ())
    spawns.add(Pending(7, 2, pid, fd, {"KILL_OLD_DELAY": "3"}, 0.5))
    return pid


def _report_in(spawns: Spawns) -> None:
    """Wait until every pending pipe is readable (its report complete or begun)."""
    def readable() -> bool:
        ready = spawns.sel.select(0)
        return len(ready) == len(spawns.pending)
    wait_until(readable, what="the exec reports")


def _zombie(pid: int) -> bool:
    """``pid`` has exited and is not reaped yet."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_an_exec_is_answered_spawned_once_its_report_is_in(spawns: Spawns) -> None:
    pid = _start(spawns, "sleep", "60")
    _report_in(spawns)
    answers, reaped = spawns.settle([])
    assert answers == [Spawned(7, pid, {"KILL_OLD_DELAY": "3"}, 2, 0.5)]
    assert reaped == [] and spawns.pids() == []
    assert spawns.sel.get_map() == {}  # its pipe is closed and out of the selector
    children.kill(pid, signal.SIGKILL, group=True)
    os.waitpid(pid, 0)


def test_a_command_that_cannot_be_executed_is_answered_spawn_failed(spawns: Spawns) -> None:
    pid = _start(spawns, "/nonexistent/command")
    answers = wait_until(lambda: spawns.settle([])[0], what="the report")
    assert answers == [
        SpawnFailed(7, "cannot execute '/nonexistent/command': No such file or directory", 2)
    ]
    # Its exit was waited for there: it never reaches the loop's reap().
    with pytest.raises(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def test_a_child_reaped_before_its_report_was_read_is_answered_first(spawns: Spawns) -> None:
    pid = _start(spawns, sys.executable, "-c", "pass")
    wait_until(lambda: _zombie(pid), what="the child's exit")
    gone = os.waitpid(pid, 0)  # reaped before the loop read its report
    answers, reaped = spawns.settle([gone])
    assert answers == [Spawned(7, pid, {"KILL_OLD_DELAY": "3"}, 2, 0.5)]
    assert reaped == [gone]  # its exit goes to the core, after the Spawned


def test_a_failed_exec_reaped_first_never_reaches_the_core(spawns: Spawns) -> None:
    pid = _start(spawns, "/nonexistent/command")
    wait_until(lambda: _zombie(pid), what="the child's exit")
    gone = os.waitpid(pid, 0)
    other = (pid + 1, 0)  # another child's exit, reaped in the same pass, stays
    answers, reaped = spawns.settle([gone, other])
    assert [type(a) for a in answers] == [SpawnFailed]
    assert reaped == [other]


def test_a_report_in_parts_is_answered_at_its_end_and_settle_never_waits(
    spawns: Spawns,
) -> None:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    no_child = 2**22 + 1  # above pid_max's default: waited for in vain, harmlessly
    spawns.add(Pending(3, 0, no_child, read_end, {}, 0.0))
    assert spawns.settle([]) == ([], [])  # nothing written: still pending, no wait
    os.write(write_end, b"cannot chdir to ")
    assert spawns.settle([]) == ([], [])
    assert spawns.pids(3) == [no_child] and spawns.pids(4) == []
    os.write(write_end, b"'/x': gone")
    os.close(write_end)
    assert spawns.settle([]) == ([SpawnFailed(3, "cannot chdir to '/x': gone", 0)], [])
    assert spawns.pending == {}
