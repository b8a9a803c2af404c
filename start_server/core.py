"""The pure core: generations, their workers, their states, and what to do about each event.

``Supervisor.handle(event, now)`` returns a list of actions; nothing here calls
the OS or reads a clock, so every rule of the spec is a unit test. Timers are
not stored: each timed rule (start checks, retirements, kill escalations,
respawns, auto-restart, health checks) is one entry of the ``TIMERS`` table,
a query of when it is due, derived from the state, and what fires then;
``next_deadline()`` is their minimum, ``run_due()`` (after every event, and on
a ``Tick``) fires what is due. The loop sleeps until that deadline or an event.
The data are in generations.py and events.py; what the parts of the core
share, and the one place states change, in fleet.py; stopping and the exit
decision in stopping.py; workers replaced alone in replacements.py, the count
of failures in backoff.py, verdicts in health.py. ``Supervisor`` is the facade
the loop, the upgrade and the tests use.

Health checks (``--max-memory``, ``--max-open-files``, ``--max-fd-fraction``)
measure each worker's process tree every ``--health-check-interval``: one
``Measure`` action, one ``Measured`` event with memory and open fds per tree.

A generation is one deploy of the command: ``--workers`` copies of it (one by
default), each a worker process in a slot 0..N-1. A generation has started
when all its workers have; then the older generations retire. With several
workers, a worker that dies, outgrows ``--max-memory`` or its fd limit, or reaches its own
auto-restart deadline is replaced alone, in its slot, without a new generation.
"""

from __future__ import annotations

import signal
from dataclasses import replace

from . import autorestart, health
from .events import (
    Asked,
    Exit,
    Exited,
    Fds,
    Kill,
    Leftovers,
    Log,
    Measure,
    Measured,
    Notified,
    NotifyUpstream,
    Publish,
    Signalled,
    Spawn,
    Spawned,
    SpawnFailed,
    Start,
    Tick,
    WorkerView,
    worker_views,
)
from .failures import HINT_AFTER_FAILURES, never_started_hint
from .fleet import Fleet
from .generations import Generation, State, Worker
from .policy import Policy
from .scaling import Scaling
from .spec import signal_name
from .stopping import STOP_SIGNALS, Stopping
from .values import SpecError, parse_seconds

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Any, Optional

    from .events import Action, Event

# Re-exported: the core is where the rules are read, with what they act on.
__all__ = [
    "HINT_AFTER_FAILURES",
    "TIMERS",
    "Action",
    "Asked",
    "Event",
    "Exit",
    "Exited",
    "Fds",
    "Generation",
    "Kill",
    "Leftovers",
    "Log",
    "Measure",
    "Measured",
    "Notified",
    "NotifyUpstream",
    "Policy",
    "Publish",
    "Signalled",
    "Spawn",
    "SpawnFailed",
    "Spawned",
    "Start",
    "State",
    "Supervisor",
    "Tick",
    "Worker",
    "WorkerView",
]







