"""How generations and workers start: restart requests (HUP, --restart, a
verdict), spawns answered, readiness (READY=1) and the start check's verdicts.
A generation has started when all its workers have; then the older ones are
set to retire, after --kill-old-delay."""

from __future__ import annotations

from . import rolling
from .events import NotifyUpstream
from .generations import State, Worker
from .spec import signal_name

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from .events import Notified, Spawned, SpawnFailed
    from .fleet import Fleet
    from .generations import Generation
    from .retries import Retries
    from .scaling import Scaling
    from .stopping import Stopping


class Starts:
    """Restart requests, spawns answered, readiness: generations and workers starting."""

    def __init__(self, fleet: Fleet, stop: Stopping, retries: Retries, scale: Scaling) -> None:
        self.fleet = fleet
        self.stop = stop
        self.retries = retries
        self.scale = scale

    def on_hup(self, now: float) -> None:
        if not self.stop.stopping:
            self.fleet.log("received HUP, spawning a new worker")
            if self.fleet.record.ever_started:
                # Every reload request gets its RELOADING=1 (systemd's
                # Type=notify-reload matches it by the timestamp), even one
                # coalesced into a pending restart; READY=1 ends them all.
                usec = int(now * 1_000_000)
                self.fleet.out.append(NotifyUpstream(f"RELOADING=1\nMONOTONIC_USEC={usec}"))
        self.request_restart("HUP")

    def worker_started(self, w: Worker, now: float, why: str) -> None:
        # worker STARTING -> ACTIVE
        self.fleet.move(w, State.ACTIVE)
        w.started_at = now
        g = self.fleet.gens[w.number]
        if g.state is State.STARTING:
            self.fleet.log(f"new worker {w.pid} is now running ({why})", w)
            rolling.started(self.fleet, g, w, now)
            live = [x for x in g.workers if not x.failed_start]
            workers = self.fleet.policy.workers
            if len(live) == workers and all(x.state is State.ACTIVE for x in live):
                self.generation_started(g, now)
            return
        # A worker replaced alone, in an ACTIVE generation.
        self.fleet.log(f"worker {w.pid} (slot {w.slot}) is now running ({why})", w)
        self.fleet.backoff.succeeded(now)
        old = None if w.replaces is None else self.fleet.by_pid(w.replaces)
        w.replaces = None
        if old is not None and old.state is State.ACTIVE:
            p = self.fleet.policy
            self.fleet.log(f"sending {signal_name(p.signal_on_hup)} to worker {old.pid}")
            self.fleet.retire_worker(old, p.signal_on_hup, now, p.stop_timeout)

    def generation_started(self, g: Generation, now: float) -> None:
        # generation STARTING -> ACTIVE
        self.fleet.move(g, State.ACTIVE)
        g.started_at = now
        self.fleet.record.ever_started = True
        self.fleet.backoff.succeeded(now)
        self.fleet.checks.arm(now, self.fleet.policy)
        olds = [o for o in self.fleet.gens.values() if o.state is State.ACTIVE and o is not g]
        self.fleet.record.has_served = self.fleet.record.has_served or bool(olds)
        sig = signal_name(self.fleet.policy.signal_on_hup)
        old_pids = sorted(  # a roll has signalled its old workers already
            w.pid for o in olds for w in o.workers
            if not (self.fleet.policy.rolling and w.state is State.RETIRING)
        )
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

    def request_restart(self, why: str) -> None:
        if self.stop.stopping:
            self.fleet.log(f"{why} ignored: shutting down")
            return
        starting = self.fleet.starting()
        if starting is not None and rolling.supersede(self.fleet, starting, why, self.fleet.now):
            self.fleet.new_generation(self.fleet.now)
            return
        line = self.fleet.restarts.request(why, None if starting is None else starting.number)
        if line is not None:
            self.fleet.log(line)
            return
        self.fleet.new_generation(self.fleet.now)

    def on_spawned(self, ev: Spawned, now: float) -> None:
        """A spawn asked for is running: a worker STARTING, or RETIRING at once
        if its generation was told to go meanwhile."""
        g = self.fleet.gens.get(ev.number)
        if g is None:  # pragma: no cover - a generation waits for its spawns
            self.fleet.stop_leftover(ev.pid, now)  # never a process nobody supervises
            return
        g.answered(ev.slot)
        w = Worker(ev.number, ev.slot, ev.pid, State.STARTING, spawned_at=now)
        w.jitter = ev.jitter * self.fleet.policy.auto_restart_jitter
        if g.state is State.ACTIVE:
            w.replaces = rolling.successor_of(self.fleet.gens.values(), g, ev.slot)
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

    def on_spawn_failed(self, ev: SpawnFailed, now: float) -> None:
        g = self.fleet.gens.get(ev.number)
        record = self.fleet.record
        if g is None or g.state is not State.RETIRING or (record.number, record.reason) != (
            ev.number, ev.reason
        ):  # a sibling worker's failure, the same as the one that failed it, said once
            self.fleet.log(f"failed to start generation {ev.number}: {ev.reason}", None)
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
            self.retries.fail_generation(g, now, ev.reason)
            return
        ghost = Worker(ev.number, ev.slot, 0, State.STARTING, spawned_at=now)
        self.retries.slot_failed(ghost, now)

    def on_notify(self, ev: Notified, now: float) -> None:
        """A datagram from a worker's tree: its STATUS=, and READY=1 (it has started)."""
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
                    self.worker_started(w, now, "ready")

    def not_ready(self, w: Worker, now: float) -> None:
        """--wait-ready: ``w`` sent no READY=1 within --ready-timeout."""
        p = self.fleet.policy
        self.fleet.log(f"new worker {w.pid} not ready after {p.ready_timeout:g} s; stopping it", w)
        g = self.fleet.gens[w.number]
        if g.state is State.STARTING:
            self.retries.fail_generation(g, now, f"not ready within {p.ready_timeout:g} s")
        else:
            w.failed_start = True
            self.fleet.retire_worker(w, p.signal_on_hup, now, p.not_ready_grace)
            self.retries.slot_failed(w, now)
