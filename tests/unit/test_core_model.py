"""A model-based test of the pure core (start_server.core) with Hypothesis.

Random sequences of every event the core accepts are fed to a ``Supervisor``
the way the loop feeds them: one FIFO queue, each event of a pass handled at
the pass's time, and what an action starts (a Spawn's ``Spawned`` or
``SpawnFailed``, a Measure's ``Measured``) queued behind what was already
waiting. Around it a small model of the OS records which processes were
spawned, which have exited, and which leftovers they left. After every event
the invariants of ``CoreModel._check`` hold, and at the end TERM (with every
process exiting as told) always ends in ``Exit`` with nothing left.

The default profile runs a few hundred sequences; for a long run:

    HYPOTHESIS_PROFILE=soak .venv/bin/pytest tests/unit/test_core_model.py

(100 000 sequences; the profiles are in tests/conftest.py).
"""

from __future__ import annotations

import signal
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Optional, Protocol

import pytest
from hypothesis import event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from start_server.core import (
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
    Policy,
    Signalled,
    Spawn,
    Spawned,
    SpawnFailed,
    Start,
    State,
    Supervisor,
    Tick,
)
from start_server.rolling import processes

if TYPE_CHECKING:
    from start_server.core import Action, Event

SIGNALS = (
    signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
    signal.SIGTTIN, signal.SIGTTOU,
)
ASKED = {  # a client's request (--scale, --restart --worker): kind -> values
    "scale": ("1", "2", "3", "+1", "+2", "-1", "-2", "0", "4097", "x"),
    "worker": ("0", "1", "2", "5", "x"),
    "bogus": ("1",),
}
STATUSES = {  # raw wait status -> its description
    0: "exit code 0", 256: "exit code 1", 768: "exit code 3",
    9: "killed by SIGKILL", 15: "killed by SIGTERM", 134: "killed by SIGABRT (core dumped)",
}
ENVDIR_VALUES = {
    "KILL_OLD_DELAY": ("0", "0.5", "3", "-1", "soon", ""),
    "ENABLE_AUTO_RESTART": ("0", "1", ""),
    "AUTO_RESTART_INTERVAL": ("2", "30", "0", "-5", "x", ""),
}
MAX_STEPS_TO_EXIT = 400


class Draws(Protocol):
    """Where the model's choices come from: Hypothesis, or fixed ones at teardown."""

    def draw(self, strategy: st.SearchStrategy[Any], label: Any = None) -> Any: ...


@dataclass(frozen=True)
class Before:
    """What the invariants compare with: the core before an event."""

    current: Optional[int]  # the newest started generation still serving
    states: dict[int, State]  # worker pid -> state
    last_number: int
    processes: int  # worker processes alive or on their way, as the core counts them


@dataclass
class Proc:
    """A process of the model OS: a worker the core asked for, or a leftover it left."""

    pid: int
    number: int  # the generation it was spawned for (its parent worker's, for a leftover)
    slot: int
    leftover: bool = False
    exited: bool = False  # it is gone (its Exited is queued or handled)
    told: bool = False  # the core has handled its Exited
    known: bool = False  # the core has handled its Spawned
    signalled: bool = False  # the core has sent it (or its group) a signal
    left: bool = False  # a leftover the core stopped waiting for (no --stop-timeout)


def policies() -> st.SearchStrategy[Policy]:
    seconds = st.sampled_from((0.0, 0.5, 1.0, 3.0))
    return st.builds(
        Policy,
        interval=st.sampled_from((0.0, 0.5, 1.0, 2.0)),
        signal_on_hup=st.sampled_from((signal.SIGTERM, signal.SIGUSR1)),
        signal_on_term=st.sampled_from((signal.SIGTERM, signal.SIGQUIT)),
        kill_old_delay=st.one_of(st.none(), seconds),
        auto_restart=st.booleans(),
        auto_restart_interval=st.sampled_from((2.0, 5.0, 30.0)),
        wait_ready=st.booleans(),
        ready_timeout=st.sampled_from((0.5, 2.0, 10.0)),
        stop_timeout=st.one_of(st.none(), st.sampled_from((0.5, 2.0, 10.0))),
        backoff_max=st.sampled_from((0.5, 4.0, 30.0)),
        workers=st.sampled_from((1, 1, 2, 3)),
        auto_restart_jitter=st.sampled_from((0.0, 1.0)),
        max_memory=st.one_of(st.none(), st.just(100)),
        max_open_files=st.one_of(st.none(), st.just(50)),
        max_fd_fraction=st.one_of(st.none(), st.just(0.5)),
        health_check_interval=st.sampled_from((0.5, 2.0)),
        min_uptime=st.sampled_from((0.0, 1.0, 2.0)),
        rolling=st.sampled_from((0, 0, 1, 2)),
    )


