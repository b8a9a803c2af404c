"""What a failure does: a failed start or an early crash is counted in a row
(with the hint on what usually keeps a first generation from starting), and
the next attempt, of the generation or of the slot, waits out the backoff."""

from __future__ import annotations

from . import rolling
from .events import NotifyUpstream
from .failures import never_started_hint
from .generations import State

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Optional

    from .fleet import Fleet
    from .generations import Generation, Worker
    from .scaling import Scaling
    from .stopping import Stopping


class Retries:
    """The rules a failed start or an early crash sets off (the counts are in backoff.py)."""

    def __init__(self, fleet: Fleet, stop: Stopping, scale: Scaling) -> None:
        self.fleet = fleet
        self.stop = stop
        self.scale = scale

    def generation_failed(self, g: Generation, now: float, reason: str) -> None:
        """A generation's start failed: count it and schedule the next one with backoff."""
        self.fleet.record.failed(g.number, reason, now)
        self.count(now)
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
        # A roll may have run long before its failure: its backoff counts from then.
        since = now if self.fleet.policy.rolling and cur is not None else g.spawned_at
        at = max(since + delay, now)
        self.fleet.restarts.retry_at(at)
        wait = at - now
        failures = self.fleet.failures
        self.fleet.log(f"next attempt in {wait:.3g} s (failed starts in a row: {failures})")
        self.fleet.restarts.take_pending()  # the next attempt runs the newest code anyway

    def fail_generation(self, g: Generation, now: float, reason: str) -> None:
        """Stop what is left of a generation that did not start, then count it."""
        if rolling.stop(self.fleet, g, now):  # a roll's started workers keep serving
            self.generation_failed(g, now, reason)
            return
        for w in g.workers:
            w.failed_start = True
        if g.workers or g.pending:
            p = self.fleet.policy
            self.fleet.retire(g, p.signal_on_hup, now, p.not_ready_grace)
        else:
            # generation STARTING -> FAILED
            self.fleet.move(g, State.FAILED)
        self.generation_failed(g, now, reason)

    def slot_failed(self, w: Worker, now: float) -> None:
        """A worker replaced alone did not start: try its slot again after the backoff."""
        self.count(now)
        self.scale.asks.failed(f"the new worker in slot {w.slot} did not start", w.slot)
        if self.stop.stopping or self.fleet.gens.get(w.number) is not self.fleet.current():
            return
        if w.slot >= self.fleet.policy.workers:
            return  # scaled away meanwhile (--scale, TTOU): nothing to try again
        delay = self.fleet.backoff_delay()
        self.fleet.slots.retry(w.number, w.slot, max(w.spawned_at + delay, now))
        self.fleet.log(
            f"slot {w.slot}: next attempt in {max(w.spawned_at + delay - now, 0):.3g} s "
            f"(failed starts in a row: {self.fleet.failures})",
            w,
        )

    def crashed(self, w: Worker, now: float) -> bool:
        """A started worker died on its own: True to respawn it at once.

        One that ran at least --min-uptime since its start is respawned at
        once, as the original does, and clears the count; an earlier death is
        a crash in a row, respawned at once only if it is the first.
        """
        if self.fleet.uptime(w, now) >= self.fleet.policy.min_uptime:
            self.fleet.backoff.clear()
            self.fleet.record.has_served = True
            return True
        self.count(now, w)
        return self.fleet.failures <= 1

    def count(self, now: float, crashed: Optional[Worker] = None) -> None:
        """One more failure in a row (``crashed``: the worker that died early);
        at the third with nothing ever served, a hint in the log."""
        self.fleet.backoff.failed(now, None if crashed is None else crashed.started_at)
        serving = any(w.state is State.ACTIVE for w in self.fleet.workers())
        if self.fleet.record.hint_due(self.fleet.failures, serving):
            f = self.fleet
            f.log(never_started_hint(f.failures, f.port_env, f.policy.wait_ready))
