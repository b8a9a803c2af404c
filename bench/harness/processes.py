"""Starting and stopping what a section measures: a starter (ours or Perl's) with its
own directory, port and files, or the app bound directly; and after each section,
anything of this run still alive is reported as a leftover and killed."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from harness.common import (
    APP,
    OURS,
    PERL_STARTER,
    PY,
    TOKEN,
    TOKEN_VAR,
    BenchError,
    base_env,
    free_port,
    http_get,
    log,
    wait_for,
)
from harness.procfs import children, cmdline, is_zombie, token_pids

LIVE: list[Any] = []  # everything started and not yet stopped
LEFTOVERS: list[str] = []  # processes found alive after their starter had stopped
ERRORS: list[str] = []  # sections that could not complete


def _stop_popen(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)  # started with start_new_session
            proc.wait(5)


class Starter:
    """One start_server (ours or Perl's) with its own directory, port and files."""

    def __init__(
        self,
        impl: str,
        label: str,
        opts: Sequence[str],
        ready_delay: float,
        root: Path,
        *,
        notify: bool = True,
        keep_alive: bool = False,
        workers: int = 1,
        extra_env: Optional[dict[str, str]] = None,
    ) -> None:
        self.impl = impl
        self.workers = workers  # ours --workers N: N processes per generation
        self.label = label
        self.dir = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=root))
        self.port = free_port()
        self.pid_file = str(self.dir / "start_server.pid")
        self.status_file = str(self.dir / "start_server.status")
        self.spawn_log = str(self.dir / "spawns.log")
        self.log_path = self.dir / "start_server.log"
        self.exe = OURS if impl == "ours" else [PERL_STARTER]
        self.cmd = [
            *self.exe,
            "--port",
            f"127.0.0.1:{self.port}",
            "--pid-file",
            self.pid_file,
            "--status-file",
            self.status_file,
            *opts,
            "--",
            PY,
            APP,
        ]
        self.env = base_env(
            **{
                TOKEN_VAR: TOKEN,
                "BENCH_READY_DELAY": f"{ready_delay:g}",
                "BENCH_SPAWN_LOG": self.spawn_log,
                "BENCH_NO_NOTIFY": "" if notify else "1",
                "BENCH_KEEPALIVE": "1" if keep_alive else "",
                **(extra_env or {}),
            }
        )
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> Starter:
        with open(self.log_path, "ab") as logfh:
            self.proc = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=logfh,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.dir,
                start_new_session=True,
            )
        LIVE.append(self)
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def gens(self) -> list[tuple[int, int]]:
        """GEN:PID lines of the status file (both starters write the same format)."""
        try:
            with open(self.status_file) as fh:
                text = fh.read()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            g, _, p = line.partition(":")
            if g.isdigit() and p.strip().isdigit():
                out.append((int(g), int(p)))
        return sorted(out)

    def spawns(self) -> list[tuple[int, int]]:
        try:
            with open(self.spawn_log) as fh:
                return [(int(a), int(b)) for a, b in (ln.split() for ln in fh if ln.strip())]
        except FileNotFoundError:
            return []

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(
                f"{self.label}: the starter exited with {self.proc.returncode}:\n{self.log_tail()}"
            )

    def _state(self) -> Optional[tuple[int, tuple[int, ...]]]:
        """(gen, pids) once one generation is listed with all its workers, they are
        the starter's only children, it is the newest spawned, and it answers."""
        self._check_alive()
        gens = self.gens()
        if len(gens) != self.workers or len({g for g, _ in gens}) != 1:
            return None
        gen = gens[0][0]
        pids = tuple(sorted(p for _, p in gens))
        if tuple(children(self.pid)) != pids:
            return None  # an old one still draining, or a newer one starting
        spawned = self.spawns()
        if spawned and max(g for g, _ in spawned) != gen:
            return None
        status, body = http_get(self.port, timeout=2.0)
        if status == 200 and body.get("pid") in {str(p) for p in pids}:
            return gen, pids
        return None

    def settled(self) -> Optional[tuple[int, int]]:
        """(gen, pid of its first worker) once _state() holds."""
        state = self._state()
        return None if state is None else (state[0], state[1][0])

    def wait_settled(self, timeout: float = 30.0, stable: float = 0.1) -> tuple[int, int]:
        """Wait until _state() holds, unchanged, for ``stable`` seconds (a restart
        requested meanwhile, e.g. a coalesced HUP, shows up within that time)."""
        seen: list[Any] = [None, 0.0]

        def steady() -> Optional[tuple[int, int]]:
            now = self._state()
            if now is None or now != seen[0]:
                seen[0], seen[1] = now, time.monotonic()
                return None
            return (now[0], now[1][0]) if time.monotonic() - seen[1] >= stable else None

        try:
            return wait_for(steady, timeout, f"{self.label} to settle on one generation")
        except BenchError as exc:
            raise BenchError(f"{exc}\n{self.log_tail()}") from None

    def started(self) -> bool:
        """The starter itself counts its current generation as started.

        Perl's writes the status file only once a generation outlived
        --interval; ours lists a generation at spawn and says "active" in the
        JSON sidecar once it started."""
        if self.impl == "perl":
            return self.settled() is not None
        if self.settled() is None:
            return False
        try:
            with open(self.status_file + ".json") as fh:
                detail = json.load(fh)
        except (OSError, ValueError):
            return False
        gens = detail.get("generations", [])
        return bool(gens) and all(g.get("state") == "active" for g in gens)

    def restart_cmd(self) -> list[str]:
        return [
            *self.exe,
            "--restart",
            "--pid-file",
            self.pid_file,
            "--status-file",
            self.status_file,
        ]

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is not None:
            _stop_popen(self.proc, timeout)
        if self in LIVE:
            LIVE.remove(self)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(f"    {ln}" for ln in text[-lines:])


