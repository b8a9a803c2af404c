"""The pure core: generations, their states, and what to do about each event.

``Supervisor.handle(event, now)`` returns a list of actions; nothing here calls
the OS or reads a clock, so every rule of the spec is a unit test. Timers are
not stored: ``next_deadline()`` derives the next due time from the state (start
checks, retirements, kill escalations, respawns, auto-restart), and a ``Tick``
performs whatever is due. The loop sleeps until that deadline or an event.
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass, field, replace
from typing import Optional, Union

from .spec import signal_name


class State(enum.Enum):
    STARTING = "starting"  # spawned, start check or readiness pending
    ACTIVE = "active"  # started; the newest ACTIVE one is the current generation
    RETIRING = "retiring"  # signalled to exit (replaced, stopping, or not ready in time)
    EXITED = "exited"  # gone after having started
    FAILED = "failed"  # gone before it started


# Every allowed edge; _transition asserts against this table.
_EDGES = {
    (State.STARTING, State.ACTIVE),
    (State.STARTING, State.FAILED),
    (State.STARTING, State.RETIRING),
    (State.ACTIVE, State.RETIRING),
    (State.ACTIVE, State.EXITED),
    (State.RETIRING, State.EXITED),
}


@dataclass(frozen=True)
class Policy:
    """The timing and signal rules; ``kill_old_delay=None`` means the original's default."""

    interval: float = 1.0
    signal_on_hup: int = signal.SIGTERM
    signal_on_term: int = signal.SIGTERM
    kill_old_delay: Optional[float] = None
    auto_restart: bool = False
    auto_restart_interval: float = 360.0
    wait_ready: bool = False
    ready_timeout: float = 60.0
    stop_timeout: Optional[float] = None
    backoff_max: float = 30.0

    @property
    def effective_kill_old_delay(self) -> float:
        if self.kill_old_delay is not None:
            return self.kill_old_delay
        return 5.0 if self.auto_restart else 0.0

    @property
    def not_ready_grace(self) -> float:
        """How long a generation stopped for not being ready gets before SIGKILL."""
        return self.stop_timeout if self.stop_timeout is not None else 10.0


@dataclass
class Generation:
    number: int
    pid: int
    state: State
    spawned_at: float
    started_at: Optional[float] = None
    ready: bool = False  # READY=1 received
    retire_at: Optional[float] = None  # ACTIVE but replaced: when to signal it
    signalled_at: Optional[float] = None  # RETIRING since
    kill_after: Optional[float] = None  # seconds after signalled_at before SIGKILL
    killed: bool = False
    failed_start: bool = False  # stopped because it never became ready
    status: str = ""  # last STATUS= it sent


# ---- events ---------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    """The starter is set up: spawn the first generation."""


@dataclass(frozen=True)
class Spawned:
    number: int
    pid: int
    overrides: dict[str, str] = field(default_factory=dict)  # env that tunes the policy


@dataclass(frozen=True)
class SpawnFailed:
    number: int
    reason: str


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


@dataclass(frozen=True)
class Tick:
    """Time passed: perform whatever is due."""


Event = Union[Start, Spawned, SpawnFailed, Exited, Signalled, Notified, Tick]


# ---- actions --------------------------------------------------------------


@dataclass(frozen=True)
class Spawn:
    number: int


@dataclass(frozen=True)
class Kill:
    pid: int
    signum: int
    group: bool = False  # the whole process group (escalation), not just the main pid


@dataclass(frozen=True)
class Log:
    message: str
    number: Optional[int] = None
    pid: Optional[int] = None


@dataclass(frozen=True)
class GenView:
    number: int
    pid: int
    state: State
    spawned_at: float
    started_at: Optional[float]
    ready: bool
    status: str


@dataclass(frozen=True)
class Publish:
    """Write the status files from this snapshot."""

    generations: tuple[GenView, ...]
    last_number: int
    failed_number: Optional[int]  # newest generation that failed to start
    failed_reason: str


@dataclass(frozen=True)
class NotifyUpstream:
    message: str  # for a NOTIFY_SOCKET the starter itself was given


@dataclass(frozen=True)
class Exit:
    code: int


Action = Union[Spawn, Kill, Log, Publish, NotifyUpstream, Exit]


_STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})


