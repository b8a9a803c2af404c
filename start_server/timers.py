"""Every timed rule of the core, in one table (``TIMERS``): start checks,
retirements, kill escalations, respawns, auto-restart, in-place replacements,
health checks. Timers are not stored: each rule is a query of when each of its
items is due, derived from the state (``_due_X``, pure), and what fires for
the due ones (``_fire_X``). ``next_deadline()`` is their minimum and
``run_due()`` fires from the same table, so a rule cannot be in one and not
the other."""

from __future__ import annotations

import signal

from . import autorestart, rolling
from .events import Kill, Measure
from .generations import State

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Any, Optional

    from .fleet import Fleet
    from .generations import Generation, Worker
    from .starts import Starts
    from .stopping import Stopping


class Timers:
    """The timed rules: for each, when its items are due and what fires then."""

    def __init__(self, fleet: Fleet, stop: Stopping, starts: Starts) -> None:
        self.fleet = fleet
        self.stop = stop
        self.starts = starts

    def next_deadline(self) -> Optional[float]:
        """When the next timed rule is due, or None: then only an event can wake us."""
        times = [when for _name, due, _fire in TIMERS for when, _item in due(self)]
        return min(times) if times else None

    def run_due(self, now: float) -> None:
        """Fire every timed rule that is due, in the table's order; each rule's
        due items are found after the rules before it fired (a generation that
        just started retires its predecessors in this same pass)."""
        for _name, due, fire in TIMERS:
            items = [item for when, item in due(self) if now >= when]
            if items:
                fire(self, items, now)

    def _due_starts(self) -> list[tuple[float, Any]]:
        return [
            (self.start_deadline(w), w)
            for g in self.fleet.gens.values()
            for w in g.workers
            if w.state is State.STARTING
        ]

    def _fire_starts(self, items: list[Worker], now: float) -> None:
        p = self.fleet.policy
        for w in sorted(items, key=lambda w: (w.number, w.slot)):
            if w.state is not State.STARTING or w.number not in self.fleet.gens:
                continue  # an earlier one's verdict settled it
            if p.wait_ready:
                self.starts.not_ready(w, now)
            else:
                self.starts.worker_started(w, now, f"alive after {p.interval:g} s")

    def _due_retire(self) -> list[tuple[float, Any]]:
        cur = self.fleet.current()
        return [
            (g.retire_at, g)
            for g in self.fleet.gens.values()
            if g.state is State.ACTIVE and g.retire_at is not None and g is not cur
        ]

    def _fire_retire(self, items: list[Generation], now: float) -> None:
        self.fleet.log("killing old workers")
        for g in sorted(items, key=lambda g: g.number):
            p = self.fleet.policy
            self.fleet.retire(g, p.signal_on_hup, now, p.stop_timeout)

    def _due_kills(self) -> list[tuple[float, Any]]:
        return [
            (w.signalled_at + w.kill_after, w)
            for g in self.fleet.gens.values()
            for w in g.workers
            if w.state is State.RETIRING
            and w.kill_after is not None
            and not w.killed
            and w.signalled_at is not None
        ]

    def _fire_kills(self, items: list[Worker], now: float) -> None:
        for w in sorted(items, key=lambda w: (w.number, w.slot)):
            w.killed = True
            self.fleet.log(
                f"worker {w.pid} did not exit {w.kill_after:g} s after it was signalled; "
                "sending KILL to its process group",
                w,
            )
            self.fleet.out.append(Kill(w.pid, signal.SIGKILL, group=True))

    def _due_leftovers(self) -> list[tuple[float, Any]]:
        """KILL after --stop-timeout; without one, a stop that has no worker
        left to wait for waits for them only the not-ready grace after their
        TERM (the original does not wait for them at all)."""
        p = self.fleet.policy
        if p.stop_timeout is None and (not self.stop.stopping or self.fleet.gens):
            return []
        return list(self.fleet.leftover_pids.due(p.not_ready_grace))

    def _fire_leftovers(self, items: list[int], now: float) -> None:
        p = self.fleet.policy
        if p.stop_timeout is None:
            self.stop.leave(sorted(items), p.not_ready_grace)
            return
        for pid in sorted(items):
            self.fleet.leftover_pids.killed(pid)
            self.fleet.log(f"leftover process {pid} did not exit; sending KILL")
            self.fleet.out.append(Kill(pid, signal.SIGKILL))

    def _due_respawn(self) -> list[tuple[float, Any]]:
        """The next attempt at a new generation, after the backoff (none while one starts)."""
        at = self.fleet.restarts.respawn_at
        if self.stop.stopping or at is None or self.fleet.starting() is not None:
            return []
        return [(at, None)]

    def _fire_respawn(self, items: list[None], now: float) -> None:
        self.fleet.new_generation(now)

    def _due_slot_respawn(self) -> list[tuple[float, Any]]:
        """Slots of the current generation (of the rolling one during a roll) to
        try again after the backoff."""
        g = rolling.in_progress(self.fleet) or self.fleet.current()
        if self.stop.stopping or g is None:
            return []
        waiting = sorted(self.fleet.slots.waiting(g.number))
        return waiting[: rolling.room(self.fleet.policy, self.fleet.gens.values())]

    def _fire_slot_respawn(self, items: list[tuple[int, int]], now: float) -> None:
        for number, slot in sorted(items):
            self.fleet.spawn_slot(self.fleet.gens[number], slot, "starting a new worker")

    def _due_auto_restart(self) -> list[tuple[float, Any]]:
        f = self.fleet
        blocked = (
            self.stop.stopping or f.restarts.respawn_at is not None or f.starting() is not None
        )
        auto = autorestart.generation_due(f.policy, f.current(), bool(f.olds()), blocked)
        return [] if auto is None else [auto]

    def _fire_auto_restart(self, items: list[bool], now: float) -> None:
        forced = "forced, " if items[0] else ""
        interval = self.fleet.policy.auto_restart_interval
        self.fleet.log(f"autorestart triggered ({forced}interval={interval:g})")
        self.fleet.new_generation(now)

    def _due_roll(self) -> list[tuple[float, Any]]:
        return list(rolling.due(self.fleet, self.stop.stopping))

    def _fire_roll(self, items: list[Generation], now: float) -> None:
        rolling.spawn(self.fleet, items[0])

    def _due_worker_auto(self) -> list[tuple[float, Any]]:
        f = self.fleet
        return list(autorestart.workers_due(f.policy, f.current(), f.slots, self.stop.stopping))

    def _fire_worker_auto(self, items: list[Worker], now: float) -> None:
        for w in items:
            self.fleet.slots.enqueue(w.number, w.slot, "auto-restart")

    def _due_replace(self) -> list[tuple[float, Any]]:
        """The next in-place replacement, due at once when one may start."""
        cur = self.fleet.current()
        if self.stop.stopping or cur is None or self.fleet.starting() is not None:
            return []
        if not rolling.room(self.fleet.policy, self.fleet.gens.values()):
            return []  # --rolling: once a worker exits
        nxt = self.fleet.slots.next(cur)
        return [] if nxt is None else [(self.fleet.now, nxt)]

    def _fire_replace(self, items: list[tuple[int, int, str]], now: float) -> None:
        number, slot, why = items[0]
        self.fleet.slots.take(items[0])
        self.fleet.spawn_slot(self.fleet.gens[number], slot, f"replacing its worker ({why})")

    def _due_measure(self) -> list[tuple[float, Any]]:
        return list(self.fleet.checks.due(self.fleet.policy, self.stop.stopping))

    def _fire_measure(self, items: list[None], now: float) -> None:
        self.fleet.checks.checked(now, self.fleet.policy)
        serving = self.fleet.current()
        if serving is not None and serving.workers:
            pids = tuple(w.pid for w in serving.workers)
            self.fleet.out.append(Measure(pids, fds=self.fleet.policy.counts_fds))

    def start_deadline(self, w: Worker) -> float:
        p = self.fleet.policy
        return w.spawned_at + (p.ready_timeout if p.wait_ready else p.interval)



# Every timed rule, in the order a pass fires them: (name, when each of its
# items is due, what fires for the due ones).
TIMERS = (
    ("start check", Timers._due_starts, Timers._fire_starts),
    ("retire replaced generations", Timers._due_retire, Timers._fire_retire),
    ("kill after the grace", Timers._due_kills, Timers._fire_kills),
    ("kill leftovers", Timers._due_leftovers, Timers._fire_leftovers),
    ("new generation after the backoff", Timers._due_respawn, Timers._fire_respawn),
    ("slot again after the backoff", Timers._due_slot_respawn, Timers._fire_slot_respawn),
    ("auto-restart", Timers._due_auto_restart, Timers._fire_auto_restart),
    ("next workers of a roll", Timers._due_roll, Timers._fire_roll),
    ("worker auto-restart", Timers._due_worker_auto, Timers._fire_worker_auto),
    ("in-place replacement", Timers._due_replace, Timers._fire_replace),
    ("health check", Timers._due_measure, Timers._fire_measure),
)