class DirectApp:
    """The app without a starter: we bind, pass the fd down as SERVER_STARTER_PORT, exec."""

    def __init__(
        self, label: str, ready_delay: float, root: Path, keep_alive: bool = False
    ) -> None:
        self.label = label
        self.keep_alive = keep_alive
        self.dir = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=root))
        self.ready_delay = ready_delay
        self.port = 0
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> DirectApp:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", free_port()))
            sock.listen(socket.SOMAXCONN)  # the starters' default backlog too
            self.port = sock.getsockname()[1]
            fd = sock.fileno()
            env = base_env(
                **{
                    TOKEN_VAR: TOKEN,
                    "BENCH_READY_DELAY": f"{self.ready_delay:g}",
                    "SERVER_STARTER_PORT": f"127.0.0.1:{self.port}={fd}",
                    "SERVER_STARTER_GENERATION": "1",
                    "BENCH_KEEPALIVE": "1" if self.keep_alive else "",
                }
            )
            with open(self.dir / "app.log", "ab") as logfh:
                self.proc = subprocess.Popen(
                    [PY, APP],
                    pass_fds=(fd,),
                    stdin=subprocess.DEVNULL,
                    stdout=logfh,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=self.dir,
                    start_new_session=True,
                )
        finally:
            sock.close()  # the app owns the listening socket now
        LIVE.append(self)
        return self

    def serving(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"{self.label}: the app exited with {self.proc.returncode}")
        status, _ = http_get(self.port, timeout=2.0)
        return status == 200

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc is not None:
            _stop_popen(self.proc, timeout)
        if self in LIVE:
            LIVE.remove(self)


def sweep(section: str) -> None:
    """After a section's starters stopped: report and kill anything of ours still alive."""
    pids = [p for p in token_pids() if not is_zombie(p)]
    if not pids:
        return
    for p in pids:
        LEFTOVERS.append(f"section {section}: pid {p} still running after stop: {cmdline(p)}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGTERM)
    with contextlib.suppress(BenchError):
        wait_for(lambda: not [p for p in token_pids() if not is_zombie(p)], 3.0, "leftovers")
    for p in token_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def stop_all() -> None:
    for thing in list(LIVE):
        with contextlib.suppress(Exception):
            thing.stop()


@contextlib.contextmanager
def section_scope(name: str) -> Any:
    t0 = time.monotonic()
    log(f"section {name}: start")
    try:
        yield
    finally:
        stop_all()
        sweep(name)
        log(f"section {name}: done in {time.monotonic() - t0:.1f} s")