class Supervisor:
    """Generations, workers and the rules that move them. One instance per starter."""

    def __init__(self, policy: Policy) -> None:
        self.fleet = Fleet(policy)  # generations, workers, their bookkeeping
        self.stop = Stopping(self.fleet)  # TERM/INT/QUIT, the exit decision
        self.scale = Scaling(self.fleet, self.stop)  # --scale, TTIN/TTOU, --restart --worker

    # ---- queries (the facade: the loop, upgrade.py and the tests read these) --

    @property
    def policy(self) -> Policy:
        """The policy in force: the configured one, envdir overrides on top."""
        return self.fleet.policy

    @property
    def gens(self) -> dict[int, Generation]:
        return self.fleet.gens

    @property
    def last_number(self) -> int:
        return self.fleet.last_number

    @property
    def port_env(self) -> str:
        """SERVER_STARTER_PORT as a generation gets it (the loop sets it, for the hint)."""
        return self.fleet.port_env

    @port_env.setter
    def port_env(self, value: str) -> None:
        self.fleet.port_env = value

    @property
    def stopping(self) -> bool:
        return self.stop.stopping

    @property
    def done(self) -> bool:
        """The starter exits: the last action of every event is Exit."""
        return self.stop.done

    @property
    def failures(self) -> int:
        """Failed starts in a row."""
        return self.fleet.failures

    def current(self) -> Optional[Generation]:
        """The newest ACTIVE generation: the one that should be serving."""
        return self.fleet.current()

    def workers(self) -> list[Worker]:
        return self.fleet.workers()

    def by_pid(self, pid: int) -> Optional[Worker]:
        return self.fleet.by_pid(pid)

    @property
    def slot_respawn(self) -> dict[tuple[int, int], float]:
        """(generation, slot) -> when a slot whose replacement failed is tried again."""
        return self.fleet.slots.retry_at

    @property
    def restart_pending(self) -> bool:
        """A restart waits for the generation starting now."""
        return self.fleet.restarts.pending

    @property
    def leftovers(self) -> dict[int, Optional[float]]:
        """Leftover pid -> when it was sent TERM (None: KILL)."""
        return self.fleet.leftover_pids.since

    def _start_deadline(self, w: Worker) -> float:
        p = self.fleet.policy
        return w.spawned_at + (p.ready_timeout if p.wait_ready else p.interval)

    def next_deadline(self) -> Optional[float]:
        """When the next timed rule is due, or None: then only an event can wake us.

        The minimum over the one table of timed rules (``TIMERS``), the same
        table ``run_due`` fires from: a rule cannot be in one and not the other.
        """
        times = [when for _name, due, _fire in TIMERS for when, _item in due(self)]
        return min(times) if times else None

    # ---- the one entry point ---------------------------------------------

    def handle(self, event: Event, now: float) -> list[Action]:
        self.fleet.begin(now)
        if isinstance(event, Start):
            self.fleet.new_generation(now)
        elif isinstance(event, Spawned):
            self._on_spawned(event, now)
        elif isinstance(event, SpawnFailed):
            self._on_spawn_failed(event, now)
        elif isinstance(event, Exited):
            self._on_exited(event, now)
        elif isinstance(event, Signalled):
            self._on_signal(event.signum, now)
        elif isinstance(event, Notified):
            self._on_notify(event, now)
        elif isinstance(event, Measured):
            self._on_measured(event, now)
        elif isinstance(event, Leftovers):
            self._on_leftovers(event, now)
        elif isinstance(event, Asked):
            self.scale.asked(event.id, event.kind, event.value)
        if not self.stop.done:
            self.run_due(now)
        self.scale.settle()
        self.stop.settle()
        return self.fleet.out

    # ---- edges ------------------------------------------------------------

    def _worker_started(self, w: Worker, now: float, why: str) -> None:
        # worker STARTING -> ACTIVE
        self.fleet.move(w, State.ACTIVE)
        w.started_at = now
        g = self.fleet.gens[w.number]
        if g.state is State.STARTING:
            self.fleet.log(f"new worker {w.pid} is now running ({why})", w)
            live = [x for x in g.workers if not x.failed_start]
            # All it was spawned with (a scale meanwhile applies once it serves).
            if not g.pending and all(x.state is State.ACTIVE for x in live):
                self._generation_started(g, now)
            return
        # A worker replaced alone, in an ACTIVE generation.
        self.fleet.log(f"worker {w.pid} (slot {w.slot}) is now running ({why})", w)
        self.fleet.backoff.succeeded(now)
        old = next((x for x in g.workers if x.pid == w.replaces), None)
        w.replaces = None
        if old is not None and old.state is State.ACTIVE:
            p = self.fleet.policy
            self.fleet.log(f"sending {signal_name(p.signal_on_hup)} to worker {old.pid}")
            self.fleet.retire_worker(old, p.signal_on_hup, now, p.stop_timeout)

    def _generation_started(self, g: Generation, now: float) -> None:
        # generation STARTING -> ACTIVE
        self.fleet.move(g, State.ACTIVE)
        g.started_at = now
        self.fleet.record.ever_started = True
        self.fleet.backoff.succeeded(now)
        self.fleet.checks.arm(now, self.fleet.policy)
        olds = [o for o in self.fleet.gens.values() if o.state is State.ACTIVE and o is not g]
        self.fleet.record.has_served = self.fleet.record.has_served or bool(olds)
        sig = signal_name(self.fleet.policy.signal_on_hup)
        old_pids = sorted(w.pid for o in olds for w in o.workers)
        pids = ",".join(str(p) for p in old_pids) or "none"
        self.fleet.log(f"new worker is now running, sending {sig} to old workers:{pids}")
        delay = self.fleet.policy.effective_kill_old_delay
        if olds and delay > 0:
            self.fleet.log(f"sleeping {delay:g} secs before killing old workers")
        for o in olds:
            o.retire_at = now + delay if o.retire_at is None else min(o.retire_at, now + delay)
            self.fleet.slots.drop(o.number)  # replaced as a whole now
        pid_text = ",".join(str(w.pid) for w in sorted(g.workers, key=lambda w: w.slot))
        serving = f"STATUS=generation {g.number} (pid {pid_text}) is serving"
        follows = self.fleet.restarts.take_pending()
        if follows:
            # A reload requested meanwhile is not done yet: READY=1 waits for it.
            self.fleet.out.append(NotifyUpstream(serving + "; one more restart follows"))
        else:
            self.fleet.out.append(NotifyUpstream("READY=1\n" + serving))
        if follows:
            self.fleet.log("starting the restart that was requested during the last start")
            self.fleet.new_generation(now)
        else:
            self.scale.generation_started(g)

    def _failed(self, g: Generation, now: float, reason: str) -> None:
        """A generation's start failed: count it and schedule the next one with backoff."""
        self.fleet.record.failed(g.number, reason, now)
        self._count_failure(now)
        self.scale.asks.failed(f"generation {g.number} failed to start ({reason})")
        if self.stop.stopping:
            return
        cur = self.fleet.current()
        if cur is not None:
            # The reload is over, failed: the old generation keeps serving.
            self.fleet.out.append(
                NotifyUpstream(
                    f"READY=1\nSTATUS=generation {g.number} failed to start ({reason}); "
                    f"generation {cur.number} (pid {cur.pid}) is still serving"
                )
            )
        delay = self.fleet.backoff_delay()
        at = max(g.spawned_at + delay, now)
        self.fleet.restarts.retry_at(at)
        wait = at - now
        failures = self.fleet.failures
        self.fleet.log(f"next attempt in {wait:.3g} s (failed starts in a row: {failures})")
        self.fleet.restarts.take_pending()  # the next attempt runs the newest code anyway

    def _fail_generation(self, g: Generation, now: float, reason: str) -> None:
        """Stop what is left of a generation that did not start, then count it."""
        for w in g.workers:
            w.failed_start = True
        if g.workers or g.pending:
            p = self.fleet.policy
            self.fleet.retire(g, p.signal_on_hup, now, p.not_ready_grace)
        else:
            # generation STARTING -> FAILED
            self.fleet.move(g, State.FAILED)
        self._failed(g, now, reason)

    def _slot_failed(self, w: Worker, now: float) -> None:
        """A worker replaced alone did not start: try its slot again after the backoff."""
        self._count_failure(now)
        self.scale.asks.failed(f"the new worker in slot {w.slot} did not start", w.slot)
        if self.stop.stopping or self.fleet.gens.get(w.number) is not self.fleet.current():
            return
        delay = self.fleet.backoff_delay()
        self.fleet.slots.retry(w.number, w.slot, max(w.spawned_at + delay, now))
        self.fleet.log(
            f"slot {w.slot}: next attempt in {max(w.spawned_at + delay - now, 0):.3g} s "
            f"(failed starts in a row: {self.fleet.failures})",
            w,
        )

    def _crashed(self, w: Worker, now: float) -> bool:
        """A started worker died on its own: True to respawn it at once.

        One that ran at least --min-uptime since its start is respawned at
        once, as the original does, and clears the count; an earlier death is
        a crash in a row, respawned at once only if it is the first.
        """
        if self.fleet.uptime(w, now) >= self.fleet.policy.min_uptime:
            self.fleet.backoff.clear()
            self.fleet.record.has_served = True
            return True
        self._count_failure(now, w)
        return self.fleet.failures <= 1

    def _count_failure(self, now: float, crashed: Optional[Worker] = None) -> None:
        """One more failure in a row (``crashed``: the worker that died early);
        at the third with nothing ever served, a hint in the log."""
        self.fleet.backoff.failed(now, None if crashed is None else crashed.started_at)
        serving = any(w.state is State.ACTIVE for w in self.fleet.workers())
        if self.fleet.record.hint_due(self.fleet.failures, serving):
            f = self.fleet
            f.log(never_started_hint(f.failures, f.port_env, f.policy.wait_ready))

    # ---- event handlers ---------------------------------------------------

    def _request_restart(self, why: str) -> None:
        if self.stop.stopping:
            self.fleet.log(f"{why} ignored: shutting down")
            return
        starting = self.fleet.starting()
        line = self.fleet.restarts.request(why, None if starting is None else starting.number)
        if line is not None:
            self.fleet.log(line)
            return
        self.fleet.new_generation(self.fleet.now)

    def _on_spawned(self, ev: Spawned, now: float) -> None:
        self._apply_overrides(ev.overrides)
        g = self.fleet.gens.get(ev.number)
        if g is None:  # pragma: no cover - a generation waits for its spawns
            self._stop_leftover(ev.pid, now)  # never a process nobody supervises
            return
        g.answered(ev.slot)
        w = Worker(ev.number, ev.slot, ev.pid, State.STARTING, spawned_at=now)
        w.jitter = ev.jitter * self.fleet.policy.auto_restart_jitter
        if g.state is State.ACTIVE:
            old = [x for x in g.in_slot(ev.slot) if x.state is State.ACTIVE]
            w.replaces = old[0].pid if old else None
        g.workers.append(w)
        self.fleet.log(f"starting new worker {ev.pid}", w)
        self.scale.spawned(g, ev.slot)
        if g.state is State.RETIRING:
            # Its generation was told to go while it was being spawned: it goes too.
            w.failed_start = g.started_at is None
            sig = signal_name(g.retire_signal)
            self.fleet.log(
                f"generation {g.number} is retiring; sending {sig} to new worker {w.pid}", w
            )
            self.fleet.retire_worker(w, g.retire_signal, now, g.retire_grace)

    def _on_spawn_failed(self, ev: SpawnFailed, now: float) -> None:
        self.fleet.log(f"failed to start generation {ev.number}: {ev.reason}", None)
        g = self.fleet.gens.get(ev.number)
        if g is None:  # pragma: no cover - a generation waits for its spawns
            return
        g.answered(ev.slot)
        if g.state is State.RETIRING:
            self.fleet.end_if_empty(g)  # told to go meanwhile: nothing to retry
            return
        if g.state is State.STARTING:
            if not self.fleet.record.ever_started and len(self.fleet.gens) == 1:
                self.stop.give_up(g, ev, now)
                return
            self._fail_generation(g, now, ev.reason)
            return
        ghost = Worker(ev.number, ev.slot, 0, State.STARTING, spawned_at=now)
        self._slot_failed(ghost, now)

    def _on_leftovers(self, ev: Leftovers, now: float) -> None:
        for pid in ev.pids:
            if pid in self.fleet.leftover_pids or self.fleet.by_pid(pid) is not None:
                continue
            self.fleet.log(f"stopping leftover process {pid}: the worker that started it is gone")
            self._stop_leftover(pid, now)

    def _stop_leftover(self, pid: int, now: float) -> None:
        self.fleet.leftover_pids.stopping(pid, now)
        self.fleet.out.append(Kill(pid, signal.SIGTERM))

    def _on_exited(self, ev: Exited, now: float) -> None:
        w = self.fleet.by_pid(ev.pid)
        if w is None:
            if self.fleet.leftover_pids.exited(ev.pid):
                self.fleet.log(f"leftover process {ev.pid} exited, status:{ev.status} "
                          f"({ev.description})")
            return
        g = self.fleet.gens[w.number]
        # Whatever the main process left in its process group goes with it.
        self.fleet.out.append(Kill(w.pid, signal.SIGTERM, group=True))
        st = f"status:{ev.status} ({ev.description})"
        if w.state is State.STARTING:
            self._died_starting(w, g, now, st, ev.description)
            return
        was_current = g is self.fleet.current()
        was_active = w.state is State.ACTIVE
        # worker ACTIVE -> EXITED, RETIRING -> EXITED
        self.fleet.move(w, State.EXITED)
        if g.state is State.STARTING:
            # One of several workers started, then died before its siblings did.
            self.fleet.log(f"new worker {w.pid} died during its generation's start, {st}", w)
            self._fail_generation(g, now, f"a worker exited during the start ({ev.description})")
            return
        if self.stop.stopping:
            self.fleet.log(f"worker {w.pid} died, {st}", w)
        elif w.failed_start:
            self.fleet.log(f"worker {w.pid} (never ready) exited, {st}", w)
        elif was_current and was_active and self.fleet.policy.workers > 1:
            self._slot_died(w, g, now, st)
        elif was_current and was_active and self.fleet.starting() is None:
            self._generation_died(w, now, st)
        else:
            self.fleet.log(f"old worker {w.pid} died, {st}", w)
        self._end_after_exit(g, was_current)

    def _died_starting(self, w: Worker, g: Generation, now: float, st: str, how: str) -> None:
        # worker STARTING -> FAILED
        self.fleet.log(f"new worker {w.pid} seems to have failed to start, exit {st}", w)
        self.fleet.move(w, State.FAILED)
        if g.state is State.STARTING:
            self._fail_generation(g, now, f"exited before it started ({how})")
        else:
            self._slot_failed(w, now)

    def _slot_died(self, w: Worker, g: Generation, now: float, st: str) -> None:
        """A serving worker of the current generation (--workers) died."""
        replacement = [x for x in g.in_slot(w.slot) if x.state is State.STARTING]
        if replacement:
            self.fleet.log(f"worker {w.pid} (slot {w.slot}) died, {st}", w)
            return
        self.fleet.log(f"worker {w.pid} (slot {w.slot}) died unexpectedly with {st}", w)
        if self._crashed(w, now):
            self.fleet.spawn_slot(g, w.slot, "replacing it")
            return
        self.fleet.slots.retry(g.number, w.slot, now + self.fleet.backoff_delay())
        self.fleet.log(
            f"slot {w.slot}: next attempt in {self.fleet.backoff_delay():.3g} s "
            f"(crashes in a row: {self.fleet.failures})",
            w,
        )

    def _generation_died(self, w: Worker, now: float, st: str) -> None:
        """The serving generation's only worker died, with nothing starting."""
        self.fleet.log(f"worker {w.pid} died unexpectedly with {st}, restarting", w)
        if self._crashed(w, now):
            self.fleet.new_generation(now)
            return
        at = now + self.fleet.backoff_delay()
        self.fleet.restarts.retry_at(at)
        self.fleet.log(
            f"it had run only {self.fleet.uptime(w, now):.3g} s since its start; next "
            f"attempt in {at - now:.3g} s (crashes in a row: {self.fleet.failures})"
        )

    def _end_after_exit(self, g: Generation, was_current: bool) -> None:
        """A generation whose last worker exited is gone, unless one is still being
        made for it (a slot's replacement: that ends it later)."""
        if g.workers or g.pending or (g.state is State.ACTIVE and self.fleet.policy.workers > 1
                                      and was_current and not self.stop.stopping):
            return
        # generation ACTIVE -> EXITED, RETIRING -> EXITED
        self.fleet.move(g, State.EXITED)
        cur = self.fleet.current()
        if was_current and cur is not None and cur.retire_at is not None:
            cur.retire_at = None  # its successor is gone: it keeps serving
            self.fleet.log(f"generation {cur.number} keeps serving", None)

    def _on_signal(self, signum: int, now: float) -> None:
        if signum == signal.SIGHUP:
            if not self.stop.stopping:
                self.fleet.log("received HUP, spawning a new worker")
                if self.fleet.record.ever_started:
                    # Every reload request gets its RELOADING=1 (systemd's
                    # Type=notify-reload matches it by the timestamp), even one
                    # coalesced into a pending restart; READY=1 ends them all.
                    usec = int(now * 1_000_000)
                    self.fleet.out.append(NotifyUpstream(f"RELOADING=1\nMONOTONIC_USEC={usec}"))
            self._request_restart("HUP")
            return
        if signum in (signal.SIGTTIN, signal.SIGTTOU):
            self.scale.step(signum)
            return
        if signum in STOP_SIGNALS:
            self.stop.on_signal(signum, now)

    def _on_notify(self, ev: Notified, now: float) -> None:
        g = self.fleet.gens.get(ev.number)
        if g is None:
            return
        targets = [w for w in g.workers if ev.pid is None or w.pid == ev.pid]
        if ev.pid is None and len(targets) > 1:
            # From a helper we cannot place: it speaks for the workers still starting.
            targets = [w for w in targets if w.state is State.STARTING][:1] or targets[:1]
        for w in targets:
            if "STATUS" in ev.fields and ev.fields["STATUS"] != w.status:
                w.status = ev.fields["STATUS"]
            if ev.fields.get("READY") == "1" and not w.ready:
                w.ready = True
                if w.state is State.STARTING:
                    self._worker_started(w, now, "ready")

    def _on_measured(self, ev: Measured, now: float) -> None:
        cur = self.fleet.current()
        if not self.fleet.policy.checks_health or cur is None:
            return
        busy = self.fleet.slots.busy_slots(cur)
        for w in cur.workers:
            if w.pid not in ev.usage and w.pid not in ev.fds:
                continue
            w.memory = ev.usage.get(w.pid)
            fds = ev.fds.get(w.pid)
            w.fds = None if fds is None else fds.count
            for pid, why in health.newly_unreadable(w, fds):
                self.fleet.log(f"cannot read the fds of process {pid} ({why}); not counted", w)
            if w.state is not State.ACTIVE or self._being_replaced(w, busy):
                w.over_limit = w.over_fds = 0  # a verdict is already being carried out
                continue
            verdict = health.verdict(w, fds, self.fleet.policy)
            if verdict is None:
                continue
            what, why = verdict
            if self.fleet.policy.workers > 1:
                self.fleet.log(f"worker {w.pid} (slot {w.slot}) {what}; replacing it", w)
                self.fleet.slots.enqueue(cur.number, w.slot, why)
                busy.add(w.slot)
            else:
                self.fleet.log(f"generation {cur.number} {what}; restarting", w)
                self._request_restart(why)

    def _being_replaced(self, w: Worker, busy: set[int]) -> bool:
        """Whether ``w`` already has a successor on its way (no second verdict then);
        ``busy``: the busy slots of its generation."""
        if self.fleet.policy.workers == 1:
            return self.fleet.starting() is not None or self.fleet.restarts.pending
        return w.slot in busy

    # ---- timers -----------------------------------------------------------

    def run_due(self, now: float) -> None:
        """Fire every timed rule that is due, in the table's order; each rule's
        due items are found after the rules before it fired (a generation that
        just started retires its predecessors in this same pass)."""
        for _name, due, fire in TIMERS:
            items = [item for when, item in due(self) if now >= when]
            if items:
                fire(self, items, now)

    # Each rule: ``_due_X`` lists (when, item) of what it waits for (a pure
    # query), ``_fire_X`` does it for the items that are due.

    def _due_starts(self) -> list[tuple[float, Any]]:
        return [
            (self._start_deadline(w), w)
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
                self._not_ready(w, now)
            else:
                self._worker_started(w, now, f"alive after {p.interval:g} s")

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
        return list(self.fleet.leftover_pids.due(self.fleet.policy.stop_timeout))

    def _fire_leftovers(self, items: list[int], now: float) -> None:
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
        """Slots of the current generation to try again after the backoff."""
        cur = self.fleet.current()
        if self.stop.stopping or cur is None:
            return []
        return self.fleet.slots.waiting(cur.number)

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

    def _not_ready(self, w: Worker, now: float) -> None:
        p = self.fleet.policy
        self.fleet.log(f"new worker {w.pid} not ready after {p.ready_timeout:g} s; stopping it", w)
        g = self.fleet.gens[w.number]
        if g.state is State.STARTING:
            self._fail_generation(g, now, f"not ready within {p.ready_timeout:g} s")
        else:
            w.failed_start = True
            self.fleet.retire_worker(w, p.signal_on_hup, now, p.not_ready_grace)
            self._slot_failed(w, now)

    # ---- helpers ----------------------------------------------------------

    def _apply_overrides(self, env: dict[str, str]) -> None:
        """KILL_OLD_DELAY, ENABLE_AUTO_RESTART, AUTO_RESTART_INTERVAL from an envdir.

        Applied on top of the configured policy, so a removed file reverts.
        """
        p = self.fleet.base_policy
        name = ""
        try:
            if "KILL_OLD_DELAY" in env:
                name = "KILL_OLD_DELAY"
                p = replace(p, kill_old_delay=parse_seconds(env[name]))
            if "ENABLE_AUTO_RESTART" in env:
                p = replace(p, auto_restart=env["ENABLE_AUTO_RESTART"] not in ("", "0"))
            if env.get("AUTO_RESTART_INTERVAL"):
                name = "AUTO_RESTART_INTERVAL"
                interval = parse_seconds(env[name], allow_zero=False)
                p = replace(p, auto_restart_interval=interval)
        except SpecError as exc:
            # One bad file must not stop the starter: it goes on with the configured values.
            self.fleet.log(f"ignoring the envdir's policy values: {name}: {exc}")
            return
        self.fleet.policy = p

    def snapshot(self) -> Publish:
        """What the status files show, as of now: a pure query. The loop writes
        it once per batch of events, when it differs from the last one written."""
        at = self.fleet.restarts.respawn_at
        due = [at] if at is not None else []
        due += self.fleet.slots.retry_at.values()
        return Publish(
            worker_views(self.fleet.gens.values()), self.fleet.last_number,
            self.fleet.record.number, self.fleet.record.reason, self.fleet.record.at,
            min(due) if due else None, *self.fleet.last_event,
            self.fleet.policy.workers, tuple(self.scale.asks.answers),
        )

    # ---- the hand-over of an upgrade (upgrade.py) -----------------------------

    # The envdir's values in force (Spawned overrides), on top of the configured policy.
    _OVERRIDDEN = ("kill_old_delay", "auto_restart", "auto_restart_interval")

    def to_dict(self) -> dict[str, Any]:
        """Plain values; times are the monotonic clock's readings, which an
        exec (same process, same boot) leaves valid."""
        d = self.fleet.to_dict()
        d.update(self.stop.to_dict())
        d.update(self.scale.to_dict())  # optional keys: a format-1 hand-over reads without
        d["policy"] = {name: getattr(self.fleet.policy, name) for name in self._OVERRIDDEN}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], policy: Policy) -> Supervisor:
        """The core as ``to_dict`` left it, under ``policy`` (the configured one)."""
        sup = cls(policy)
        sup.fleet.load(d)
        sup.stop.load(d)
        sup.fleet.policy = replace(policy, **d.get("policy", {}))
        sup.scale.load(d)
        return sup


# Every timed rule of the core, in the order a pass fires them: (name, when
# each of its items is due, what fires for the due ones). ``next_deadline`` is
# the minimum over it and ``run_due`` fires from it: one place for each timer.
TIMERS = (
    ("start check", Supervisor._due_starts, Supervisor._fire_starts),
    ("retire replaced generations", Supervisor._due_retire, Supervisor._fire_retire),
    ("kill after the grace", Supervisor._due_kills, Supervisor._fire_kills),
    ("kill leftovers", Supervisor._due_leftovers, Supervisor._fire_leftovers),
    ("new generation after the backoff", Supervisor._due_respawn, Supervisor._fire_respawn),
    ("slot again after the backoff", Supervisor._due_slot_respawn, Supervisor._fire_slot_respawn),
    ("auto-restart", Supervisor._due_auto_restart, Supervisor._fire_auto_restart),
    ("worker auto-restart", Supervisor._due_worker_auto, Supervisor._fire_worker_auto),
    ("in-place replacement", Supervisor._due_replace, Supervisor._fire_replace),
    ("health check", Supervisor._due_measure, Supervisor._fire_measure),
)
