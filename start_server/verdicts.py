"""What a health check's measure does: each serving worker's memory and open
fds are noted, and a worker over a limit on two checks in a row is replaced
(alone, with --workers) or its generation restarted. The limits and their
counts are in health.py."""

from __future__ import annotations

from . import health
from .generations import State

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from .events import Measured
    from .fleet import Fleet
    from .generations import Worker
    from .starts import Starts


class Verdicts:
    """What each health check's measure means for the serving workers."""

    def __init__(self, fleet: Fleet, starts: Starts) -> None:
        self.fleet = fleet
        self.starts = starts

    def on_measured(self, ev: Measured, now: float) -> None:
        """Memory and open fds of the serving generation's workers, and their verdicts."""
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
                self.starts.request_restart(why)

    def _being_replaced(self, w: Worker, busy: set[int]) -> bool:
        """Whether ``w`` already has a successor on its way (no second verdict then);
        ``busy``: the busy slots of its generation."""
        if self.fleet.policy.workers == 1:
            return self.fleet.starting() is not None or self.fleet.restarts.pending
        return w.slot in busy
