"""What reaches the core (events) and what it asks for (actions), and the snapshot it publishes."""

from __future__ import annotations

from dataclasses import dataclass, field

from .generations import State

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Optional, Union

    from .generations import Generation


# ---- events ---------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """The starter is set up: spawn the first generation."""


@dataclass(frozen=True)
class Spawned:
    number: int
    pid: int
    overrides: dict[str, str] = field(default_factory=dict)  # env that tunes the policy
    slot: int = 0
    jitter: float = 0.0  # a random fraction in [0, 1) from the loop, for --auto-restart-jitter


@dataclass(frozen=True)
class SpawnFailed:
    number: int
    reason: str
    slot: int = 0


@dataclass(frozen=True)
class Exited:
    pid: int
    status: int  # the raw wait status, as the original logs it
    description: str  # "exit code 1", "killed by SIGKILL"


@dataclass(frozen=True)
class Signalled:
    signum: int


@dataclass(frozen=True)
class Notified:
    number: int  # the generation whose notify socket got it
    fields: dict[str, str]
    pid: Optional[int] = None  # the worker it came from, when known


@dataclass(frozen=True)
class Fds:
    """Open fds of a worker's process tree; its inherited listening sockets and
    every process's fds 0-2 are not counted."""

    count: int
    kinds: tuple[tuple[str, int], ...] = ()  # ("sockets", 398), ...: most numerous first
    nofile: Optional[int] = None  # the worker's own soft RLIMIT_NOFILE; None: unknown
    unreadable: tuple[tuple[int, str], ...] = ()  # (pid, why): processes not counted

    def describe(self) -> str:
        """``412 fds: 398 sockets, 12 files`` (the three most numerous kinds)."""
        top = ", ".join(f"{n} {kind}" for kind, n in self.kinds[:3])
        return f"{self.count} fds" + (f": {top}" if top else "")


@dataclass(frozen=True)
class Measured:
    """One health check of each worker's process tree: its memory (PSS, or RSS
    where PSS is unreadable) and, with an fd limit, its open fds."""

    usage: dict[int, int]  # worker pid -> bytes
    fds: dict[int, Fds] = field(default_factory=dict)  # worker pid -> open fds


@dataclass(frozen=True)
class Leftovers:
    """Children of the starter that are no worker: leftovers re-parented to us."""

    pids: tuple[int, ...]


@dataclass(frozen=True)
class Tick:
    """Time passed: perform whatever is due."""


@dataclass(frozen=True)
class Asked:
    """A client's request over the control socket (scaling.py): ``kind`` ``scale``
    (``value`` N, +K or -K) or ``worker`` (``value`` the slot to restart)."""

    id: str
    kind: str
    value: str


if TYPE_CHECKING:
    Event = Union[
        Start, Spawned, SpawnFailed, Exited, Signalled, Notified, Measured, Leftovers, Tick,
        Asked,
    ]


# ---- actions --------------------------------------------------------------


@dataclass(frozen=True)
class Spawn:
    number: int
    slot: int = 0


@dataclass(frozen=True)
class Kill:
    pid: int
    signum: int
    group: bool = False  # the whole process group (escalation), not just the main pid


@dataclass(frozen=True)
class Measure:
    pids: tuple[int, ...]
    fds: bool = False  # count open fds too


@dataclass(frozen=True)
class Log:
    message: str
    number: Optional[int] = None
    pid: Optional[int] = None


@dataclass(frozen=True)
class WorkerView:
    """One worker process, as the status files show it."""

    number: int
    pid: int
    state: State
    spawned_at: float
    started_at: Optional[float]
    ready: bool
    status: str
    slot: int = 0
    memory: Optional[int] = None
    fds: Optional[int] = None
    restarts: int = 0  # replacements spawned in its slot, in its generation


def worker_views(gens: Iterable[Generation]) -> tuple[WorkerView, ...]:
    """Every worker as the status files show it, by generation, then slot."""
    return tuple(
        WorkerView(
            w.number, w.pid, w.state, w.spawned_at, w.started_at, w.ready, w.status,
            w.slot, w.memory, w.fds, g.restarts.get(w.slot, 0),
        )
        for g in sorted(gens, key=lambda g: g.number)
        for w in sorted(g.workers, key=lambda w: w.slot)
    )


@dataclass(frozen=True)
class Publish:
    """A snapshot for the status files (``Supervisor.snapshot()``); not an action."""

    generations: tuple[WorkerView, ...]
    last_number: int
    failed_number: Optional[int]  # newest generation that failed to start
    failed_reason: str
    failed_at: Optional[float] = None  # when it failed
    next_attempt: Optional[float] = None  # when the backoff lets the next start happen
    last_event: str = ""  # the newest log line of the core, and when
    last_event_at: Optional[float] = None
    workers: int = 1  # the live count (--workers, then --scale)
    answers: tuple[tuple[str, str, str], ...] = ()  # clients' requests: (id, state, message)
    roll: Optional[tuple[int, int, int]] = None  # (generation, started, of --workers) rolling in


@dataclass(frozen=True)
class NotifyUpstream:
    message: str  # for a NOTIFY_SOCKET the starter itself was given


@dataclass(frozen=True)
class Exit:
    code: int


if TYPE_CHECKING:
    Action = Union[Spawn, Kill, Measure, Log, NotifyUpstream, Exit]
