"""One chaos run: the real starter under client load and a seeded random schedule.

The seed picks the mode (``--daemonize`` or not, ``--workers`` 1 or 3,
``--wait-ready`` or not) and the schedule: HUP, ``start_server --restart``,
USR1 after renaming the log, SIGKILL of a worker, SIGKILL of a grandchild,
broken deploys (an envdir ``APP_EXTRA`` that makes the next workers exit at
once, or never send READY, until it is removed again), and memory spikes over
``--max-memory`` (a request that makes its worker hold 150 MiB). watch.Watch
checks the invariants meanwhile; the end checks what only the end can show.
A replay with the same seed makes the same choices; which pid a kill picks
and how events overlap depend on timing, so the event log is printed too.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from support import APP, PY, Harness, free_port, http_get, wait_until

from .load import Load
from .table import scan
from .verdict import Verdict
from .watch import Watch, status_pids

# Event kinds and their weights in the schedule.
WEIGHTS = {"hup": 3, "restart": 2, "usr1": 1, "kill_worker": 3, "kill_grandchild": 2,
           "broken": 1, "spike": 1, "status": 1}
SPIKE_MIB = 150
MAX_MEMORY = "100M"


class ChaosFailure(AssertionError):
    """An invariant broke; the message holds the seed, the mode and the event log."""


@dataclass(frozen=True)
class Mode:
    daemonize: bool
    workers: int
    wait_ready: bool

    @classmethod
    def pick(cls, rng: random.Random) -> Mode:
        return cls(rng.random() < 0.5, rng.choice((1, 3)), rng.random() < 0.5)

    def __str__(self) -> str:
        return (f"{'--daemonize' if self.daemonize else 'foreground'} --workers {self.workers} "
                f"{'--wait-ready' if self.wait_ready else 'no --wait-ready'}")


class Chaos:
    """Run ``duration`` seconds of chaos with ``seed`` in ``harness``'s directory."""

    def __init__(self, harness: Harness, seed: int, duration: float,
                 echo: Optional[Callable[[str], None]] = None) -> None:
        self.h = harness
        self.seed = seed
        self.duration = duration
        self.echo = echo
        self.rng = random.Random(seed)
        self.mode = Mode.pick(self.rng)
        self.dir = harness.tmp / "chaos"
        self.dir.mkdir()
        self.pid_file = self.dir / "start_server.pid"
        self.status_file = self.dir / "start_server.status"
        self.sock = self.dir / "app.sock"
        self.log = self.dir / "start_server.log"
        self.tmpdir = self.dir / "t"  # the starter's TMPDIR, where its notify sockets go
        self.tmpdir.mkdir()
        self.extra = harness.envdir() / "APP_EXTRA"
        self.port = free_port()
        self.t0 = time.monotonic()
        self.events: list[str] = []
        self.counts: Counter[str] = Counter()
        self.verdict = Verdict()
        self.rotations = 0
        self.broken_until: Optional[float] = None
        self.restart: Optional[threading.Thread] = None
        self.starter = 0

    # ----- the run

    def run(self) -> Verdict:
        """The whole run; raises ChaosFailure with the replay material on a violation."""
        self.note(f"seed {self.seed}, mode: {self.mode}, port {self.port}")
        self._launch()
        self.watch = Watch(self.starter, self.pid_file, self.status_file, self.note)
        self.load = Load(self.port)
        self.watch.start()
        self.load.start()
        try:
            self._schedule()
            self._settle()
        finally:
            self.load.stop()
            self.watch.stop()
        self.verdict.violations += self.watch.violations
        self._stop()
        self.verdict.judge(self)
        if self.verdict.violations:
            raise ChaosFailure(self.report())
        return self.verdict

    def note(self, text: str) -> None:
        line = f"{time.monotonic() - self.t0:9.3f} {text}"
        self.events.append(line)
        if self.echo:
            self.echo(line)

    def _launch(self) -> None:
        m = self.mode
        args = [
            f"--port=127.0.0.1:{self.port}", f"--path={self.sock}",
            f"--pid-file={self.pid_file}", f"--status-file={self.status_file}",
            f"--envdir={self.extra.parent}", f"--log-file={self.log}",
            f"--workers={m.workers}", "--interval=0.5", "--stop-timeout=2", "--backoff-max=2",
            f"--max-memory={MAX_MEMORY}", "--memory-check-interval=0.5",
            *(["--wait-ready", "--ready-timeout=3"] if m.wait_ready else []),
            *(["--daemonize"] if m.daemonize else []),
            "--", PY, APP, "--fork=1", *(["--notify"] if m.wait_ready else []),
        ]
        self.proc = self.h.start(*args, env={"TMPDIR": str(self.tmpdir)})
        if m.daemonize:
            assert self.proc.wait(30) == 0, self.proc.output
        self.starter = wait_until(self._pid_from_file, timeout=30, what="the pid file")
        if not m.daemonize:
            assert self.starter == self.proc.pid
        wait_until(lambda: len(self._active()) == m.workers, timeout=30,
                   what="generation 1's workers to start")
        wait_until(lambda: http_get(self.port), timeout=30, what="a first answer")
        self.note(f"starter {self.starter} serving")

    def _pid_from_file(self) -> int:
        return int(self.pid_file.read_text())

    def _active(self) -> list[int]:
        detail = json.loads(Path(f"{self.status_file}.json").read_text())
        return [g["pid"] for g in detail["generations"] if g["state"] == "active"]

    def _schedule(self) -> None:
        end = self.t0 + self.duration
        kinds, weights = zip(*WEIGHTS.items())
        while time.monotonic() < end and not self.watch.violations:
            kind = self.rng.choices(kinds, weights)[0]
            if kind == "restart" and self.restart is not None and self.restart.is_alive():
                kind = "hup"
            if kind == "broken" and self.broken_until is not None:
                kind = "hup"
            self.counts[kind] += 1
            self.verdict.events.append(time.monotonic())
            getattr(self, f"_{kind}")()
            # An observation window: the load and the watch run meanwhile.
            self._pause(self.rng.uniform(0.1, 1.2))

    def _pause(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        while time.monotonic() < until and not self.watch.violations:
            if self.broken_until is not None and time.monotonic() >= self.broken_until:
                self._repair()
            time.sleep(min(0.05, max(0.0, until - time.monotonic())))

    # ----- the events

    def _hup(self) -> None:
        self.note("HUP")
        os.kill(self.starter, signal.SIGHUP)

    def _restart(self) -> None:
        self.note("start_server --restart")
        start = self.verdict.events[-1]  # this event's own time, so the verdict skips it

        def client() -> None:
            r = self.h.run("--restart", f"--pid-file={self.pid_file}",
                           f"--status-file={self.status_file}", "--timeout=30", timeout=60)
            self.verdict.restarts.append((start, time.monotonic(), r.returncode,
                                          (r.stdout + r.stderr).strip()))
            self.note(f"--restart returned {r.returncode}: {(r.stdout + r.stderr).strip()!r}")

        self.restart = threading.Thread(target=client, daemon=True)
        self.restart.start()

    def _usr1(self) -> None:
        self.rotations += 1
        rotated = self.log.with_name(f"{self.log.name}.{self.rotations}")
        self.log.rename(rotated)
        self.note(f"log renamed to {rotated.name}; USR1")
        os.kill(self.starter, signal.SIGUSR1)
        try:
            wait_until(lambda: "reopened log file" in self.log.read_text(), timeout=10,
                       what="the reopened log file")
        except AssertionError as exc:
            self.watch.violations.append(f"USR1: {exc}")

    def _kill_worker(self) -> None:
        self._kill(sorted(scan(self.starter).workers), "worker")

    def _kill_grandchild(self) -> None:
        self._kill(sorted(scan(self.starter).grandchildren), "grandchild")

    def _kill(self, pids: list[int], what: str) -> None:
        if not pids:
            self.note(f"SIGKILL {what}: none running")
            return
        pid = self.rng.choice(pids)
        if what == "worker":
            self.verdict.kills.append(time.monotonic())
        self.note(f"SIGKILL {what} {pid}")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            self.note(f"{pid} was already gone")

    def _broken(self) -> None:
        flag = self.rng.choice(["--exit=1", "--never-ready"] if self.mode.wait_ready
                               else ["--exit=1"])
        self.extra.write_text(flag + "\n")
        self.broken_until = time.monotonic() + self.rng.uniform(1.0, 4.0)
        self.verdict.broken.append([time.monotonic(), self.broken_until])
        self.note(f"broken deploy: APP_EXTRA={flag}; HUP")
        os.kill(self.starter, signal.SIGHUP)

    def _repair(self) -> None:
        self.extra.unlink()
        self.broken_until = None
        self.verdict.broken[-1][1] = time.monotonic()
        self.note("deploy repaired: APP_EXTRA removed")

    def _spike(self) -> None:
        def leak() -> None:
            try:
                body = http_get(self.port, f"/leak/{SPIKE_MIB}", timeout=30)
            except OSError as exc:
                self.note(f"memory spike request failed: {exc!r}")
            else:
                m = re.search(r"pid=(\d+)", body)
                self.verdict.spikes.append(int(m.group(1)) if m else 0)
                self.note(f"memory spike: {body.strip()} holds {SPIKE_MIB} MiB more")

        self.note(f"memory spike of {SPIKE_MIB} MiB requested")
        threading.Thread(target=leak, daemon=True).start()

    def _status(self) -> None:
        """``--status --json`` lists the live workers. The watch holds the file it
        prints to 0.2 s; this checks the client, so it may ask again (3 tries)
        while the table has just moved or keeps moving."""
        for _ in range(3):
            before, since = self.watch.changes, self.watch.changed_at
            started = time.monotonic()
            r = self.h.run("--status", "--json", f"--pid-file={self.pid_file}",
                           f"--status-file={self.status_file}", timeout=30)
            try:
                pids = {g["pid"] for g in json.loads(r.stdout)["generations"]}
            except (ValueError, KeyError) as exc:
                self.watch.violations.append(f"--status --json: {exc!r} in {r.stdout!r} "
                                             f"{r.stderr!r}")
                return
            workers = scan(self.starter).workers
            if pids == workers:
                self.note(f"--status --json: workers {sorted(pids)}")
                return
            still = self.watch.changes == before and since < started - self.watch.lag
            self.note(f"--status --json: {sorted(pids)}, the workers: {sorted(workers)}"
                      f"{'' if still else ' (the table moved)'}")
        if still:
            self.watch.violations.append(
                f"--status --json lists {sorted(pids)}, the workers are {sorted(workers)}")

    # ----- the end

    def _settle(self) -> None:
        """Repair, let the last --restart finish, wait for a full, quiet generation."""
        if self.broken_until is not None:
            self._repair()
        if self.restart is not None:
            self.restart.join(70)
        if self.watch.violations:
            return

        def quiet() -> bool:
            plain, detail, _ = status_pids(self.status_file)
            return (len(self._active()) == self.mode.workers == len(detail)
                    and plain == detail == self.watch.table.workers)

        try:
            wait_until(quiet, timeout=30, what="one generation, every worker active")
        except AssertionError as exc:
            self.watch.violations.append(f"no quiet end: {exc}")
            return
        self._status()

    def _stop(self) -> None:
        """TERM: nothing may be left, no process, no pid, status or socket file."""
        self.note("TERM")
        os.kill(self.starter, signal.SIGTERM)
        v = self.verdict.violations
        try:
            wait_until(lambda: not self.h.leftovers(), timeout=20, what="every process to exit")
        except AssertionError as exc:
            v.append(f"after TERM: {exc}: {self.h.leftovers()}")
        if not self.mode.daemonize and self.proc.wait(10) != 0:
            v.append(f"the starter exited {self.proc.proc.returncode} after TERM")
        for path in (self.pid_file, self.status_file, Path(f"{self.status_file}.json"),
                     self.sock):
            if path.exists():
                v.append(f"{path.name} left behind after TERM")
        left = [str(p.relative_to(self.tmpdir)) for p in self.tmpdir.rglob("*")]
        if left:
            v.append(f"left behind in the starter's TMPDIR after TERM: {left}")
        self.note(f"stopped; {len(v)} violations")

    def logs(self) -> str:
        """The starter's log, every rotated part in order."""
        parts = [self.log.with_name(f"{self.log.name}.{i}") for i in range(1, self.rotations + 1)]
        return "".join(p.read_text() for p in [*parts, self.log] if p.exists())

    def report(self) -> str:
        v = self.verdict
        head = [
            f"chaos seed {self.seed} ({self.mode}), {time.monotonic() - self.t0:.1f} s: "
            f"{sum(self.counts.values())} events {dict(self.counts)}",
            f"requests served {v.served}, failed {v.failed} ({v.excused} in flight to a "
            f"SIGKILLed worker); status lag max {self.watch.max_lag * 1000:.0f} ms once "
            f"quiet ({self.watch.max_wall_lag * 1000:.0f} ms in all); memory "
            f"spikes {len(v.spikes)}, replaced for --max-memory {v.replaced}",
        ]
        if v.violations:
            head += ["VIOLATIONS:", *v.violations,
                     f"replay: python -m tests.chaos --seed {self.seed} "
                     f"--duration {self.duration:g}", "event log:", *self.events,
                     "starter log (last 60 lines):", *self.logs().splitlines()[-60:]]
        return "\n".join(head)
