"""Spawns under way: workers forked whose exec is not yet confirmed.

``children.start`` forks and returns at once; the child reports on a
close-on-exec pipe: nothing but EOF once it has exec'd, or what failed (then
it exits 127). The loop does not wait on that pipe: it sits in the selector,
so 64 workers are forked in one go and exec side by side, and every pass
reads what each pending pipe holds (``settle``); a pipe at EOF answers its
spawn, ``Spawned`` or ``SpawnFailed``, as the core asked.

A child can exit before its report is read (a command that exits at once).
Its pipe is then at EOF (the kernel closed it), so a reaped child's report is
read in the same pass and its answer is queued before its exit. A child that
sent a datagram has exec'd, so its report is in by the time ``settle`` runs
after the notify sockets were read: its ``Spawned`` comes before what it said.
The exit of a child whose exec failed never reaches the core (it never
became a worker): waited for here when the report comes first, dropped from
the reaped list otherwise.
"""

from __future__ import annotations

import contextlib
import os
import selectors
from dataclasses import dataclass, field

from .events import Spawned, SpawnFailed

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from .events import Event

MARK = "exec report"  # the selector key's data for a pending spawn's pipe


@dataclass
class Pending:
    number: int  # the generation, the slot and the pid of the child
    slot: int
    pid: int
    fd: int  # the read end of its exec report, non-blocking
    overrides: dict[str, str]  # what Spawned carries, as read when it was forked
    jitter: float
    report: bytes = b""  # what it said so far: empty until EOF means it exec'd
    eof: bool = field(default=False)


class Spawns:
    """The pending spawns, by pid; their pipes are in the loop's selector."""

    def __init__(self, sel: selectors.BaseSelector) -> None:
        self.sel = sel
        self.pending: dict[int, Pending] = {}

    def add(self, p: Pending) -> None:
        self.pending[p.pid] = p
        self.sel.register(p.fd, selectors.EVENT_READ, MARK)

    def pids(self, number: object = None) -> list[int]:
        """The pids of the pending spawns (of generation ``number``, if given)."""
        return [p.pid for p in self.pending.values() if number is None or p.number == number]

    def settle(self, reaped: list[tuple[int, int]]) -> tuple[list[Event], list[tuple[int, int]]]:
        """The answers of the spawns whose report is complete (or whose child is
        among ``reaped``), and ``reaped`` without the children whose exec failed."""
        gone = {pid for pid, _ in reaped}
        answers: list[Event] = []
        failed: set[int] = set()
        for p in list(self.pending.values()):
            _read(p)
            if not p.eof and p.pid not in gone:
                continue
            self._forget(p)
            if not p.report:
                answers.append(Spawned(p.number, p.pid, p.overrides, p.slot, p.jitter))
                continue
            failed.add(p.pid)
            if p.pid not in gone:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(p.pid, 0)  # at EOF it is exiting: a moment at most
            reason = p.report.decode(errors="replace")
            answers.append(SpawnFailed(p.number, reason, p.slot))
        return answers, [r for r in reaped if r[0] not in failed]

    def _forget(self, p: Pending) -> None:
        del self.pending[p.pid]
        self.sel.unregister(p.fd)
        os.close(p.fd)

    def close(self) -> None:
        for p in list(self.pending.values()):
            self._forget(p)


def _read(p: Pending) -> None:
    """What ``p``'s pipe holds now, without waiting; ``p.eof`` once it is all in."""
    while not p.eof:
        try:
            chunk = os.read(p.fd, 4096)
        except BlockingIOError:
            return
        if chunk:
            p.report += chunk
        else:
            p.eof = True