class Supervisor:
    """Generations and the rules that move them. One instance per starter."""

    def __init__(self, policy: Policy) -> None:
        self.base_policy = policy  # as configured; envdir overrides apply on top
        self.policy = policy
        self.gens: dict[int, Generation] = {}
        self.last_number = 0
        self.stopping = False
        self.done = False
        self.restart_pending = False  # a HUP arrived while a start was in progress
        self.respawn_at: Optional[float] = None
        self.failures = 0  # consecutive failed starts, for the backoff
        self.last_failure_at: Optional[float] = None
        self.last_success_at: Optional[float] = None
        self.failed_number: Optional[int] = None
        self.failed_reason = ""
        self.ever_started = False
        self.exit_code = 0
        self.reloading = False  # a HUP-driven restart systemd is waiting on
        self._out: list[Action] = []
        self._dirty = False

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

    def by_pid(self, pid: int) -> Optional[Generation]:
        for g in self.gens.values():
            if g.pid == pid:
                return g
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

    def backoff_delay(self) -> float:
        p = self.policy
        return float(
            min(p.interval * 2 ** max(self.failures - 1, 0), max(p.backoff_max, p.interval))
        )

    def next_deadline(self) -> Optional[float]:
        """When the next timed rule is due, or None: then only an event can wake us."""
        times: list[float] = []
        p = self.policy
        for g in self.gens.values():
            if g.state is State.STARTING:
                times.append(g.spawned_at + (p.ready_timeout if p.wait_ready else p.interval))
            elif g.state is State.ACTIVE and g.retire_at is not None:
                times.append(g.retire_at)
            elif g.state is State.RETIRING and g.kill_after is not None and not g.killed:
                assert g.signalled_at is not None
                times.append(g.signalled_at + g.kill_after)
        if self.respawn_at is not None:
            times.append(self.respawn_at)
        auto = self._auto_restart_due()
        if auto is not None:
            times.append(auto[0])
        return min(times) if times else None

    # ---- the one entry point ---------------------------------------------

    def handle(self, event: Event, now: float) -> list[Action]:
        self._out = []
        if isinstance(event, Start):
            self._spawn()
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
        self._run_due(now)
        if self.stopping and not self.gens and not self.done:
            self.done = True
            self._log("exiting")
            self._dirty = True
        if self._dirty:
            self._dirty = False
            self._out.append(self._snapshot())
        if self.done:
            self._out.append(Exit(self.exit_code))
        return self._out

    # ---- edges ------------------------------------------------------------

    def _transition(self, g: Generation, to: State) -> None:
        assert (g.state, to) in _EDGES, f"generation {g.number}: {g.state} -> {to}"
        g.state = to
        self._dirty = True
        if to in (State.EXITED, State.FAILED):
            del self.gens[g.number]

    def _started(self, g: Generation, now: float, why: str) -> None:
        # STARTING -> ACTIVE
        self._transition(g, State.ACTIVE)
        g.started_at = now
        self.ever_started = True
        self.last_success_at = now
        self._log(f"new worker {g.pid} is now running ({why})", g)
        olds = [o for o in self.gens.values() if o.state is State.ACTIVE and o is not g]
        sig = signal_name(self.policy.signal_on_hup)
        pids = ",".join(str(o.pid) for o in sorted(olds, key=lambda o: o.pid)) or "none"
        self._log(f"new worker is now running, sending {sig} to old workers:{pids}")
        delay = self.policy.effective_kill_old_delay
        if olds and delay > 0:
            self._log(f"sleeping {delay:g} secs before killing old workers")
        for o in olds:
            o.retire_at = now + delay if o.retire_at is None else min(o.retire_at, now + delay)
        upstream = f"READY=1\nSTATUS=generation {g.number} (pid {g.pid}) is serving"
        self._out.append(NotifyUpstream(upstream))
        self.reloading = False
        if self.restart_pending:
            self.restart_pending = False
            self._log("starting the restart that was requested during the last start")
            self._spawn()

    def _retire(self, g: Generation, signum: int, now: float, grace: Optional[float]) -> None:
        # ACTIVE -> RETIRING, or STARTING -> RETIRING
        self._transition(g, State.RETIRING)
        g.retire_at = None
        g.signalled_at = now
        g.kill_after = grace
        self._out.append(Kill(g.pid, signum))

    def _failed(self, g: Generation, now: float, reason: str) -> None:
        """A start attempt failed: count it and schedule the next one with backoff."""
        self.failed_number = g.number
        self.failed_reason = reason
        self._count_failure(now)
        if self.stopping:
            return
        delay = self.backoff_delay()
        self.respawn_at = max(g.spawned_at + delay, now)
        wait = self.respawn_at - now
        self._log(f"next attempt in {wait:.3g} s (failed starts in a row: {self.failures})")
        self.restart_pending = False  # the next attempt runs the newest code anyway

    def _count_failure(self, now: float) -> None:
        # A generation that started and outlived the longest backoff delay
        # since the last failure resets the count.
        if (
            self.last_success_at is not None
            and (self.last_failure_at is None or self.last_success_at > self.last_failure_at)
            and now - self.last_success_at >= self.policy.backoff_max
        ):
            self.failures = 0
        self.failures += 1
        self.last_failure_at = now

    # ---- event handlers ---------------------------------------------------

    def _spawn(self) -> None:
        self.respawn_at = None
        self.last_number += 1
        self._out.append(Spawn(self.last_number))

    def _request_restart(self, now: float, why: str) -> None:
        if self.stopping:
            self._log(f"{why} ignored: shutting down")
            return
        starting = self.starting()
        if starting is not None:
            if self.restart_pending:
                self._log(f"{why}: a restart is already pending; coalesced")
            else:
                self._log(
                    f"{why}: generation {starting.number} is still starting; "
                    "one more restart will follow it"
                )
            self.restart_pending = True
            return
        self._spawn()

    def _on_spawned(self, ev: Spawned, now: float) -> None:
        self._apply_overrides(ev.overrides)
        g = Generation(ev.number, ev.pid, State.STARTING, spawned_at=now)
        self.gens[ev.number] = g
        self._dirty = True
        self._log(f"starting new worker {ev.pid}", g)

    def _on_spawn_failed(self, ev: SpawnFailed, now: float) -> None:
        self._log(f"failed to start generation {ev.number}: {ev.reason}", None)
        if not self.ever_started and not self.gens:
            self.stopping = True  # nothing runs and nothing can: give up loudly
            self.failed_number, self.failed_reason = ev.number, ev.reason
            self._log("giving up: the first generation could not be started")
            self.exit_code = 1
            self.done = True
            return
        g = Generation(ev.number, 0, State.STARTING, spawned_at=now)
        self.gens[ev.number] = g
        # STARTING -> FAILED
        self._transition(g, State.FAILED)
        self._failed(g, now, ev.reason)

    def _on_exited(self, ev: Exited, now: float) -> None:
        g = self.by_pid(ev.pid)
        if g is None:
            return
        # Whatever the main process left in its process group goes with it.
        self._out.append(Kill(g.pid, signal.SIGTERM, group=True))
        st = f"status:{ev.status} ({ev.description})"
        if g.state is State.STARTING:
            # STARTING -> FAILED
            self._log(f"new worker {g.pid} seems to have failed to start, exit {st}", g)
            self._transition(g, State.FAILED)
            self._failed(g, now, f"exited before it started ({ev.description})")
            return
        was_current = g is self.current()
        # ACTIVE -> EXITED, RETIRING -> EXITED
        self._transition(g, State.EXITED)
        cur = self.current()
        if was_current and cur is not None and cur.retire_at is not None:
            cur.retire_at = None  # its successor is gone: it keeps serving
            self._log(f"generation {cur.number} keeps serving", cur)
        if self.stopping:
            self._log(f"worker {g.pid} died, {st}", g)
        elif g.failed_start:
            self._log(f"worker {g.pid} (never ready) exited, {st}", g)
        elif was_current and self.starting() is None:
            self._log(f"worker {g.pid} died unexpectedly with {st}, restarting", g)
            self._count_failure(now)
            if self.failures <= 1:
                self._spawn()
            else:
                self.respawn_at = now + self.backoff_delay()
                self._log(
                    f"it had run only {now - g.spawned_at:.3g} s; next attempt in "
                    f"{self.respawn_at - now:.3g} s (crashes in a row: {self.failures})"
                )
        else:
            self._log(f"old worker {g.pid} died, {st}", g)

    def _on_signal(self, signum: int, now: float) -> None:
        name = signal_name(signum)
        if signum == signal.SIGHUP:
            if not self.stopping:
                self._log("received HUP, spawning a new worker")
                if self.starting() is None:
                    self.reloading = True
                    usec = int(now * 1_000_000)
                    self._out.append(NotifyUpstream(f"RELOADING=1\nMONOTONIC_USEC={usec}"))
            self._request_restart(now, "HUP")
            return
        if signum not in _STOP_SIGNALS:
            return
        if self.stopping:
            self._log(f"received {name} while stopping; still waiting for workers")
            return
        self.stopping = True
        self.restart_pending = False
        self.respawn_at = None
        sig = self.policy.signal_on_term if signum == signal.SIGTERM else signal.SIGTERM
        live = sorted(self.gens.values(), key=lambda g: g.pid)
        pids = ",".join(str(g.pid) for g in live)
        self._log(f"received {name}, sending {signal_name(sig)} to all workers:{pids}")
        self._out.append(NotifyUpstream("STOPPING=1"))
        for g in live:
            if g.state is State.RETIRING:
                continue  # already told to go; its own deadline still holds
            self._retire(g, sig, now, self.policy.stop_timeout)

    def _on_notify(self, ev: Notified, now: float) -> None:
        g = self.gens.get(ev.number)
        if g is None:
            return
        if "STATUS" in ev.fields and ev.fields["STATUS"] != g.status:
            g.status = ev.fields["STATUS"]
            self._dirty = True
        if ev.fields.get("READY") == "1" and not g.ready:
            g.ready = True
            self._dirty = True
            if g.state is State.STARTING:
                self._started(g, now, "ready")

    # ---- timers -----------------------------------------------------------

    def _run_due(self, now: float) -> None:
        p = self.policy
        # Starts first, so that a generation that just started retires its
        # predecessors in this same pass when there is no kill-old delay.
        for g in sorted(self.gens.values(), key=lambda g: g.number):
            if g.state is not State.STARTING:
                continue
            if p.wait_ready:
                if now >= g.spawned_at + p.ready_timeout:
                    self._log(
                        f"new worker {g.pid} not ready after {p.ready_timeout:g} s; stopping it", g
                    )
                    g.failed_start = True
                    self._retire(g, p.signal_on_hup, now, p.not_ready_grace)
                    self._failed(g, now, f"not ready within {p.ready_timeout:g} s")
            elif now >= g.spawned_at + p.interval:
                self._started(g, now, f"alive after {p.interval:g} s")
        due = [
            g
            for g in self.olds()
            if g.state is State.ACTIVE and g.retire_at is not None and now >= g.retire_at
        ]
        if due:
            self._log("killing old workers")
        for g in due:
            self._retire(g, p.signal_on_hup, now, p.stop_timeout)
        for g in sorted(self.gens.values(), key=lambda g: g.number):
            if (
                g.state is State.RETIRING
                and g.kill_after is not None
                and not g.killed
                and g.signalled_at is not None
                and now >= g.signalled_at + g.kill_after
            ):
                g.killed = True
                self._log(
                    f"worker {g.pid} did not exit {g.kill_after:g} s after it was signalled; "
                    "sending KILL to its process group",
                    g,
                )
                self._out.append(Kill(g.pid, signal.SIGKILL, group=True))
        due_respawn = self.respawn_at is not None and now >= self.respawn_at
        if due_respawn and not self.stopping and self.starting() is None:
            self._spawn()
        auto = self._auto_restart_due()
        if auto is not None and now >= auto[0]:
            forced = "forced, " if auto[1] else ""
            self._log(f"autorestart triggered ({forced}interval={p.auto_restart_interval:g})")
            self._spawn()

    def _auto_restart_due(self) -> Optional[tuple[float, bool]]:
        """(when, forced) of the next auto-restart, by the original's two rules."""
        p = self.policy
        if not p.auto_restart or self.stopping or self.respawn_at is not None:
            return None
        cur = self.current()
        if cur is None or cur.started_at is None or self.starting() is not None:
            return None
        if self.olds():
            return (cur.started_at + 2 * p.auto_restart_interval, True)
        return (cur.started_at + p.auto_restart_interval, False)

    # ---- helpers ----------------------------------------------------------

    def _apply_overrides(self, env: dict[str, str]) -> None:
        """KILL_OLD_DELAY, ENABLE_AUTO_RESTART, AUTO_RESTART_INTERVAL from an envdir.

        Applied on top of the configured policy, so a removed file reverts.
        """
        p = self.base_policy
        try:
            if "KILL_OLD_DELAY" in env:
                p = replace(p, kill_old_delay=max(float(env["KILL_OLD_DELAY"]), 0.0))
            if "ENABLE_AUTO_RESTART" in env:
                p = replace(p, auto_restart=env["ENABLE_AUTO_RESTART"] not in ("", "0"))
            if env.get("AUTO_RESTART_INTERVAL"):
                interval = float(env["AUTO_RESTART_INTERVAL"])
                if interval > 0:
                    p = replace(p, auto_restart_interval=interval)
        except ValueError as exc:
            self._log(f"ignoring a bad value from the envdir: {exc}")
            return
        self.policy = p

    def _log(self, message: str, g: Optional[Generation] = None) -> None:
        if g is None:
            self._out.append(Log(message))
        else:
            self._out.append(Log(message, g.number, g.pid or None))

    def _snapshot(self) -> Publish:
        views = tuple(
            GenView(g.number, g.pid, g.state, g.spawned_at, g.started_at, g.ready, g.status)
            for g in sorted(self.gens.values(), key=lambda g: g.number)
        )
        return Publish(views, self.last_number, self.failed_number, self.failed_reason)
