"""Live scaling (``--scale``, TTIN, TTOU) and one worker restarted alone (``--restart
--worker``): the rules the core applies to the serving generation's slots.

The live count of workers is ``Supervisor.policy.workers``: a new generation
starts with it (a HUP keeps a scale), and scaling brings the serving generation
to it at once. New slots continue the numbering (``SERVER_STARTER_WORKER``);
scaling down retires the highest slots with ``--signal-on-hup`` and the usual
``--stop-timeout``. While a generation is starting (a roll included) the
count is only noted (``wanted``) and the policy left alone: the starting
generation starts as it was spawned, then is brought to the count once it
serves (the generation it replaces is about to retire anyway). While stopping
a scale is refused. A restart of the starter itself starts from ``--workers``.

Requests with an argument come over the control socket (control_socket.py)
with an id; ``Asks`` keeps each one's answer for the status JSON, where the
client waits for it: ``refused``, ``accepted`` (being carried out), then
``done`` or ``failed``.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, replace

from . import rolling
from .generations import Generation, State
from .optiontable import MAX_WORKERS
from .values import SpecError, parse_whole

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Any, Optional

    from .fleet import Fleet
    from .stopping import Stopping

KEPT_ANSWERS = 16  # answers the status JSON keeps, newest last


def parse_scale(text: str) -> tuple[str, int]:
    """``6`` -> ("=", 6), ``+2`` -> ("+", 2), ``-1`` -> ("-", 1); SpecError otherwise."""
    raw = text.strip()
    how = raw[:1] if raw[:1] in ("+", "-") else "="
    digits = raw[1:] if how != "=" else raw
    if not digits.isdigit() or not digits.isascii():
        raise SpecError(f"not a count: {text!r} (expected N, +K or -K)")
    return how, parse_whole(digits, minimum=1, maximum=MAX_WORKERS)


def scaled(current: int, how: str, k: int) -> int:
    """The count ``how`` and ``k`` (``parse_scale``) ask for, from ``current``; in bounds."""
    n = k if how == "=" else current + k if how == "+" else current - k
    if not 1 <= n <= MAX_WORKERS:
        raise SpecError(
            f"{n} workers is out of range (1..{MAX_WORKERS}; {current} now)"
        )
    return n


@dataclass
class Ask:
    """A request from a client, being carried out."""

    id: str
    kind: str  # "scale" or "worker"
    number: int = 0  # worker: the generation it was asked of, its slot and pid then
    slot: int = 0
    old_pid: int = 0
    count: int = 0  # scale: the count asked for


class Asks:
    """The requests being carried out and the answers given."""

    def __init__(self) -> None:
        self.open: list[Ask] = []
        self.answers: list[tuple[str, str, str]] = []  # (id, state, message), newest last

    def answer(self, id: str, state: str, message: str) -> None:
        self.answers = [a for a in self.answers if a[0] != id][-(KEPT_ANSWERS - 1):]
        self.answers.append((id, state, message))
        if state != "accepted":
            self.open = [a for a in self.open if a.id != id]

    def failed(self, message: str, slot: Optional[int] = None) -> None:
        """Requests that depended on ``slot`` (any, for None) cannot complete."""
        for a in list(self.open):
            if slot is None or a.kind == "scale" or a.slot == slot:
                self.answer(a.id, "failed", message)

    def to_dict(self) -> dict[str, Any]:
        return {
            "open": [[a.id, a.kind, a.number, a.slot, a.old_pid, a.count] for a in self.open],
            "answers": [list(a) for a in self.answers],
        }

    @classmethod
    def from_dict(cls, d: Optional[dict[str, Any]]) -> Asks:
        asks = cls()
        if d:
            asks.open = [Ask(str(i), str(k), int(n), int(s), int(p), int(c))
                         for i, k, n, s, p, c in d.get("open", ())]
            asks.answers = [(str(i), str(s), str(m)) for i, s, m in d.get("answers", ())]
        return asks


# ---- the rules, applied to the serving generation ------------------------------


class Scaling:
    """The live count's rules and the clients' requests; a part of the core (core.py)."""

    def __init__(self, fleet: Fleet, stop: Stopping) -> None:
        self.fleet = fleet
        self.stop = stop
        self.asks = Asks()
        self.wanted: Optional[int] = None  # asked for while a generation starts

    @property
    def count(self) -> int:
        """The live count: the one asked for last."""
        return self.fleet.policy.workers if self.wanted is None else self.wanted

    def step(self, signum: int) -> None:
        """TTIN: one worker more; TTOU: one fewer. At a bound, one line and nothing else."""
        f = self.fleet
        name = "TTIN" if signum == signal.SIGTTIN else "TTOU"
        now = self.count
        if self.stop.stopping:
            f.log(f"received {name} while stopping; ignored")
            return
        try:
            n = scaled(now, "+" if signum == signal.SIGTTIN else "-", 1)
        except SpecError:
            bound = f"the maximum of {MAX_WORKERS}" if now >= MAX_WORKERS else "1"
            f.log(f"received {name}: already at {bound} worker{'s' if now > 1 else ''}; ignored")
            return
        f.log(f"received {name}: scaling from {now} to {n} workers")
        self.set_count(n)

    def asked(self, id: str, kind: str, value: str) -> None:
        """A client's request (control_socket.py): answered at once if refused."""
        if self.stop.stopping:
            self.asks.answer(id, "refused", "the starter is stopping")
            return
        try:
            if kind == "scale":
                self._ask_scale(id, value)
            elif kind == "worker":
                self._ask_worker(id, parse_whole(value))
            else:
                self.asks.answer(id, "refused", f"unknown request {kind!r}")
        except SpecError as exc:
            self.asks.answer(id, "refused", str(exc))

    def _ask_scale(self, id: str, value: str) -> None:
        now = self.count
        n = scaled(now, *parse_scale(value))
        self.asks.open.append(Ask(id, "scale", count=n))
        self.asks.answer(id, "accepted", f"scaling from {now} to {n} workers")
        self.fleet.log(f"asked to scale from {now} to {n} workers")
        self.set_count(n)

    def _ask_worker(self, id: str, slot: int) -> None:
        f = self.fleet
        cur, starting = f.current(), f.starting()
        if cur is None or starting is not None:
            why = ("nothing is serving" if starting is None
                   else f"generation {starting.number} is starting")
            raise SpecError(f"cannot restart worker {slot}: {why}")
        if slot >= f.policy.workers:
            raise SpecError(f"there is no worker {slot} (workers 0..{f.policy.workers - 1})")
        serving = [w for w in cur.in_slot(slot) if w.state is State.ACTIVE]
        old = serving[0].pid if serving else 0
        self.asks.open.append(Ask(id, "worker", cur.number, slot, old))
        self.asks.answer(id, "accepted", f"restarting worker {slot} (pid {old or 'none'})")
        f.log(f"asked to restart worker {slot} (pid {old or 'none'})")
        f.slots.enqueue(cur.number, slot, "asked for")

    def set_count(self, n: int) -> None:
        """The live count is ``n``: the serving generation is brought to it now; while
        one starts, once it serves (``settle``)."""
        f = self.fleet
        starting = f.starting()
        if starting is not None:
            self.wanted = n
            f.log(f"generation {starting.number} is starting: it gets {n} workers once it serves")
            return
        self.wanted = None
        f.base_policy = replace(f.base_policy, workers=n)
        f.policy = replace(f.policy, workers=n)
        cur = f.current()
        if cur is not None:
            self.reconcile(cur)

    def spawned(self, g: Generation, slot: int) -> None:
        """A worker for ``slot`` of ``g`` was spawned: one scaled away meanwhile goes."""
        if g.state is State.ACTIVE and slot >= self.fleet.policy.workers:
            self.reconcile(g)

    def reconcile(self, g: Generation) -> None:
        """Spawn the missing slots below the count, retire the workers at or above it."""
        f = self.fleet
        n, p = f.policy.workers, f.policy
        f.slots.drop_slots(g.number, n)
        present = {w.slot for w in g.workers if w.state is not State.RETIRING}
        present.update(g.pending)
        present.update(s for (number, s) in f.slots.retry_at if number == g.number)
        present.update(s for number, s, _ in f.slots.queue if number == g.number)  # refills
        room = rolling.room(p, f.gens.values())  # --rolling: at most --workers + K at once
        for slot in range(n):
            if slot in present:
                continue
            if room <= 0:  # spawned as a replacement is, once a worker has exited
                f.slots.enqueue(g.number, slot, f"scaled to {n}")
                continue
            room -= 1
            f.spawn_slot(g, slot, f"starting a new worker (scaled to {n})", replaced=False)
        for w in sorted(g.workers, key=lambda w: w.slot):
            if w.slot >= n and w.state in (State.ACTIVE, State.STARTING):
                f.log(f"slot {w.slot}: retiring worker {w.pid} (scaled to {n})", w)
                f.retire_worker(w, p.signal_on_hup, f.now, p.stop_timeout)

    def catch_up(self) -> None:
        """After every event, before the timers: a count asked for during a start
        applies once none is starting (so that what the timers spawn now, a
        refill after a stopped roll say, already counts against it)."""
        if self.wanted is not None and not self.stop.stopping and self.fleet.starting() is None:
            self.set_count(self.wanted)

    def settle(self) -> None:
        """After every event: the requests whose work is done answered."""
        self.catch_up()  # the timers may have ended a start
        if not self.asks.open:
            return
        if self.stop.stopping:
            self.asks.failed("the starter is stopping")
            return
        cur = self.fleet.current()
        if cur is None or self.fleet.starting() is not None:
            return
        n = self.fleet.policy.workers
        for a in list(self.asks.open):
            if a.kind == "worker" and a.slot >= n and a.number == cur.number:
                self.asks.answer(a.id, "failed", f"worker {a.slot} was retired (scaled to {n})")
                continue
            message = _done(a, cur, n)
            if message is not None:
                self.asks.answer(a.id, "done", message)

    # ---- the hand-over of an upgrade (upgrade.py): optional keys of format 1 ----

    def to_dict(self) -> dict[str, Any]:
        return {"workers": self.fleet.policy.workers, "wanted_workers": self.wanted,
                "asks": self.asks.to_dict()}

    def load(self, d: dict[str, Any]) -> None:
        """The live count (when scaled, not --workers) and the open requests."""
        f = self.fleet
        if "workers" in d:
            f.base_policy = replace(f.base_policy, workers=int(d["workers"]))
            f.policy = replace(f.policy, workers=int(d["workers"]))
        self.wanted = d.get("wanted_workers")
        self.asks = Asks.from_dict(d.get("asks"))


def _done(a: Ask, cur: Generation, n: int) -> Optional[str]:
    if a.kind == "scale":
        if n != a.count:
            return f"scaled to {n} workers (asked for {a.count}, then changed again)"
        if cur.pending or len(cur.workers) != n:
            return None
        if any(w.state is not State.ACTIVE for w in cur.workers):
            return None
        return f"generation {cur.number} runs {n} workers"
    if cur.number != a.number:
        return f"generation {cur.number} replaced every worker"
    in_slot = cur.in_slot(a.slot)
    if len(in_slot) == 1 and in_slot[0].state is State.ACTIVE and in_slot[0].pid != a.old_pid:
        return f"worker {a.slot} restarted: pid {a.old_pid or 'none'} -> {in_slot[0].pid}"
    return None
