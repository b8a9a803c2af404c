"""The pure core: generations, their workers, their states, and what to do about each event.

``Supervisor.handle(event, now)`` returns a list of actions; nothing here calls
the OS or reads a clock, so every rule of the spec is a unit test. Timers are
not stored: each timed rule (start checks, retirements, kill escalations,
respawns, auto-restart, health checks) is one entry of the ``TIMERS`` table
(timers.py), a query of when it is due, derived from the state, and what
fires then; ``next_deadline()`` is their minimum, ``run_due()`` (after every
event, and on a ``Tick``) fires what is due. The loop sleeps until that
deadline or an event.

``Supervisor`` is the facade the loop, the upgrade and the tests use; the
rules are in its parts, each a small class over the ``Fleet`` they share
(fleet.py: generations, workers, their bookkeeping, the one place states
change): starts.py (restart requests, spawns, readiness), exits.py (children
gone), retries.py (failures counted, next attempts), verdicts.py (health
checks), scaling.py (the live count, a worker restarted alone on request),
stopping.py (TERM/INT/QUIT, the exit decision), timers.py. The data
are in generations.py and events.py; workers replaced alone in
replacements.py, the count of failures in backoff.py, limits in health.py.

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

from . import rolling
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
from .exits import Exits
from .failures import HINT_AFTER_FAILURES
from .fleet import Fleet
from .generations import Generation, State, Worker
from .policy import Policy
from .retries import Retries
from .scaling import Scaling
from .starts import Starts
from .stopping import STOP_SIGNALS, Stopping
from .timers import TIMERS, Timers
from .values import SpecError, parse_seconds
from .verdicts import Verdicts

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
        self.retries = Retries(self.fleet, self.stop, self.scale)  # failures, next attempts
        self.starts = Starts(  # restart requests, spawns, readiness
            self.fleet, self.stop, self.retries, self.scale
        )
        self.exits = Exits(self.fleet, self.stop, self.retries)  # children gone
        self.verdicts = Verdicts(self.fleet, self.starts)  # health checks' measures
        self.timers = Timers(self.fleet, self.stop, self.starts)  # every timed rule

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

    def next_deadline(self) -> Optional[float]:
        """When the next timed rule is due, or None: then only an event can wake us.

        The minimum over the one table of timed rules (``TIMERS``, timers.py),
        the same table ``run_due`` fires from: a rule cannot be in one and not
        the other.
        """
        return self.timers.next_deadline()

    def run_due(self, now: float) -> None:
        """Fire every timed rule that is due (after every event, and on a Tick)."""
        self.timers.run_due(now)

    # ---- the one entry point ---------------------------------------------

    def handle(self, event: Event, now: float) -> list[Action]:
        """The actions for ``event`` at ``now``: its rule, then every timed rule
        that is due, then the exit decision."""
        self.fleet.begin(now)
        if isinstance(event, Start):
            self.fleet.new_generation(now)
        elif isinstance(event, Spawned):
            self._apply_overrides(event.overrides)
            self.starts.on_spawned(event, now)
        elif isinstance(event, SpawnFailed):
            self.starts.on_spawn_failed(event, now)
        elif isinstance(event, Exited):
            self.exits.on_exited(event, now)
        elif isinstance(event, Signalled):
            self._on_signal(event.signum, now)
        elif isinstance(event, Notified):
            self.starts.on_notify(event, now)
        elif isinstance(event, Measured):
            self.verdicts.on_measured(event, now)
        elif isinstance(event, Leftovers):
            self.exits.on_leftovers(event, now)
        elif isinstance(event, Asked):
            self.scale.asked(event.id, event.kind, event.value)
        self.scale.catch_up()
        if not self.stop.done:
            self.run_due(now)
        self.scale.settle()
        self.stop.settle()
        return self.fleet.out

    def _on_signal(self, signum: int, now: float) -> None:
        if signum == signal.SIGHUP:
            self.starts.on_hup(now)
        elif signum in (signal.SIGTTIN, signal.SIGTTOU):
            self.scale.step(signum)
        elif signum in STOP_SIGNALS:
            self.stop.on_signal(signum, now)

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
            self.scale.count, tuple(self.scale.asks.answers),
            rolling.progress(self.fleet.policy, self.fleet.starting(),
                             self.fleet.current() is not None),
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