LEAVING = "leaving leftover processes running: "

TIMER_LINES = {  # a log line or action of each timed rule, for --hypothesis-show-statistics
    "start check": "is now running (alive after",
    "ready timeout": "not ready after",
    "retire the old": "killing old workers",
    "kill escalation": "sending KILL to its process group",
    "leftover escalation": "leftover process",
    "auto-restart": "autorestart triggered",
    "worker auto-restart": "(auto-restart)",
    "respawn after backoff": "slot ",
}


def _note_timers(actions: list[Action]) -> None:
    text = "\n".join(a.message for a in actions if isinstance(a, Log))
    for name, line in TIMER_LINES.items():
        if line in text:
            event(f"timer fired: {name}")
    if any(isinstance(a, Measure) for a in actions):
        event("timer fired: memory check")
    if any(isinstance(a, Spawn) for a in actions):
        event("timer fired: a spawn")


class CoreModel(RuleBasedStateMachine):
    """The core driven like the loop drives it, against a model of the OS."""

    def __init__(self) -> None:
        super().__init__()
        self.sup = Supervisor(Policy())
        self.now = 0.0
        self.queue: deque[Event] = deque()
        self.procs: dict[int, Proc] = {}
        self.next_pid = 1000
        self.env_files: dict[str, str] = {}
        self.exit_code: Optional[int] = None
        self.highest_spawned = 0  # the newest generation number a Spawn named

    # ---- the model OS -----------------------------------------------------------------

    def _alive(self, leftover: Optional[bool] = None) -> list[int]:
        return sorted(
            p.pid for p in self.procs.values()
            if not p.exited and (leftover is None or p.leftover == leftover)
        )

    def _new_pid(self) -> int:
        self.next_pid += 1
        return self.next_pid

    def _exit(self, data: Draws, pid: int, status: int) -> list[Event]:
        """``pid`` exits; a worker may leave processes behind, re-parented to the starter.

        As the loop gathers them: Leftovers (every child that is no worker the core
        knows) before the exit, when the exit is a worker's.
        """
        proc = self.procs[pid]
        proc.exited = True
        events: list[Event] = []
        if not proc.leftover:
            for _ in range(data.draw(st.sampled_from((0, 0, 0, 1, 2)), label="leftovers")):
                child = self._new_pid()
                self.procs[child] = Proc(child, proc.number, proc.slot, leftover=True)
            known = {w.pid for w in self.sup.workers()}
            if pid in known:
                leftovers = tuple(p for p in self._alive() if p not in known)
                events.append(Leftovers(leftovers))
        events.append(Exited(pid, status, STATUSES[status]))
        return events

    # ---- the loop ---------------------------------------------------------------------

    def _drain(self, data: Draws) -> list[Action]:
        """One pass: handle every queued event in order, at this pass's time;
        returns the actions of the first."""
        first: Optional[list[Action]] = None
        while self.queue and self.exit_code is None:
            event = self.queue.popleft()
            before = self._before()
            actions = self.sup.handle(event, self.now)
            if isinstance(event, Tick):
                _note_timers(actions)
            for action in actions:
                self._perform(data, action)
            self._check(event, actions, before)
            first = actions if first is None else first
        return first or []

    def _perform(self, data: Draws, action: Action) -> None:
        if isinstance(action, Spawn):
            if data.draw(st.integers(0, 19), label="spawn fails") == 0:
                self.queue.append(SpawnFailed(action.number, "exec failed", action.slot))
            else:
                pid = self._new_pid()
                self.procs[pid] = Proc(pid, action.number, action.slot)
                jitter = data.draw(st.sampled_from((0.0, 0.25, 0.999)), label="jitter")
                self.queue.append(Spawned(action.number, pid, dict(self.env_files), action.slot,
                                          jitter))
        elif isinstance(action, Measure):
            sizes = st.sampled_from((10, 99, 100, 101, 500))
            usage = {p: data.draw(sizes, label="memory") for p in action.pids}
            fds = {}
            if action.fds:
                for p in action.pids:
                    count = data.draw(st.sampled_from((5, 50, 51, 400)), label="fds")
                    nofile = data.draw(st.sampled_from((None, 64, 1024)), label="nofile")
                    unreadable = data.draw(
                        st.sampled_from(((), ((p + 1, "permission denied"),))), label="unreadable"
                    )
                    fds[p] = Fds(count, (("sockets", count),), nofile, unreadable)
            self.queue.append(Measured(usage, fds))
        elif isinstance(action, Exit):
            self.exit_code = action.code
        elif isinstance(action, Log) and action.message.startswith(LEAVING):
            assert self.sup.stopping and self.sup.policy.stop_timeout is None, action.message
            for text in action.message[len(LEAVING):].split()[0].split(","):
                proc = self.procs[int(text)]  # its exit may be queued still
                assert proc.leftover, action.message
                proc.left = True

    # ---- invariants -------------------------------------------------------------------

    def _before(self) -> Before:
        cur = self.sup.current()
        return Before(
            cur.number if cur is not None else None,
            {w.pid: w.state for w in self.sup.workers()},
            self.sup.last_number,
            processes(self.sup.gens.values()),
        )

    def _check(self, event: Event, actions: list[Action], before: Before) -> None:
        sup = self.sup
        if isinstance(event, Spawned) and event.pid in self.procs:
            self.procs[event.pid].known = True
        if isinstance(event, Exited) and event.pid in self.procs:
            self.procs[event.pid].told = True
        assert sum(g.state is State.STARTING for g in sup.gens.values()) <= 1, (
            "more than one generation is starting"
        )
        self._check_numbers(actions, before)
        self._check_kills(event, actions, before)
        self._check_newest_not_retired(event, actions, before)
        self._check_rolling_bound(event, actions, before)
        if any(isinstance(a, Exit) for a in actions):
            self._check_exit()
        self._check_starts(before)
        self._check_scaled()
        self._check_snapshot()
        due = sup.next_deadline()
        if self.exit_code is None:
            assert due is None or due > self.now, (
                f"next_deadline() is {due}, not after now ({self.now}), once due timers ran"
            )

    def _check_numbers(self, actions: list[Action], before: Before) -> None:
        sup = self.sup
        assert sup.last_number >= before.last_number, "generation numbers went back"
        new = 0  # the generation this event created, if any
        for a in actions:
            if not isinstance(a, Spawn):
                continue
            assert not sup.stopping, f"{a} while stopping"
            if a.number > self.highest_spawned:
                self.highest_spawned = new = a.number
            elif a.number != new:  # a worker replaced alone: only in the current generation
                g = sup.gens.get(a.number)
                rolling = sup.policy.rolling and g is not None and g is sup.fleet.starting()
                assert g is not None and (g is sup.current() or rolling), (
                    f"{a} for an old generation"
                )
        assert all(n <= sup.last_number for n in sup.gens)

    def _check_kills(self, event: Event, actions: list[Action], before: Before) -> None:
        """Every pid signalled is a live process the core spawned, or a known leftover.

        The one exception: the group of a worker whose exit is being handled (what
        it left in its process group goes with it).
        """
        for a in actions:
            if not isinstance(a, Kill):
                continue
            if isinstance(event, Exited) and a.pid == event.pid and a.group:
                continue
            proc = self.procs.get(a.pid)
            assert proc is not None, f"{a}: a pid the core never spawned"
            proc.signalled = True
            assert not proc.told, f"{a}: the core was told it exited"
            if proc.leftover:
                assert a.pid in self.sup.leftovers, f"{a}: a leftover the core does not know"
            else:
                assert self.sup.by_pid(a.pid) is not None, f"{a}: not a worker of the core"

    def _check_newest_not_retired(
        self, event: Event, actions: list[Action], before: Before
    ) -> None:
        """The newest started generation is never signalled to retire unless stopping,
        until a newer one has started (a worker replaced alone: once its successor has)."""
        sup = self.sup
        number = before.current
        if sup.stopping or number is None:
            return
        superseded = any(
            g.number > number and g.state is State.ACTIVE for g in sup.gens.values()
        )
        g = sup.gens.get(number)
        if g is not None and g.state is State.RETIRING:
            assert superseded, f"generation {number}, the newest started, was retired"
        states = before.states
        for a in actions:
            if not isinstance(a, Kill) or states.get(a.pid) is not State.ACTIVE:
                continue
            if isinstance(event, Exited) and a.pid == event.pid:
                continue  # its own group, as it exits
            proc = self.procs[a.pid]
            if proc.number != number or superseded or proc.slot >= sup.policy.workers:
                continue  # (the last: scaled down, its slot retired)
            successor = g is not None and any(
                w.slot == proc.slot and w.pid != a.pid and w.state is State.ACTIVE
                for w in g.workers
            )
            if sup.policy.rolling and not isinstance(event, Exited):
                # A roll signals an old worker only while --workers others serve.
                serving = sum(w.state is State.ACTIVE for w in sup.workers())
                successor = successor or serving >= sup.policy.workers
            assert successor, f"{a}: a serving worker of generation {number}, not replaced"

    def _check_rolling_bound(self, event: Event, actions: list[Action], before: Before) -> None:
        """--rolling K: a spawn never makes more than --workers + K worker processes,
        spawns on their way included, as the core counts them and as the model OS
        has them (a scale down may leave more for a while: they are retiring, and
        then one spawn may go beside them while nothing else serves). A started
        worker's respawn at once in its slot, as it exits, is bound by the count
        just before its death instead: it takes the dead one's place."""
        p = self.sup.policy
        if not p.rolling or not any(isinstance(a, Spawn) for a in actions):
            return
        most = p.workers + p.rolling
        counted = processes(self.sup.gens.values())
        if counted > most and sum(len(g.pending) + sum(
            w.state is not State.RETIRING for w in g.workers
        ) for g in self.sup.gens.values()) == 1:
            return  # nothing else served: the one spawn beside retiring workers (rolling.room)
        if isinstance(event, Exited) and before.states.get(event.pid) is State.ACTIVE:
            dead = self.procs[event.pid]
            if any(isinstance(a, Spawn) and (a.number, a.slot) == (dead.number, dead.slot)
                   for a in actions):
                most = max(most, before.processes)  # its respawn (exits.py)
        assert counted <= most, f"{counted} workers > --workers {p.workers} + {p.rolling}"
        # A failed spawn is a process until the core hears of it (SpawnFailed queued).
        alive = len(self._alive(leftover=False)) + sum(
            isinstance(e, SpawnFailed) for e in self.queue
        )
        assert alive <= most, f"{alive} worker processes > --workers {p.workers} + {p.rolling}"

    def _check_exit(self) -> None:
        alive = [p for p in self._alive() if not self.procs[p].left]
        assert not alive, f"Exit({self.exit_code}) with processes left: {alive}"
        assert not self.sup.gens and not self.sup.leftovers

    def _check_starts(self, before: Before) -> None:
        """A worker counts as started on READY=1, or (without --wait-ready) once it
        has lived --interval: never earlier."""
        states = before.states
        p = self.sup.policy
        for w in self.sup.workers():
            if states.get(w.pid) is State.STARTING and w.started_at is not None:
                early = not p.wait_ready and self.now >= w.spawned_at + p.interval
                assert w.ready or early, f"worker {w.pid} started neither ready nor by --interval"

    def _check_scaled(self) -> None:
        """Once no generation is starting, the serving one has no worker starting or
        serving, and nothing on its way, at or above the live count (--scale)."""
        sup = self.sup
        n = sup.policy.workers
        if sup.stopping or sup.fleet.starting() is not None:
            return
        assert sup.scale.wanted is None and 1 <= n == sup.snapshot().workers
        cur = sup.current()
        if cur is None:
            return
        high = [(w.pid, w.slot) for w in cur.workers
                if w.slot >= n and w.state in (State.ACTIVE, State.STARTING)]
        assert not high, f"workers {high} at or above the count {n}"
        assert all(slot < n for (number, slot) in sup.slot_respawn if number == cur.number)

    def _check_snapshot(self) -> None:
        """The snapshot is the core's state: every live worker listed, nothing dead."""
        sup = self.sup
        snap = sup.snapshot()
        listed = {v.pid: v for v in snap.generations}
        workers = {w.pid: w for w in sup.workers()}
        assert set(listed) == set(workers)
        for pid, view in listed.items():
            w = workers[pid]
            assert (view.number, view.slot, view.state, view.ready) == (
                w.number, w.slot, w.state, w.ready
            )
        live = {p.pid for p in self.procs.values() if p.known and not p.told and not p.leftover}
        assert set(listed) == live, f"listed {sorted(listed)}, live workers {sorted(live)}"
        assert snap.last_number == sup.last_number

    # ---- rules ------------------------------------------------------------------------

    @initialize(policy=policies(), data=st.data())
    def start(self, policy: Policy, data: st.DataObject) -> None:
        self.sup = Supervisor(policy)
        self.queue.append(Start())
        self._drain(data)

    @precondition(lambda self: self.exit_code is None)
    @rule(data=st.data())
    def gather(self, data: Draws) -> None:
        """What one wake-up brings: notifications, then exits, then signals."""
        events: list[Event] = []
        for _ in range(data.draw(st.integers(0, 2), label="notifications")):
            events.append(self._notification(data))
        alive = self._alive()
        if alive:
            pids = data.draw(st.lists(st.sampled_from(alive), max_size=2, unique=True),
                             label="exits")
            for pid in pids:
                status = data.draw(st.sampled_from(sorted(STATUSES)), label="status")
                events.extend(self._exit(data, pid, status))
        weights = st.sampled_from((signal.SIGHUP,) * 4 + SIGNALS)
        events.extend(Signalled(s) for s in data.draw(st.lists(weights, max_size=2),
                                                     label="signals"))
        self.queue.extend(events or [Tick()])
        self._drain(data)

    def _notification(self, data: Draws) -> Notified:
        numbers = sorted(set(self.sup.gens) | {0, self.sup.last_number + 1})
        number = data.draw(st.sampled_from(numbers), label="notify generation")
        g = self.sup.gens.get(number)
        pids: list[Optional[int]] = [None, 1]
        if g is not None:
            pids += [w.pid for w in g.workers]
        pid = data.draw(st.sampled_from(pids), label="notify pid")
        fields = data.draw(
            st.dictionaries(
                st.sampled_from(("READY", "STATUS", "STOPPING", "MAINPID", "X")),
                st.sampled_from(("1", "0", "serving", "")),
                max_size=3,
            ),
            label="fields",
        )
        return Notified(number, fields, pid)

    @precondition(lambda self: self.exit_code is None)
    @rule(data=st.data(), how=st.sampled_from(("deadline", "deadline", "short", "long")))
    def advance(self, data: Draws, how: str) -> None:
        """Time passes: to the next deadline, a little, or a lot; then a Tick."""
        due = self.sup.next_deadline()
        if how == "deadline" and due is not None:
            self.now = max(self.now, due)
        elif how == "long":
            self.now += data.draw(st.sampled_from((5.0, 40.0, 400.0)), label="long")
        else:
            self.now += data.draw(st.sampled_from((0.01, 0.3, 1.0)), label="short")
        self.queue.append(Tick())
        acted = self._drain(data)
        if due is None or due > self.now:
            # The loop sleeps until next_deadline(): a timed rule that was not
            # announced there would have been slept through.
            assert not acted, f"a Tick at {self.now} before the next deadline {due} did {acted}"

    @precondition(lambda self: self.exit_code is None)
    @rule(kind=st.sampled_from(sorted(ASKED)), data=st.data())
    def ask(self, kind: str, data: Draws) -> None:
        """A client asks to scale or to restart one worker."""
        value = data.draw(st.sampled_from(ASKED[kind]), label="value")
        self.queue.append(Asked(f"r{self.next_pid}", kind, value))
        self._drain(data)

    @rule(name=st.sampled_from(sorted(ENVDIR_VALUES)), data=st.data())
    def change_envdir(self, name: str, data: Draws) -> None:
        """A deploy changes the envdir: the next Spawned carries it."""
        value = data.draw(st.one_of(st.none(), st.sampled_from(ENVDIR_VALUES[name])))
        if value is None:
            self.env_files.pop(name, None)
        else:
            self.env_files[name] = value

    @invariant()
    def queue_is_drained(self) -> None:
        assert not self.queue or self.exit_code is not None

    def teardown(self) -> None:
        """TERM; a process exits once it is signalled, time runs on: the core must
        signal every process and exit."""
        if self.exit_code is not None:
            return
        data = _Fixed()
        self.queue.append(Signalled(signal.SIGTERM))
        for _ in range(MAX_STEPS_TO_EXIT):
            self._drain(data)
            if self.exit_code is not None:
                break
            for pid in self._alive():
                if self.procs[pid].signalled:
                    self.queue.extend(self._exit(data, pid, 0))
            if not self.queue:
                due = self.sup.next_deadline()
                if due is None:
                    break  # nothing will ever happen again
                self.now = max(self.now, due)
                self.queue.append(Tick())
        assert self.exit_code is not None, (
            f"no Exit after TERM: never signalled {self._alive()}, gens {self.sup.gens}, "
            f"leftovers {self.sup.leftovers}"
        )
        assert not self._alive(), f"left running: {self._alive()}"


class _Fixed:
    """Draws for the teardown, outside Hypothesis' control: spawns succeed, no
    leftovers, the first choice of everything else."""

    CHOICES: ClassVar[dict[str, object]] = {
        "spawn fails": 1, "leftovers": 0, "jitter": 0.0, "memory": 10, "fds": 5,
        "nofile": None, "unreadable": (),
    }

    def draw(self, strategy: st.SearchStrategy[Any], label: Any = None) -> Any:
        return self.CHOICES[label]


TestCoreModel = CoreModel.TestCase
# CPU-bound, so its time grows with the machine's load: over a minute on a loaded
# 2-core machine, where the default 60 s timeout (meant for hangs) ended it.
TestCoreModel.pytestmark = [pytest.mark.timeout(300)]  # type: ignore[attr-defined]
