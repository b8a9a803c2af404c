"""Generations and their workers: the states they move through and what the core keeps of each."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Any, Optional


class State(enum.Enum):
    STARTING = "starting"  # spawned, start check or readiness pending
    ACTIVE = "active"  # started; the newest ACTIVE generation is the current one
    RETIRING = "retiring"  # signalled to exit (replaced, stopping, or not ready in time)
    EXITED = "exited"  # gone after having started
    FAILED = "failed"  # gone before it started


# Every allowed edge, for generations and workers alike; _move asserts on it.
_EDGES = {
    (State.STARTING, State.ACTIVE),
    (State.STARTING, State.FAILED),
    (State.STARTING, State.RETIRING),
    (State.ACTIVE, State.RETIRING),
    (State.ACTIVE, State.EXITED),
    (State.RETIRING, State.EXITED),
}


@dataclass
class Worker:
    number: int  # its generation
    slot: int
    pid: int
    state: State
    spawned_at: float
    jitter: float = 0.0  # seconds added to its own auto-restart deadline
    started_at: Optional[float] = None
    ready: bool = False  # READY=1 received
    signalled_at: Optional[float] = None  # RETIRING since
    kill_after: Optional[float] = None  # seconds after signalled_at before SIGKILL
    killed: bool = False
    failed_start: bool = False  # stopped because it never became ready
    status: str = ""  # last STATUS= it sent
    replaces: Optional[int] = None  # pid of the worker it takes over from, in its slot
    over_limit: int = 0  # memory checks in a row over --max-memory
    memory: Optional[int] = None  # bytes at the last check
    over_fds: int = 0  # fd checks in a row over its fd limit
    fds: Optional[int] = None  # open fds of its tree at the last check
    unreadable: set[int] = field(default_factory=set)  # pids of its tree whose fds we cannot read


@dataclass
class Generation:
    number: int
    state: State
    spawned_at: float
    started_at: Optional[float] = None
    retire_at: Optional[float] = None  # ACTIVE but replaced: when to signal it
    workers: list[Worker] = field(default_factory=list)
    # The slots of spawns asked for and not yet answered (Spawned or SpawnFailed):
    # the loop queues the answer behind the events already waiting, so others
    # come first. A generation is not forgotten while one is out, and a slot
    # with one is being replaced.
    pending: list[int] = field(default_factory=list)
    retire_signal: int = 0  # RETIRING: what a worker spawned late is sent, and its grace
    retire_grace: Optional[float] = None
    restarts: dict[int, int] = field(default_factory=dict)  # slot -> replacements spawned

    @property
    def pid(self) -> int:
        """The first worker's pid (the only one without --workers)."""
        return min(self.workers, key=lambda w: w.slot).pid if self.workers else 0

    @property
    def jitter(self) -> float:
        """The first worker's auto-restart jitter: the generation's, without --workers."""
        return min(self.workers, key=lambda w: w.slot).jitter if self.workers else 0.0

    @property
    def ready(self) -> bool:
        return bool(self.workers) and all(w.ready for w in self.workers)

    def answered(self, slot: int) -> None:
        """A spawn for ``slot`` was answered."""
        if slot in self.pending:
            self.pending.remove(slot)

    def in_slot(self, slot: int) -> list[Worker]:
        return [w for w in self.workers if w.slot == slot]


# ---- the hand-over of an upgrade (upgrade.py): plain JSON values, times as the
# process's monotonic clock reads them (the same clock across an exec) ----------


def worker_to_dict(w: Worker) -> dict[str, Any]:
    d = dict(vars(w))
    d["state"] = w.state.value
    d["unreadable"] = sorted(w.unreadable)
    return d


def worker_from_dict(d: dict[str, Any]) -> Worker:
    d = dict(d)
    d["state"] = State(d["state"])
    d["unreadable"] = set(d.get("unreadable", ()))
    return Worker(**d)


def generation_to_dict(g: Generation) -> dict[str, Any]:
    d = dict(vars(g))
    d["state"] = g.state.value
    d["workers"] = [worker_to_dict(w) for w in g.workers]
    d["restarts"] = [[slot, n] for slot, n in g.restarts.items()]
    return d


def generation_from_dict(d: dict[str, Any]) -> Generation:
    d = dict(d)
    d["state"] = State(d["state"])
    d["workers"] = [worker_from_dict(w) for w in d.get("workers", ())]
    d["restarts"] = {int(slot): int(n) for slot, n in d.get("restarts", ())}
    return Generation(**d)
