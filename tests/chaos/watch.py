"""The invariants checked continuously while the chaos schedule runs."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Callable, Optional

from .table import Table, scan

ZOMBIE_GRACE = 1.0  # a dead child must be reaped within this long
MAX_WALL_LAG = 10.0  # a disagreement this long fails however busy the machine is


IDLE = {"do_epoll_wait", "ep_poll", "do_sys_poll", "do_select"}  # asleep in a selector


def idle(pid: int) -> bool:
    """``pid`` is asleep in its selector: it has handled all it was told of."""
    try:
        with open(f"/proc/{pid}/wchan") as fh:
            return fh.read().strip() in IDLE
    except OSError:
        return False


def status_pids(status_file: Path) -> tuple[frozenset[int], frozenset[int], frozenset[int]]:
    """The worker pids of the GEN:PID file, of its JSON sidecar, and of the JSON's
    workers that the GEN:PID file lists too (the original's: started and alive)."""
    try:
        plain = status_file.read_text()
    except FileNotFoundError:
        plain = ""
    try:
        detail = json.loads(Path(f"{status_file}.json").read_text())
    except FileNotFoundError:
        detail = {}
    workers = detail.get("generations", [])
    return (
        frozenset(int(line.partition(":")[2]) for line in plain.splitlines()),
        frozenset(int(g["pid"]) for g in workers),
        frozenset(int(g["pid"]) for g in workers
                  if g["state"] in ("active", "retiring") and g["started_at"] is not None),
    )


def agrees(status: tuple[frozenset[int], ...], table: Table) -> bool:
    plain, detail, started = status
    return plain == started and detail == table.workers


class Watch:
    """A thread that scans the process table every ``period`` seconds and checks:

    - the starter is alive and the pid file names it;
    - ``<status>.json`` (what ``--status --json`` prints) lists exactly the live
      workers, and the status file those of them that started, at the latest
      ``lag`` seconds after the table last changed: a disagreement may last only
      while the table keeps moving;
    - no child of the starter or of a worker stays a zombie past ZOMBIE_GRACE.
    """

    def __init__(self, starter: int, pid_file: Path, status_file: Path,
                 note: Callable[[str], None], *, lag: float = 0.2, period: float = 0.03) -> None:
        self.starter = starter
        self.pid_file = pid_file
        self.status_file = status_file
        self.note = note
        self.lag = lag
        self.period = period
        self.violations: list[str] = []
        self.table: Table = scan(starter)
        self.changed_at = time.monotonic()  # when the worker set last changed
        self.changes = 0
        self.max_lag = 0.0  # longest disagreement seen while all was quiet (s)
        self.max_wall_lag = 0.0  # ... seen at all
        self.checks = 0
        self._disagree_since: Optional[float] = None  # first sight of a disagreement
        self._quiet_since: Optional[float] = None  # ... since when the starter is quiet
        self._zombies: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _violate(self, what: str) -> None:
        if what not in self.violations:
            self.violations.append(what)
            self.note(f"VIOLATION {what}")

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            self.check()

    def check(self) -> None:
        # The status files first, then the table: a worker spawned between the two
        # reads is then a change of the table, never a status "ahead" of it.
        try:
            status: Optional[tuple[frozenset[int], ...]] = status_pids(self.status_file)
        except (OSError, ValueError) as exc:
            self._violate(f"status files unreadable: {exc!r}")
            status = None
        now = time.monotonic()
        table = scan(self.starter)
        quiet = idle(self.starter)
        if table.workers != self.table.workers:
            self.changed_at = now
            self.changes += 1
        self.table = table
        self.checks += 1
        if not table.starter_alive:
            self._violate(f"the starter {self.starter} is gone")
            return
        try:
            named = int(self.pid_file.read_text())
        except (OSError, ValueError) as exc:
            self._violate(f"pid file unreadable: {exc!r}")
        else:
            if named != self.starter:
                self._violate(f"pid file names {named}, the starter is {self.starter}")
        if status is not None:
            self._check_status(table, now, quiet, status)
        self._check_zombies(table, now)

    def _check_status(self, table: Table, now: float, quiet: bool,
                      status: tuple[frozenset[int], ...]) -> None:
        """A disagreement must end within ``lag`` once things are quiet: the table
        unchanged and the starter asleep in its selector, so done with all it
        was told of. (Spawning three workers, or waiting for a CPU on a loaded
        machine, can take longer than 0.2 s and says nothing of the status.)
        However busy the starter, a disagreement may not last MAX_WALL_LAG."""
        plain, detail, started = status
        if agrees(status, table):
            if self._disagree_since is not None:
                self.max_wall_lag = max(self.max_wall_lag, now - self._disagree_since)
            if self._quiet_since is not None:
                self.max_lag = max(self.max_lag, now - self._quiet_since)
            self._disagree_since = self._quiet_since = None
            return
        if self._disagree_since is None:
            self._disagree_since = now
        if not quiet or self.changed_at == now:
            self._quiet_since = None
        elif self._quiet_since is None:
            self._quiet_since = now
        lag = 0.0 if self._quiet_since is None else now - self._quiet_since
        if (lag > self.lag or now - self._disagree_since > MAX_WALL_LAG) and not agrees(
            status_pids(self.status_file), scan(self.starter)
        ):  # read again at once: this thread may have slept since its last reads
            self._violate(
                f"status disagrees with the process table for {lag:.3f} s while the starter "
                f"is idle ({now - self._disagree_since:.3f} s in all): workers "
                f"{sorted(table.workers)}, status file {sorted(plain)}, json {sorted(detail)} "
                f"of which started {sorted(started)}"
            )

    def _check_zombies(self, table: Table, now: float) -> None:
        self._zombies = {z: self._zombies.get(z, now) for z in table.zombies}
        for z, since in self._zombies.items():
            if now - since > ZOMBIE_GRACE and not any(f"zombie {z} " in v for v in self.violations):
                parent = table.parents.get(z)
                self._violate(f"zombie {z} (child of {parent}) unreaped for {now - since:.1f} s")
