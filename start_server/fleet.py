"""What the core knows, shared by its parts: the generations and their
workers, the bookkeeping beside them (restart requests, slots replaced alone,
failures, health checks, leftovers), the actions of the event being handled,
and the one place states change.

The parts of the core (stopping.py, ... ) hold a ``Fleet`` and act through it;
``Supervisor`` (core.py) is their facade.
"""

from __future__ import annotations

import signal

from . import health
from .backoff import Backoff
from .events import Kill, Log, Spawn
from .failures import FailureRecord
from .generations import (
    _EDGES,
    Generation,
    State,
    Worker,
    generation_from_dict,
    generation_to_dict,
)
from .leftovers import LeftoverPids
from .replacements import Replacements
from .restarts import Restarts

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Any, Optional, Union

    from .events import Action
    from .policy import Policy


class Fleet:
    """Generations, workers, their bookkeeping, and the actions asked for so far."""

    def __init__(self, policy: Policy) -> None:
        self.base_policy = policy  # as configured; envdir overrides apply on top
        self.policy = policy
        self.gens: dict[int, Generation] = {}
        self.last_number = 0
        self.restarts = Restarts()  # pending (coalesced) requests, next attempt after a failure
        self.slots = Replacements()  # workers replaced alone, in their slot
        self.backoff = Backoff()  # failed starts in a row
        self.record = FailureRecord()  # the newest failed start; ever started, served
        self.port_env = ""  # SERVER_STARTER_PORT as a generation gets it (for the hint)
        self.checks = health.Checks()  # when the next health check is due
        self.leftover_pids = LeftoverPids()  # children that are no worker, being stopped
        self.last_event: tuple[str, Optional[float]] = ("", None)  # for the status files
        self.out: list[Action] = []  # the actions of the event being handled
        self.now = 0.0  # when it is handled

    def begin(self, now: float) -> None:
        """A new event is handled at ``now``: no action asked for yet."""
        self.out = []
        self.now = now

    def log(self, message: str, w: Optional[Union[Worker, Generation]] = None) -> None:
        self.last_event = (message, self.now)
        if w is None:
            self.out.append(Log(message))
        else:
            self.out.append(Log(message, w.number, w.pid or None))

    # ---- queries ----------------------------------------------------------

    def current(self) -> Optional[Generation]:
        """The newest ACTIVE generation: the one that should be serving."""
        active = [g for g in self.gens.values() if g.state is State.ACTIVE]
        return max(active, key=lambda g: g.number) if active else None

    def starting(self) -> Optional[Generation]:
        for g in self.gens.values():
            if g.state is State.STARTING:
                return g
        return None

    def workers(self) -> list[Worker]:
        return [w for g in self.gens.values() for w in g.workers]

    def by_pid(self, pid: int) -> Optional[Worker]:
        for w in self.workers():
            if w.pid == pid:
                return w
        return None

    def olds(self) -> list[Generation]:
        """Live generations other than the current and the starting one."""
        cur = self.current()
        return sorted(
            (
                g
                for g in self.gens.values()
                if g is not cur and g.state in (State.ACTIVE, State.RETIRING)
            ),
            key=lambda g: g.number,
        )

    @property
    def failures(self) -> int:
        """Failed starts in a row."""
        return self.backoff.failures

    def backoff_delay(self) -> float:
        return self.backoff.delay(self.policy)

    def uptime(self, w: Worker, now: float) -> float:
        return now - w.started_at if w.started_at is not None else 0.0

    # ---- edges ------------------------------------------------------------

    def move(self, obj: Union[Generation, Worker], to: State) -> None:
        """The one place states change; asserts the edge is allowed."""
        kind = "generation" if isinstance(obj, Generation) else "worker"
        assert (obj.state, to) in _EDGES, f"{kind} {obj.number}: {obj.state} -> {to}"
        obj.state = to
        if isinstance(obj, Generation):
            if to in (State.EXITED, State.FAILED):
                del self.gens[obj.number]
                self.slots.drop(obj.number)
        elif to in (State.EXITED, State.FAILED):
            self.gens[obj.number].workers.remove(obj)

    def new_generation(self, now: float) -> None:
        self.restarts.started()
        self.last_number += 1
        if self.policy.rolling:  # its workers are spawned as room allows (rolling.py)
            self.gens[self.last_number] = Generation(self.last_number, State.STARTING, now)
            return
        self.gens[self.last_number] = Generation(
            self.last_number, State.STARTING, now, pending=list(range(self.policy.workers))
        )
        for slot in range(self.policy.workers):
            self.out.append(Spawn(self.last_number, slot))

    def spawn_slot(self, g: Generation, slot: int, why: str, replaced: bool = True) -> None:
        """A new worker for ``slot`` of ``g``, replaced alone (``replaced`` False: a
        new slot, scaled up)."""
        self.slots.spawned(g.number, slot)
        g.pending.append(slot)
        if replaced:
            g.restarts[slot] = g.restarts.get(slot, 0) + 1
        self.log(f"slot {slot}: {why}", None)
        self.out.append(Spawn(g.number, slot))

    def stop_leftover(self, pid: int, now: float) -> None:
        """``pid``, a child that is no worker, is sent TERM (KILL after --stop-timeout)."""
        self.leftover_pids.stopping(pid, now)
        self.out.append(Kill(pid, signal.SIGTERM))

    def retire_worker(
        self, w: Worker, signum: int, now: float, grace: Optional[float], group: bool = False
    ) -> None:
        # worker ACTIVE -> RETIRING, or STARTING -> RETIRING
        self.move(w, State.RETIRING)
        w.signalled_at = now
        w.kill_after = grace
        self.out.append(Kill(w.pid, signum, group))

    def retire(
        self, g: Generation, signum: int, now: float, grace: Optional[float], group: bool = False,
        *, keep_serving: bool = False,
    ) -> None:
        """``keep_serving``: its started workers are left running (a stopped roll's)."""
        # generation ACTIVE -> RETIRING, or STARTING -> RETIRING
        self.move(g, State.RETIRING)
        g.retire_at = None
        g.retire_signal, g.retire_grace = signum, grace
        self.slots.drop(g.number)
        for w in g.workers:
            if w.state is not State.RETIRING and not (keep_serving and w.state is State.ACTIVE):
                self.retire_worker(w, signum, now, grace, group)
        self.end_if_empty(g)  # no worker left to wait for (all died, none on its way)

    def end_if_empty(self, g: Generation) -> None:
        """A retiring generation with no worker left and none on its way is gone."""
        if g.state is State.RETIRING and not g.workers and not g.pending:
            # generation RETIRING -> EXITED
            self.move(g, State.EXITED)

    # ---- the hand-over of an upgrade (upgrade.py): the keys of format 1 -------

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"last_number": self.last_number, "port_env": self.port_env}
        d["gens"] = [generation_to_dict(g) for g in self.gens.values()]
        d["slots"] = self.slots.to_dict()
        d["backoff"] = self.backoff.to_dict()
        d.update(self.record.to_dict())
        d.update(self.restarts.to_dict())
        d["next_measure"] = self.checks.next_at
        d["leftovers"] = self.leftover_pids.to_dict()
        d["last_event"] = list(self.last_event)
        return d

    def load(self, d: dict[str, Any]) -> None:
        """What ``to_dict`` left (the policy is the caller's)."""
        self.last_number = d.get("last_number", self.last_number)
        self.port_env = d.get("port_env", self.port_env)
        self.gens = {g.number: g for g in map(generation_from_dict, d["gens"])}
        self.slots = Replacements.from_dict(d["slots"])
        self.backoff = Backoff.from_dict(d["backoff"])
        self.record = FailureRecord.from_dict(d)
        self.restarts = Restarts.from_dict(d)
        self.checks.next_at = d.get("next_measure")
        self.leftover_pids = LeftoverPids.from_dict(d["leftovers"])
        message, at = d["last_event"]
        self.last_event = (str(message), at)
