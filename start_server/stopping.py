"""Stopping: TERM, INT or QUIT (or a first generation that cannot start)
retires every generation and the leftovers; the starter exits, with its exit
code, once nothing of theirs is left.

States: *running*, *stopping* (``stopping``: no restart, no replacement, no
timer but the kill escalations), *done* (``done``: the last action of every
event is then ``Exit(exit_code)``).
"""

from __future__ import annotations

import signal

from .events import Exit, NotifyUpstream
from .generations import State
from .spec import signal_name

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Any

    from .events import SpawnFailed
    from .fleet import Fleet
    from .generations import Generation

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGQUIT})


class Stopping:
    """Whether the starter is stopping, whether it is done, and its exit code."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.stopping = False
        self.done = False
        self.exit_code = 0

    def on_signal(self, signum: int, now: float) -> None:
        """TERM, INT or QUIT: every worker is told to go (TERM gets --signal-on-term)."""
        f = self.fleet
        name = signal_name(signum)
        if self.stopping:
            f.log(f"received {name} while stopping; still waiting for workers")
            return
        self.stopping = True
        f.restarts.cancel()
        f.slots.clear()
        sig = f.policy.signal_on_term if signum == signal.SIGTERM else signal.SIGTERM
        pids = ",".join(str(w.pid) for w in sorted(f.workers(), key=lambda w: w.pid))
        f.log(f"received {name}, sending {signal_name(sig)} to all workers:{pids}")
        f.out.append(NotifyUpstream("STOPPING=1"))
        for pid in f.leftover_pids.terminated():
            f.stop_leftover(pid, now)  # TERM again: their grace counts from now
        for g in sorted(f.gens.values(), key=lambda g: g.number):
            if g.state is not State.RETIRING:
                f.retire(g, sig, now, f.policy.stop_timeout)
            else:  # already told to go; its own deadlines still hold
                for w in g.workers:
                    if w.state is not State.RETIRING:
                        f.retire_worker(w, sig, now, f.policy.stop_timeout)

    def give_up(self, g: Generation, ev: SpawnFailed, now: float) -> None:
        """Nothing runs and nothing can: kill what was spawned, exit 1 once it is gone
        (a sibling whose Spawned is still queued included)."""
        self.stopping = True
        self.exit_code = 1
        self.fleet.record.failed(ev.number, ev.reason)
        self.fleet.log("giving up: the first generation could not be started")
        for w in g.workers:
            w.failed_start = True
        self.fleet.retire(g, signal.SIGKILL, now, None, group=True)

    def leave(self, pids: list[int], grace: float) -> None:
        """Leftovers that ignored TERM for ``grace`` while stopping, with no
        --stop-timeout to KILL them: the starter no longer waits for them."""
        f = self.fleet
        for pid in pids:
            f.leftover_pids.forget(pid)
        f.log(
            f"leaving leftover processes running: {','.join(map(str, pids))} "
            f"(no exit {grace:g} s after TERM; --stop-timeout would KILL them)"
        )

    def settle(self) -> None:
        """The exit decision, at the end of every event: done once stopping
        has nothing left to wait for; then the event's last action is Exit."""
        f = self.fleet
        if self.stopping and not f.gens and not f.leftover_pids and not self.done:
            self.done = True
            f.log("exiting")
        if self.done:
            f.out.append(Exit(self.exit_code))

    # ---- the hand-over of an upgrade (upgrade.py): the keys of format 1 -------

    def to_dict(self) -> dict[str, Any]:
        return {"stopping": self.stopping, "done": self.done, "exit_code": self.exit_code}

    def load(self, d: dict[str, Any]) -> None:
        self.stopping = d.get("stopping", self.stopping)
        self.done = d.get("done", self.done)
        self.exit_code = d.get("exit_code", self.exit_code)
