"""What a child's exit does: a worker that died starting fails its start; a
serving one is replaced (its slot, or the whole generation) at once or after
the backoff; a generation whose last worker is gone ends. Children that are
no worker (leftovers) are stopped, and their exits noted."""

from __future__ import annotations

import signal

from . import rolling
from .events import Kill
from .generations import State

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from .events import Exited, Leftovers
    from .fleet import Fleet
    from .generations import Generation, Worker
    from .retries import Retries
    from .stopping import Stopping


class Exits:
    """Children gone: workers, by the state they were in, and leftovers."""

    def __init__(self, fleet: Fleet, stop: Stopping, retries: Retries) -> None:
        self.fleet = fleet
        self.stop = stop
        self.retries = retries

    def on_leftovers(self, ev: Leftovers, now: float) -> None:
        """Children whose worker is gone are stopped as workers are."""
        for pid in ev.pids:
            if pid in self.fleet.leftover_pids or self.fleet.by_pid(pid) is not None:
                continue
            self.fleet.log(f"stopping leftover process {pid}: the worker that started it is gone")
            self.fleet.stop_leftover(pid, now)

    def on_exited(self, ev: Exited, now: float) -> None:
        """A child of the starter is gone: a worker (each state its rule) or a leftover."""
        w = self.fleet.by_pid(ev.pid)
        if w is None:
            if self.fleet.leftover_pids.exited(ev.pid):
                self.fleet.log(
                    f"leftover process {ev.pid} exited, status:{ev.status} ({ev.description})"
                )
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
        if g.state is State.STARTING and was_active and self.fleet.policy.rolling:
            self._rolled_in_died(w, g, now, st)
            return
        if g.state is State.STARTING:
            # One of several workers started, then died before its siblings did.
            self.fleet.log(f"new worker {w.pid} died during its generation's start, {st}", w)
            why = f"a worker exited during the start ({ev.description})"
            self.retries.fail_generation(g, now, why)
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
            self.retries.fail_generation(g, now, f"exited before it started ({how})")
        else:
            self.retries.slot_failed(w, now)

    def _slot_died(self, w: Worker, g: Generation, now: float, st: str) -> None:
        """A serving worker of the current generation (--workers) died."""
        replacement = [x for x in g.in_slot(w.slot) if x.state is State.STARTING]
        if replacement:
            self.fleet.log(f"worker {w.pid} (slot {w.slot}) died, {st}", w)
            return
        self.fleet.log(f"worker {w.pid} (slot {w.slot}) died unexpectedly with {st}", w)
        roll = rolling.in_progress(self.fleet)
        if roll is not None:
            self.fleet.log(f"slot {w.slot}: generation {roll.number}'s roll replaces it", w)
            return
        self._respawn(w, g, now)

    def _rolled_in_died(self, w: Worker, g: Generation, now: float, st: str) -> None:
        """A started worker of the rolling generation died: it was serving, so it is
        a serving worker's crash (respawned in its slot), not a failed start; the
        roll goes on."""
        self.fleet.log(f"new worker {w.pid} (slot {w.slot}) died unexpectedly with {st}", w)
        self._respawn(w, g, now)

    def _respawn(self, w: Worker, g: Generation, now: float) -> None:
        """``w``, started, died on its own: its slot of ``g`` gets a new worker, at
        once or after the backoff (--min-uptime, crashes in a row).

        A respawn at once never waits for room under --rolling: it takes the place
        of the process that just went away, so the count of worker processes does
        not rise above what it was just before the death. One after the backoff
        waits for room as any spawn does (timers.py)."""
        if self.retries.crashed(w, now):
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
        if self.retries.crashed(w, now):
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
