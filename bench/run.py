#!/usr/bin/env python3
"""Benchmark our start_server against Perl's Server::Starter 0.35, side by side.

    . .venv/bin/activate            # a regular install: pip install '.[test]'
    python bench/run.py --markdown bench/RESULTS.md  # the full run (about 5 minutes)
    python bench/run.py --quick     # fewer samples, shorter loads (about 2 minutes)
    python bench/run.py --only a,d  # some sections only

Both starters run the same app (bench/app.py) with the same interpreter, on
free loopback ports, each in its own temporary directory. The sections:

  a  --restart wall time (the client command), app ready 100 ms after exec
  b  SIGKILL of the worker -> first successful request; five SIGKILLs of the
     serving worker 1.5 s apart (a crashing app), kill -> first OK each time
  c  wrk -c 50 -t 2 while the starter gets HUP every 100 ms / every 1 s
  d  idle wake-ups of the starter (context switches from /proc/PID/status)
  e  RSS of the starter (VmRSS)
  f  req/s of the app bound directly vs under each starter
  g  req/s of ours --workers 2 vs ours --workers 1 (Perl's has no --workers)
  h  memory-limit restarts of ours under wrk load (Perl's has no memory limit)
  i  time from crossing the memory limit to the replacement ready / old one gone

Every wait is a condition polled with a deadline, every load is bounded in
count and time, and everything started is stopped at the end (TERM, a
deadline, then KILL), even on errors or Ctrl-C. Each process started carries
a token in its environment, so anything left behind is found, reported and
killed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import random
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

BENCH = Path(__file__).resolve().parent
APP = str(BENCH / "app.py")
LUA = str(BENCH / "report.lua")
PERL_STARTER = "/usr/bin/start_server"
PY = sys.executable
TOKEN_VAR = "START_SERVER_BENCH_TOKEN"
TOKEN = uuid.uuid4().hex
SETTINGS: dict[str, Optional[str]] = {"pycache": None}  # main(): this run's .pyc cache
READY_DELAY = 0.1  # "an app that becomes ready 100 ms after exec"
WRK_CONNS, WRK_THREADS, WRK_TIMEOUT = 50, 2, 2

T = TypeVar("T")


class BenchError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- small helpers -----------------------------------------------------------


def wait_for(
    predicate: Callable[[], Optional[T]], timeout: float, what: str, step: float = 0.005
) -> T:
    """Poll ``predicate`` until truthy; BenchError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Optional[BaseException] = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ValueError) as exc:
            last = exc
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:g} s waiting for {what} ({last!r})")
        time.sleep(step)


_used_ports: set[int] = set()


def free_port() -> int:
    """A free loopback TCP port below the ephemeral range (no clash with wrk's clients)."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        if port in _used_ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _used_ports.add(port)
        return port
    raise BenchError("no free loopback port found")


def http_get(port: int, timeout: float = 5.0) -> tuple[int, dict[str, str]]:
    """One GET; (status, {"gen": .., "pid": ..}) from the app's body.

    Reads up to Content-Length, then closes: the app waits for its client to
    close first.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(b"GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while True:
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                if m and len(body) >= int(m.group(1)):
                    break
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    parts = head.decode("latin-1").split(" ", 2)
    status = int(parts[1]) if head.startswith(b"HTTP/") and len(parts) > 1 else 0
    text = body.decode("latin-1")
    fields = dict(item.split("=", 1) for item in text.split() if "=" in item)
    return status, fields


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def vmrss_kb(pid: int) -> int:
    return int(proc_status(pid)["VmRSS"].split()[0])


def ctx_switches(pid: int) -> int:
    """Voluntary + nonvoluntary context switches, summed over the process's threads."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as fh:
                lines = fh.readlines()
        except FileNotFoundError:
            continue  # the thread just exited
        for line in lines:
            if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                total += int(line.split()[1])
    return total


def children(ppid: int) -> list[int]:
    """Live (non-zombie) children of ``ppid``, from /proc."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[0] != b"Z" and int(fields[1]) == ppid:
            out.append(int(name))
    return sorted(out)


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def base_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # Nothing of the caller's own supervision or starter tuning leaks into the runs.
    for name in (
        "NOTIFY_SOCKET",
        "ENVDIR",
        "ENABLE_AUTO_RESTART",
        "AUTO_RESTART_INTERVAL",
        "KILL_OLD_DELAY",
        "SERVER_STARTER_PORT",
        "SERVER_STARTER_GENERATION",
    ):
        env.pop(name, None)
    env["PATH"] = str(Path(PY).parent) + os.pathsep + env.get("PATH", "")
    if SETTINGS["pycache"] is not None:
        # A deployed package has its .pyc files; an editable install under
        # PYTHONDONTWRITEBYTECODE=1 would recompile ours at every start.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = SETTINGS["pycache"]
    env.update(extra)
    return env


def ours_command() -> list[str]:
    """Our console script, next to this interpreter (never /usr/bin/start_server)."""
    script = Path(PY).parent / "start_server"
    if script.exists():
        return [str(script)]
    return [PY, "-m", "start_server"]


OURS = ours_command()


# ---- processes ---------------------------------------------------------------

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


def token_pids() -> list[int]:
    """Processes whose environment carries this run's token."""
    needle = f"{TOKEN_VAR}={TOKEN}".encode()
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                if needle in fh.read().split(b"\0"):
                    out.append(int(name))
        except OSError:
            continue
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def sweep(section: str) -> None:
    """After a section's starters stopped: report and kill anything of ours still alive."""
    pids = [p for p in token_pids() if not _is_zombie(p)]
    if not pids:
        return
    for p in pids:
        LEFTOVERS.append(f"section {section}: pid {p} still running after stop: {_cmdline(p)}")
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGTERM)
    with contextlib.suppress(BenchError):
        wait_for(lambda: not [p for p in token_pids() if not _is_zombie(p)], 3.0, "leftovers")
    for p in token_pids():
        with contextlib.suppress(ProcessLookupError):
            os.kill(p, signal.SIGKILL)


def _is_zombie(pid: int) -> bool:
    try:
        return proc_status(pid).get("State", "").startswith("Z")
    except OSError:
        return True


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


# ---- wrk ---------------------------------------------------------------------


def wrk(port: int, seconds: int) -> dict[str, Any]:
    """One wrk run (its -d takes whole seconds)."""
    cmd = [
        shutil.which("wrk") or "/usr/bin/wrk",
        "-t",
        str(WRK_THREADS),
        "-c",
        str(WRK_CONNS),
        "-d",
        f"{int(seconds)}s",
        "--timeout",
        f"{WRK_TIMEOUT}s",
        "-s",
        LUA,
        f"http://127.0.0.1:{port}/",
    ]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=False)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = re.search(r"^BENCH_JSON (\{.*\})\s*$", r.stdout, re.M)
    if r.returncode != 0 or m is None:
        raise BenchError(f"wrk failed ({r.returncode}): {r.stdout[-500:]} {r.stderr[-500:]}")
    d: dict[str, Any] = json.loads(m.group(1))
    d["rps"] = d["requests"] / (d["duration_us"] / 1e6)
    d["failed"] = d["connect"] + d["read"] + d["write"] + d["status"] + d["timeout"]
    # wrk's own CPU time (the only child reaped meanwhile): how much it leaves the app.
    d["wrk_cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return d


class HupSender(threading.Thread):
    """SIGHUP every ``period`` for ``duration``: a bounded number of signals."""

    def __init__(self, pid: int, period: float, duration: float) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.period = period
        self.count = max(0, int(duration / period + 1e-9) - 1)  # strictly inside the load
        self.sent = 0
        self.halt = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        for k in range(1, self.count + 1):
            if self.halt.wait(max(0.0, start + k * self.period - time.monotonic())):
                return
            try:
                os.kill(self.pid, signal.SIGHUP)
            except ProcessLookupError:
                return
            self.sent += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(5)


# ---- the sections ------------------------------------------------------------

# (key, implementation, options, the app sends READY=1, description)
RunConfig = tuple[str, str, list[str], bool, str]
OURS_READY: RunConfig = ("ours_ready", "ours", ["--wait-ready"], True, "ours --wait-ready")
OURS_I1: RunConfig = ("ours_i1", "ours", ["--interval", "1"], False, "ours --interval=1")
OURS_I1_NOTIFY: RunConfig = (
    "ours_i1_notify",
    "ours",
    ["--interval", "1"],
    True,
    "ours --interval=1, app sends READY=1",
)
PERL_I1: RunConfig = ("perl", "perl", [], False, "perl (default --interval 1)")


def timed_run(cmd: list[str], timeout: float) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.monotonic()
    r = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=base_env(),
        stdin=subprocess.DEVNULL,
        check=False,
    )
    return time.monotonic() - t0, r


def section_a(opt: argparse.Namespace, root: Path) -> dict[str, Any]:
    """--restart wall time, the takeover time seen from outside, the client's own start."""
    out: dict[str, Any] = {}
    for key, impl, opts, notify, desc in (OURS_READY, OURS_I1, OURS_I1_NOTIFY, PERL_I1):
        s = Starter(impl, f"a-{key}", opts, READY_DELAY, root, notify=notify).start()
        s.wait_settled()
        client, server = [], []
        phases: list[tuple[float, float, float]] = []
        for i in range(opt.samples):
            before, _ = s.wait_settled()
            wall0 = time.time()
            dt, r = timed_run(s.restart_cmd(), timeout=60)
            wall1 = time.time()
            if r.returncode != 0:
                raise BenchError(f"{desc}: --restart exited {r.returncode}: {r.stderr.strip()}")
            gens = s.gens()
            if len(gens) != 1 or gens[0][0] <= before:
                raise BenchError(f"{desc}: --restart returned but the status file lists {gens}")
            client.append(dt)
            if impl == "ours":
                ph = _restart_phases(s.log_path, wall0, wall1)
                if ph is not None:
                    phases.append(ph)
            log(f"  (a) {desc}: --restart #{i + 1}: {dt:.3f} s")
        if phases:
            log(
                f"  (a) {desc}: exec -> HUP / HUP -> old gone / -> client exit: "
                + ", ".join(f"{x:.3f}/{y:.3f}/{z:.3f}" for x, y, z in phases)
            )
        for _ in range(opt.samples):
            before, _ = s.wait_settled()
            t0 = time.monotonic()
            os.kill(s.pid, signal.SIGHUP)

            def taken_over(s: Starter = s, before: int = before) -> bool:
                g = s.gens()
                return len(g) == 1 and g[0][0] > before

            wait_for(taken_over, 30, f"{desc}: takeover after HUP", step=0.001)
            server.append(time.monotonic() - t0)
        log(f"  (a) {desc}: HUP -> takeover (no client): {[round(x, 3) for x in server]}")
        s.stop()
        out[key] = {"desc": desc, "client": client, "server": server, "phases": phases}
    # The client's own cost: the same command up to reading a pid file that is not there.
    missing = str(root / "no-such-dir" / "start_server.pid")
    for impl, exe in (("ours", OURS), ("perl", [PERL_STARTER])):
        runs = []
        for _ in range(opt.samples):
            dt, r = timed_run(
                [*exe, "--restart", "--pid-file", missing, "--status-file", missing], timeout=30
            )
            if r.returncode == 0:
                raise BenchError(f"{impl} --restart with a missing pid file exited 0")
            runs.append(dt)
        out[f"client_start_{impl}"] = runs
    # The app's own part: exec -> first answer, 100 ms start-up included.
    app = []
    for i in range(opt.samples):
        d = DirectApp(f"a-direct{i}", READY_DELAY, root)
        t0 = time.monotonic()
        d.start()
        wait_for(d.serving, 15, "the direct app to answer", step=0.001)
        app.append(time.monotonic() - t0)
        d.stop()
    out["app_start"] = app
    log(
        f"  (a) client alone: ours {[round(x, 3) for x in out['client_start_ours']]}, "
        f"perl {[round(x, 3) for x in out['client_start_perl']]}"
    )
    log(f"  (a) app alone (exec -> first answer): {[round(x, 3) for x in app]}")
    return out


def _restart_phases(log_path: Path, t0: float, t1: float) -> Optional[tuple[float, float, float]]:
    """One --restart of ours cut in three from the starter's log (UTC, ms): the
    client's start until the starter got HUP, the takeover until the last old
    worker died, and from then until the client had exited."""
    events = [e for e in _log_events(log_path) if t0 - 0.002 <= e[0] <= t1 + 0.002]
    hup = [t for t, _, msg in events if msg.startswith("received HUP")]
    died = [t for t, _, msg in events if msg.startswith("old worker") and " died" in msg]
    if not hup or not died:
        return None
    return hup[0] - t0, died[-1] - hup[0], t1 - died[-1]


def _kill_and_time(s: Starter) -> float:
    """SIGKILL the current worker; seconds until a request is answered by another pid."""
    _gen, pid = s.gens()[-1]
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    deadline = t0 + 30
    while True:
        with contextlib.suppress(OSError):
            status, body = http_get(s.port, timeout=max(0.1, deadline - time.monotonic()))
            if status == 200 and body.get("pid") not in (None, str(pid)):
                return time.monotonic() - t0
        if time.monotonic() > deadline:
            raise BenchError(f"{s.label}: no answer within 30 s of killing {pid}\n{s.log_tail()}")
        time.sleep(0.001)  # a failed attempt (reset by the dying worker): retry


SERIAL_KILLS, SERIAL_PERIOD = 5, 1.5


def _serial_kills(s: Starter, desc: str) -> list[float]:
    """SIGKILL the serving worker SERIAL_KILLS times, SERIAL_PERIOD s apart and each
    time once its replacement counts as started; kill -> first OK, each time."""
    out = []
    wait_for(s.started, 30, f"{desc}: the first worker to count as started")
    last = time.monotonic()
    for k in range(SERIAL_KILLS):
        wait_for(s.started, 60, f"{desc}: the worker after kill {k} to count as started")
        rest = last + SERIAL_PERIOD - time.monotonic()
        if rest > 0:
            time.sleep(rest)  # the schedule: one kill every SERIAL_PERIOD seconds
        last = time.monotonic()
        out.append(_kill_and_time(s))
    return out


def section_b(opt: argparse.Namespace, root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    app_start = []
    for i in range(opt.samples + 2):
        d = DirectApp(f"b-direct{i}", 0.0, root)
        t0 = time.monotonic()
        d.start()
        wait_for(d.serving, 15, "the direct app to answer", step=0.001)
        app_start.append(time.monotonic() - t0)
        d.stop()
    out["app_start"] = app_start
    log(f"  (b) app's own start (direct): {[round(x, 3) for x in app_start]}")
    for key, impl, opts, notify, desc in (OURS_I1, PERL_I1):
        first, second = [], []
        for i in range(opt.samples):
            s = Starter(impl, f"b-{key}{i}", opts, 0.0, root, notify=notify).start()
            s.wait_settled()
            first.append(_kill_and_time(s))
            if i == opt.samples - 1:
                # A second crash on the same starter, once the respawned worker
                # counts as started (Perl: listed after --interval; ours: "active").
                s.wait_settled()
                wait_for(s.started, 30, f"{desc}: the respawned worker to count as started")
                second.append(_kill_and_time(s))
            s.stop()
        log(f"  (b) {desc}: SIGKILL -> first OK: {[round(x, 3) for x in first]}, 2nd: {second}")
        out[key] = {"desc": desc, "first": first, "second": second}
    serial: dict[str, Any] = {}
    for key, impl, opts, notify, desc in (OURS_READY, OURS_I1, PERL_I1):
        s = Starter(impl, f"b-serial-{key}", opts, 0.0, root, notify=notify).start()
        try:
            times = _serial_kills(s, desc)
        finally:
            s.stop()
        log(f"  (b) {desc}: {SERIAL_KILLS} SIGKILLs {SERIAL_PERIOD:g} s apart, kill -> first "
            f"OK: {[round(x, 3) for x in times]}")
        serial[key] = {"desc": desc, "times": times}
    out["serial"] = serial
    return out


def section_c(opt: argparse.Namespace, root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, impl, opts, notify, desc in (OURS_READY, OURS_I1, PERL_I1):
        s = Starter(impl, f"c-{key}", opts, READY_DELAY, root, notify=notify).start()
        s.wait_settled()
        rss_start = vmrss_kb(s.pid)
        runs = {}
        for period in (0.1, 1.0):
            before = len(s.spawns())
            hup = HupSender(s.pid, period, opt.load)
            try:
                hup.start()
                res = wrk(s.port, opt.load)
            finally:
                hup.stop()
            s.wait_settled(60)
            res["hups"] = hup.sent
            res["spawned"] = len(s.spawns()) - before
            runs[f"{period:g}"] = res
            log(
                f"  (c) {desc} HUP/{period:g}s: {res['requests']} req, failed {res['failed']} "
                f"(connect {res['connect']} read {res['read']} write {res['write']} "
                f"timeout {res['timeout']} status {res['status']}), p99 {res['p99_us'] / 1000:.1f} "
                f"ms, {res['hups']} HUPs -> {res['spawned']} generations"
            )
        out[key] = {
            "desc": desc,
            "runs": runs,
            "rss_start_kb": rss_start,
            "rss_after_kb": vmrss_kb(s.pid),
        }
        s.stop()
    return out


def _bare_rss(cmd: list[str]) -> int:
    """RSS of a bare interpreter blocked on stdin: the floor under either starter."""
    p = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=base_env(),
        start_new_session=True,
    )
    try:

        def blocked() -> bool:
            # /proc/PID/syscall: "0 0x0 ..." is read(2) on fd 0, which happens
            # only once the interpreter has finished starting up.
            with open(f"/proc/{p.pid}/syscall") as fh:
                fields = fh.read().split()
            return len(fields) > 1 and fields[0] == "0" and int(fields[1], 16) == 0

        wait_for(blocked, 10, f"{cmd[0]} to block on stdin", step=0.01)
        return vmrss_kb(p.pid)
    finally:
        assert p.stdin is not None
        p.stdin.close()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


# The modules our running starter holds (it re-executes itself as `python -S`
# once its options are read, see start_server/reexec.py), nothing run.
IMPORTS_ONLY = (
    "import sys; sys.path.insert(0, {parent!r}); "
    "import start_server.cli, start_server.reexec, start_server.config, start_server.loop, "
    "start_server.daemonize; sys.stdin.read()"
)


def section_de(opt: argparse.Namespace, root: Path) -> dict[str, Any]:
    auto = ["--enable-auto-restart", "--auto-restart-interval", "3600"]
    configs = [
        ("ours", "ours", [], False),
        ("ours_auto", "ours", auto, False),
        ("ours_ready", "ours", ["--wait-ready"], True),
        ("perl", "perl", [], False),
        ("perl_auto", "perl", auto, False),
    ]
    starters = {
        k: Starter(impl, f"d-{k}", o, 0.0, root, notify=notify).start()
        for k, impl, o, notify in configs
    }
    for s in starters.values():
        s.wait_settled()
    # Both starters are idle once the first generation is listed: ours has no
    # timer left (or one an hour away), Perl sits in wait(2) (or its 1 s alarm).
    c0 = {k: ctx_switches(s.pid) for k, s in starters.items()}
    rss = {k: vmrss_kb(s.pid) for k, s in starters.items()}
    threads = {k: len(os.listdir(f"/proc/{s.pid}/task")) for k, s in starters.items()}
    t0 = time.monotonic()
    time.sleep(opt.idle)  # the measurement window itself, nothing to wait for
    c1 = {k: ctx_switches(s.pid) for k, s in starters.items()}
    window = time.monotonic() - t0
    out: dict[str, Any] = {"window": window}
    for k in starters:
        out[k] = {
            "switches": c1[k] - c0[k],
            "per_s": (c1[k] - c0[k]) / window,
            "rss_kb": rss[k],
            "threads": threads[k],
        }
        log(f"  (d/e) {k}: {c1[k] - c0[k]} switches in {window:.1f} s, RSS {rss[k]} kB")
    for s in starters.values():
        s.stop()
    out["bare_python_kb"] = _bare_rss([PY, "-S", "-c", "import sys; sys.stdin.read()"])
    out["bare_perl_kb"] = _bare_rss(["perl", "-e", "my @x = <STDIN>;"])
    import start_server

    parent = str(Path(start_server.__file__).resolve().parent.parent)
    out["imports_kb"] = _bare_rss([PY, "-S", "-c", IMPORTS_ONLY.format(parent=parent)])
    return out


def app_profile(pid: int, port: int) -> dict[str, str]:
    """What of the app's serving conditions a starter could change."""
    out = {}
    r = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=10, check=False
    )
    fields = r.stdout.split()
    out["backlog"] = fields[2] if len(fields) > 2 else "?"
    with open(f"/proc/{pid}/limits") as fh:
        for line in fh:
            if line.startswith("Max open files"):
                out["nofile"] = "/".join(line.split()[3:5])
    with open(f"/proc/{pid}/stat", "rb") as fh:
        stat = fh.read().rsplit(b")", 1)[1].split()
    out["nice"] = stat[16].decode()
    out["policy"] = stat[38].decode()
    out["cpus"] = proc_status(pid)["Cpus_allowed_list"]
    return out


@contextlib.contextmanager
def affinity(cpus: Optional[set[int]]) -> Any:
    """Children started inside inherit ``cpus`` (None: leave as is)."""
    if not cpus:
        yield
        return
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def section_f(opt: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Throughput: the same app bound directly and under each starter.

    This machine's speed drifts a lot from one second to the next (a busy
    host), so the runs go in rounds of short runs, order rotated each round,
    and each round gives its own ratio to the direct run next to it in time;
    the figure is the median of those ratios. A second run on the direct app
    in every round ("direct again", an A/A test) shows how much of a
    difference this machine can resolve at all.
    """
    ka = opt.keep_alive
    cpus = sorted(os.sched_getaffinity(0))
    app_cpus = {cpus[-1]} if opt.pin and len(cpus) > 1 else None
    wrk_cpus = set(cpus[:-1]) if app_cpus else None
    with affinity(app_cpus):
        direct = DirectApp("f-direct", 0.0, root, keep_alive=ka).start()
        ours = Starter(
            "ours", "f-ours", ["--interval", "1"], 0.0, root, notify=False, keep_alive=ka
        ).start()
        perl = Starter("perl", "f-perl", [], 0.0, root, notify=False, keep_alive=ka).start()
    wait_for(direct.serving, 15, "the direct app")
    ours.wait_settled()
    perl.wait_settled()
    assert direct.proc is not None
    app_env = {
        "direct": app_profile(direct.proc.pid, direct.port),
        "ours": app_profile(ours.gens()[0][1], ours.port),
        "perl": app_profile(perl.gens()[0][1], perl.port),
    }
    targets = {
        "direct": direct.port,
        "ours": ours.port,
        "direct_again": direct.port,
        "perl": perl.port,
    }
    with affinity(wrk_cpus):
        for port in (direct.port, ours.port, perl.port):  # warm-up, not recorded
            wrk(port, 1)
        rps: dict[str, list[float]] = {k: [] for k in targets}
        ratios: dict[str, list[float]] = {"ours": [], "perl": [], "direct_again": []}
        order = list(targets)
        n = len(order)
        for rep in range(opt.reps):
            this = {}
            for k in order[rep % n :] + order[: rep % n]:  # rotate: no position bias
                res = wrk(targets[k], opt.tput)
                if res["failed"]:
                    raise BenchError(f"(f) {k}: {res['failed']} failed requests, no restart")
                this[k] = res["rps"]
                rps[k].append(res["rps"])
            for k, series in ratios.items():
                series.append(this[k] / this["direct"])
            log(
                f"  (f) round {rep + 1}: direct {this['direct']:.0f}, ours {this['ours']:.0f}, "
                f"perl {this['perl']:.0f}, direct again {this['direct_again']:.0f} req/s"
            )
    return {
        "rps": rps,
        "ratios": ratios,
        "keep_alive": ka,
        "pinned": bool(app_cpus),
        "app_env": app_env,
    }


def _cpu_ticks(pid: int) -> int:
    """utime + stime of a process, in clock ticks."""
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _cpu_total() -> tuple[int, int, int]:
    """(busy, irq + softirq, all) clock ticks of the whole machine, from /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # user .. steal (guest time is already in user)
    return total - idle, fields[5] + fields[6], total


CPU_MS = 1.0  # (g): the CPU-bound app spends this much CPU time on each request


def section_g(opt: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Throughput of ours --workers 2 vs ours --workers 1 (Perl's has no --workers).

    Twice: with the app spending CPU_MS of CPU on each request (CPU-bound, the
    case --workers is for), and with the plain app (where wrk and the
    kernel's loopback work, on the same 2 CPUs, are most of the cost).
    """
    out: dict[str, Any] = {"cpu_ms": CPU_MS}
    for variant, cpu_ms in (("cpu", CPU_MS), ("plain", 0.0)):
        out[variant] = _workers_rounds(opt, root, variant, cpu_ms)
    return out


def _workers_rounds(
    opt: argparse.Namespace, root: Path, variant: str, cpu_ms: float
) -> dict[str, Any]:
    """Same method as (f): rounds of short wrk runs, order rotated, the figure is
    the median of the per-round ratios, and a second run on --workers 1 in
    every round (A/A) shows the noise. The CPU time each of the two workers
    used during the rounds shows that both served.
    """
    ka = opt.keep_alive
    env = {"BENCH_CPU_MS": f"{cpu_ms:g}"} if cpu_ms else None
    one = Starter(
        "ours", f"g-{variant}-w1", ["--wait-ready"], 0.0, root, keep_alive=ka, extra_env=env
    ).start()
    two = Starter(
        "ours",
        f"g-{variant}-w2",
        ["--wait-ready", "--workers", "2"],
        0.0,
        root,
        keep_alive=ka,
        workers=2,
        extra_env=env,
    ).start()
    one.wait_settled()
    two.wait_settled()
    two_pids = [p for _, p in two.gens()]
    targets = {"w1": one.port, "w2": two.port, "w1_again": one.port}
    for port in (one.port, two.port):  # warm-up, not recorded
        wrk(port, 1)
    ticks0 = {p: _cpu_ticks(p) for p in two_pids}
    app_pids = {"w1": [p for _, p in one.gens()], "w2": two_pids}
    app_pids["w1_again"] = app_pids["w1"]
    hz = os.sysconf("SC_CLK_TCK")
    # CPU cores busy during the runs: the app's workers and wrk (2 CPUs in all here).
    cores: dict[str, dict[str, list[float]]] = {
        k: {"app": [], "wrk": [], "machine": [], "irq": []} for k in ("w1", "w2")
    }
    rps: dict[str, list[float]] = {k: [] for k in targets}
    ratios: dict[str, list[float]] = {"w2": [], "w1_again": []}
    order = list(targets)
    n = len(order)
    for rep in range(opt.greps):
        this = {}
        for k in order[rep % n :] + order[: rep % n]:
            t0 = sum(_cpu_ticks(p) for p in app_pids[k])
            m0 = _cpu_total()
            res = wrk(targets[k], opt.tput)
            m1 = _cpu_total()
            app_s = (sum(_cpu_ticks(p) for p in app_pids[k]) - t0) / hz
            if res["failed"]:
                raise BenchError(f"(g) {k}: {res['failed']} failed requests, no restart")
            wall = res["duration_us"] / 1e6
            if k in cores:
                cores[k]["app"].append(app_s / wall)
                cores[k]["wrk"].append(res["wrk_cpu_s"] / wall)
                ncpu = len(os.sched_getaffinity(0))
                ticks = max(1, m1[2] - m0[2])
                cores[k]["machine"].append(ncpu * (m1[0] - m0[0]) / ticks)
                cores[k]["irq"].append(ncpu * (m1[1] - m0[1]) / ticks)
            this[k] = res["rps"]
            rps[k].append(res["rps"])
        for k, series in ratios.items():
            series.append(this[k] / this["w1"])
        log(
            f"  (g) {variant} round {rep + 1}: --workers 1 {this['w1']:.0f}, "
            f"--workers 2 {this['w2']:.0f}, "
            f"--workers 1 again {this['w1_again']:.0f} req/s"
        )
    if sorted(p for _, p in two.gens()) != sorted(two_pids):
        raise BenchError(
            f"(g) the --workers 2 starter replaced a worker during the runs:\n{two.log_tail()}"
        )
    cpu = [(_cpu_ticks(p) - ticks0[p]) / hz for p in two_pids]
    log(f"  (g) {variant}: CPU seconds of the two workers: {[round(c, 1) for c in cpu]}")
    for k, c in cores.items():
        log(
            f"  (g) {variant} {k}: cores busy, app {median(c['app']):.2f}, "
            f"wrk {median(c['wrk']):.2f}, "
            f"irq+softirq {median(c['irq']):.2f}, whole machine {median(c['machine']):.2f} "
            "(medians over the runs)"
        )
    one.stop()
    two.stop()
    return {"rps": rps, "ratios": ratios, "worker_cpu_s": cpu, "cores": cores, "keep_alive": ka}


MEM_LIMIT_MB = 64  # --max-memory of section (h)
MEM_GROW_MB_PER_S = 32  # the app's leak: from ~11 MB it crosses 64 MiB ~1.7 s after its start
MEM_CHECK_INTERVAL = 0.5
LOG_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z start_server\[\d+\] "
    r"(?:gen=(\d+) )?(?:pid=(\d+) )?(.*)$"
)


def _log_events(path: Path) -> list[tuple[float, Optional[int], str]]:
    """(unix time, pid or None, message) of each line of our starter's log."""
    out = []
    for line in path.read_text(errors="replace").splitlines():
        m = LOG_LINE.match(line)
        if m is None:
            continue
        t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
        ts = t.replace(tzinfo=datetime.timezone.utc).timestamp()
        out.append((ts, int(m.group(3)) if m.group(3) else None, m.group(4)))
    return out


def memory_replacements(log_path: Path, mem_log: Path, limit: int) -> list[dict[str, Any]]:
    """Each --max-memory verdict in the log, timed from the app's crossing of the limit.

    cross: the growth step after which the worker's own PSS first exceeded the
    limit (the app's BENCH_MEM_LOG); detect: the starter's "uses ... >
    --max-memory" line; ready: the replacement's "is now running" line (same
    slot); gone: the starter's line that the over-limit worker died. Times are
    seconds after the crossing; None where the log ends first.
    """
    crossed: dict[int, float] = {}
    for line in mem_log.read_text().splitlines():
        parts = line.split()
        if len(parts) != 5:
            continue
        app_pid, app_t, pss = int(parts[2]), float(parts[3]), int(parts[4])
        if pss > limit and app_pid not in crossed:
            crossed[app_pid] = app_t
    events = _log_events(log_path)
    running = re.compile(r"(?:new )?worker (\d+) (?:\(slot (\d+)\) )?is now running")
    out = []
    for i, (t, pid, msg) in enumerate(events):
        if pid is None or "> --max-memory" not in msg:
            continue
        m = re.search(r"\(slot (\d+)\)", msg)
        slot = m.group(1) if m else None
        ready = gone = None
        for t2, pid2, msg2 in events[i + 1 :]:
            r = running.search(msg2)
            if ready is None and r and int(r.group(1)) != pid and r.group(2) == slot:
                ready = t2
            if gone is None and pid2 == pid and " died" in msg2:
                gone = t2
        c = crossed.get(pid)
        out.append(
            {
                "pid": pid,
                "slot": slot,
                "cross": c,
                "detect": None if c is None else t - c,
                "ready": None if c is None or ready is None else ready - c,
                "gone": None if c is None or gone is None else gone - c,
                "at": t,
            }
        )
    return out


def section_hi(opt: argparse.Namespace, root: Path) -> dict[str, Any]:
    """(h) memory-limit restarts under wrk load; (i) how long each took.

    The app leaks MEM_GROW_MB_PER_S once serving; ours runs it under
    --max-memory MEM_LIMIT_MB --memory-check-interval 0.5 --wait-ready (once
    with one worker: the generation is restarted; once with --workers 2: each
    worker is replaced alone), while wrk -c 50 runs for --mload seconds.
    Perl's starter has no memory limit, so there is no Perl figure.
    """
    limit = MEM_LIMIT_MB * 1048576
    out: dict[str, Any] = {"limit_mb": MEM_LIMIT_MB, "grow_mb_per_s": MEM_GROW_MB_PER_S}
    for key, workers in (("w1", 1), ("w2", 2)):
        opts = [
            "--wait-ready",
            "--max-memory",
            f"{MEM_LIMIT_MB}M",
            "--memory-check-interval",
            f"{MEM_CHECK_INTERVAL:g}",
        ]
        if workers > 1:
            opts += ["--workers", str(workers)]
        label = f"h-{key}"
        mem_log = root / f"{label}-mem.log"
        s = Starter(
            "ours",
            label,
            opts,
            0.0,
            root,
            workers=workers,
            extra_env={
                "BENCH_GROW_MB_PER_S": f"{MEM_GROW_MB_PER_S:g}",
                "BENCH_MEM_LOG": str(mem_log),
            },
        ).start()
        s.wait_settled(stable=0.0)  # it grows from now on: no time to lose
        spawned0 = len(s.spawns())
        t0 = time.time()
        res = wrk(s.port, opt.mload)
        t1 = time.time()
        spawned = len(s.spawns()) - spawned0
        s.stop()
        reps = memory_replacements(s.log_path, mem_log, limit)
        during = [r for r in reps if t0 <= r["at"] <= t1]
        done = [r for r in reps if r["gone"] is not None and r["ready"] is not None]
        out[key] = {
            "desc": "ours --workers 2" if workers > 1 else "ours",
            "opts": opts,
            "wrk": res,
            "verdicts_during_load": len(during),
            "spawned_during_load": spawned,
            "replacements": reps,
            "complete": done,
        }
        log(
            f"  (h) {key}: {res['requests']} req, failed {res['failed']} (connect "
            f"{res['connect']} read {res['read']} write {res['write']} timeout {res['timeout']} "
            f"status {res['status']}), p99 {res['p99_us'] / 1000:.1f} ms; "
            f"{len(during)} memory verdicts, {spawned} workers spawned during the load"
        )
        for r in done:
            log(
                f"  (i) {key} pid {r['pid']}: cross -> detect {r['detect']:.3f} s, "
                f"-> replacement ready {r['ready']:.3f} s, -> old gone {r['gone']:.3f} s"
            )
    return out


# ---- report ------------------------------------------------------------------


def machine() -> dict[str, str]:
    model, family, number, virtual = "?", "?", "?", False
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            key, value = key.strip(), value.strip()
            if key == "model name" and model == "?":
                model = value
            elif key == "cpu family" and family == "?":
                family = value
            elif key == "model" and number == "?":
                number = value
            elif key == "flags":
                virtual = virtual or "hypervisor" in value.split()
    mem = "?"
    with contextlib.suppress(OSError, IndexError, ValueError), open("/proc/meminfo") as fh:
        mem = f"{int(fh.readline().split()[1]) / 1048576:.0f} GiB"

    def out(cmd: list[str]) -> str:
        try:
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except (OSError, subprocess.SubprocessError, IndexError):
            return "?"

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(len(os.sched_getaffinity(0))),
        "cpu": f"{model}, family {family} model {number}"
        + (", virtual machine" if virtual else ""),
        "memory": mem,
        "kernel": platform.release(),
        "os": _os_name(),
        "python": platform.python_version() + f" ({PY})",
        "perl": out(["perl", "-e", "print substr($^V, 1)"]),
        "server_starter": out([PERL_STARTER, "--version"]),
        "ours": out([*OURS, "--version"]),
        "wrk": out(["wrk", "-v"]).split(" [")[0],
    }


def _os_name() -> str:
    with contextlib.suppress(OSError), open("/etc/os-release") as fh:
        for line in fh:
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    return "?"


def loadavg() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine."""
    try:
        with open("/proc/loadavg") as fh:
            return " ".join(fh.read().split()[:3])
    except OSError:
        return "?"


def fs(x: Optional[float]) -> str:
    return "n/a" if x is None else f"{x:.3f} s"


def fms(us: Optional[float]) -> str:
    return "n/a" if us is None else f"{us / 1000:.1f} ms"


def fmb(kb: Optional[float]) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.1f} MB"


def ratio(a: Optional[float], b: Optional[float]) -> str:
    if a is None or b is None:
        return "n/a"
    if b == 0:
        return "—" if a == 0 else "inf"
    return f"{a / b:.2f}"


def yesno(ok: Optional[bool]) -> str:
    return "" if ok is None else ("yes" if ok else "**NO**")


def _serial_rows(b: dict[str, Any], app: float) -> list[list[str]]:
    """(b)'s five SIGKILLs 1.5 s apart: the slowest kill -> first OK of each series."""
    serial = b.get("serial")
    if not serial:
        return []
    p = max(serial["perl"]["times"])
    rows = []
    for key in ("ours_ready", "ours_i1"):
        o = max(serial[key]["times"])
        target = key == "ours_ready"
        rows.append(
            [
                f"(b) {SERIAL_KILLS} SIGKILLs of the serving worker {SERIAL_PERIOD:g} s apart: "
                f"slowest kill -> first OK, {serial[key]['desc']} vs perl",
                fs(o),
                fs(p),
                ratio(o, p),
                f"each < app start + 10 ms = {app + 0.01:.3f} s" if target else "info",
                yesno(o < app + 0.01) if target else "",
            ]
        )
    return rows


def build_rows(R: dict[str, Any]) -> list[list[str]]:
    rows: list[list[str]] = []
    a = R.get("a")
    if a:
        perl = median(a["perl"]["client"])
        for key, target in (("ours_ready", 0.3), ("ours_i1", None), ("ours_i1_notify", None)):
            ours = median(a[key]["client"])
            rows.append(
                [
                    f"(a) `--restart` wall, {a[key]['desc']} vs perl",
                    fs(ours),
                    fs(perl),
                    ratio(ours, perl),
                    "ours < 0.3 s" if target else "info",
                    yesno(ours < target) if target else "",
                ]
            )
        perl_srv = median(a["perl"]["server"])
        for key in ("ours_ready", "ours_i1"):
            ours = median(a[key]["server"])
            rows.append(
                [
                    f"(a) of which: HUP -> only the new gen listed (no client), {a[key]['desc']}",
                    fs(ours),
                    fs(perl_srv),
                    ratio(ours, perl_srv),
                    "info",
                    "",
                ]
            )
        ph = a["ours_ready"].get("phases")
        if ph:
            rows.append(
                [
                    "(a) of which, from our starter's log (ms timestamps), ours --wait-ready: "
                    "exec -> HUP / HUP -> old gen gone / -> client exited (medians)",
                    " / ".join(f"{median([x[k] for x in ph]):.3f}" for k in range(3)) + " s",
                    "",
                    "",
                    "info",
                    "",
                ]
            )
        co, cp = median(a["client_start_ours"]), median(a["client_start_perl"])
        rows.append(
            [
                "(a) of which: the client alone (same command, missing pid file)",
                fs(co),
                fs(cp),
                ratio(co, cp),
                "info",
                "",
            ]
        )
        app = median(a["app_start"])
        rows.append(
            [
                "(a) of which: the app alone (no starter: exec -> first answer)",
                fs(app),
                fs(app),
                "",
                "info",
                "",
            ]
        )
    b = R.get("b")
    if b:
        app = median(b["app_start"])
        o, p = median(b["ours_i1"]["first"]), median(b["perl"]["first"])
        rows.append(
            [
                "(b) SIGKILL of the worker -> first OK request",
                fs(o),
                fs(p),
                ratio(o, p),
                f"ours < 0.2 s + app start = {0.2 + app:.3f} s",
                yesno(o < 0.2 + app),
            ]
        )
        rows.append(
            [
                "(b) the app's own start (no starter: bind, exec, first OK)",
                fs(app),
                fs(app),
                "",
                "info",
                "",
            ]
        )
        o2 = b["ours_i1"]["second"][0] if b["ours_i1"]["second"] else None
        p2 = b["perl"]["second"][0] if b["perl"]["second"] else None
        rows.append(
            [
                "(b) 2nd SIGKILL on the same starter, once the respawned worker counts as "
                "started (ours: crash backoff, see the reading)",
                fs(o2),
                fs(p2),
                ratio(o2, p2),
                "info",
                "",
            ]
        )
        rows.extend(_serial_rows(b, app))
    c = R.get("c")
    if c:
        for period in ("0.1", "1"):
            label = "100 ms" if period == "0.1" else "1 s"
            pr = c["perl"]["runs"][period]
            for key in ("ours_ready", "ours_i1"):
                orun = c[key]["runs"][period]
                rows.append(
                    [
                        f"(c) HUP every {label}: failed requests, {c[key]['desc']} vs perl",
                        f"{orun['failed']} / {orun['requests']}",
                        f"{pr['failed']} / {pr['requests']}",
                        ratio(orun["failed"], pr["failed"]),
                        "ours 0",
                        yesno(orun["failed"] == 0),
                    ]
                )
            for key in ("ours_ready", "ours_i1"):
                orun = c[key]["runs"][period]
                rows.append(
                    [
                        f"(c) HUP every {label}: p99 latency, {c[key]['desc']} vs perl",
                        fms(orun["p99_us"]),
                        fms(pr["p99_us"]),
                        ratio(orun["p99_us"], pr["p99_us"]),
                        "info",
                        "",
                    ]
                )
    d = R.get("de")
    if d:
        for key, label in (
            ("", "no auto-restart"),
            ("_auto", "--enable-auto-restart, interval 3600"),
        ):
            o, p = d["ours" + key], d["perl" + key]
            rows.append(
                [
                    f"(d) idle wake-ups of the starter per second ({label})",
                    f"{o['per_s']:.2f} ({o['switches']} in {d['window']:.0f} s)",
                    f"{p['per_s']:.2f} ({p['switches']} in {d['window']:.0f} s)",
                    ratio(o["per_s"], p["per_s"]),
                    "ours 0",
                    yesno(o["switches"] == 0),
                ]
            )
        o = d["ours_ready"]
        rows.append(
            [
                "(d) idle wake-ups per second, ours --wait-ready",
                f"{o['per_s']:.2f} ({o['switches']} in {d['window']:.0f} s)",
                "",
                "",
                "ours 0",
                yesno(o["switches"] == 0),
            ]
        )
        o_kb, p_kb = d["ours"]["rss_kb"], d["perl"]["rss_kb"]
        rows.append(
            [
                "(e) starter RSS after start",
                fmb(o_kb),
                fmb(p_kb),
                ratio(o_kb, p_kb),
                "ours <= perl",
                yesno(o_kb <= p_kb),
            ]
        )
        rows.append(
            [
                "(e) a bare interpreter's RSS (`python -S -c` / `perl -e`, blocked on stdin)",
                fmb(d["bare_python_kb"]),
                fmb(d["bare_perl_kb"]),
                ratio(d["bare_python_kb"], d["bare_perl_kb"]),
                "info (floor)",
                "",
            ]
        )
        if "imports_kb" in d:
            rows.append(
                [
                    "(e) a bare `python -S -c` that imports our running starter's modules, "
                    "nothing run",
                    fmb(d["imports_kb"]),
                    "",
                    "",
                    "info",
                    "",
                ]
            )
    if c:
        o_kb = c["ours_ready"]["rss_after_kb"]
        o_kb0 = c["ours_ready"]["rss_start_kb"]
        p_kb = c["perl"]["rss_after_kb"]
        p_kb0 = c["perl"]["rss_start_kb"]
        rows.append(
            [
                "(e) starter RSS before -> after the (c) HUP runs (ours --wait-ready)",
                f"{fmb(o_kb0)} -> {fmb(o_kb)}",
                f"{fmb(p_kb0)} -> {fmb(p_kb)}",
                ratio(o_kb, p_kb),
                "info (leak check)",
                "",
            ]
        )
    f = R.get("f")
    if f:
        rd = median(f["rps"]["direct"])
        ro, rp = median(f["rps"]["ours"]), median(f["rps"]["perl"])
        qo, qp, qa = f["ratios"]["ours"], f["ratios"]["perl"], f["ratios"]["direct_again"]
        aa = median(qa)
        rows.append(
            [
                f"(f) app req/s under the starter, median (direct: {rd:.0f})",
                f"{ro:.0f}",
                f"{rp:.0f}",
                ratio(ro, rp),
                "info",
                "",
            ]
        )
        resolved = abs(aa - 1) <= 0.02
        rows.append(
            [
                "(f) req/s under the starter / direct, median of per-round ratios (min-max)",
                f"{median(qo):.3f} ({min(qo):.2f}-{max(qo):.2f})",
                f"{median(qp):.3f} ({min(qp):.2f}-{max(qp):.2f})",
                ratio(median(qo), median(qp)),
                "ours >= 0.98",
                yesno(median(qo) >= 0.98) + ("" if resolved else " (within noise, see A/A)"),
            ]
        )
        rows.append(
            [
                "(f) A/A control: direct again / direct, same rounds (what this machine resolves)",
                f"{aa:.3f} ({min(qa):.2f}-{max(qa):.2f})",
                "",
                "",
                "info (ideal 1.000)",
                "",
            ]
        )
        env = f.get("app_env", {})
        if env:
            base = env.get("direct")

            def same(k: str) -> str:
                e = env.get(k)
                if e is None or base is None:
                    return "n/a"
                diff = [f"{n} {e[n]} vs {base[n]}" for n in base if e.get(n) != base[n]]
                return "same" if not diff else "differs: " + "; ".join(diff)

            rows.append(
                [
                    "(f) the app's socket and process vs direct "
                    "(listen backlog, RLIMIT_NOFILE, nice, CPUs, sched policy)",
                    same("ours"),
                    same("perl"),
                    "",
                    "same",
                    yesno(same("ours") == "same"),
                ]
            )
    g = R.get("g")
    if g:
        for variant in ("cpu", "plain"):
            v = g.get(variant)
            if not v:
                continue
            what = (
                f"app spending {g['cpu_ms']:g} ms CPU per request"
                if variant == "cpu"
                else "plain app (answers at once)"
            )
            r1, r2 = median(v["rps"]["w1"]), median(v["rps"]["w2"])
            q2, qa = v["ratios"]["w2"], v["ratios"]["w1_again"]
            rows.append(
                [
                    f"(g) req/s `--workers 2` / `--workers 1` of ours, {what}: median of "
                    "per-round ratios (min-max); median req/s 2 vs 1 (Perl's has no --workers)",
                    f"{median(q2):.3f} ({min(q2):.2f}-{max(q2):.2f}); {r2:.0f} vs {r1:.0f}",
                    "n/a (no --workers)",
                    "",
                    f"info (at most {len(os.sched_getaffinity(0))}: CPUs shared with wrk)",
                    "",
                ]
            )
            c = v["cores"]

            def busy(k: str, c: dict[str, dict[str, list[float]]] = c) -> str:
                return (
                    f"{median(c[k]['app']):.2f} + {median(c[k]['wrk']):.2f} + "
                    f"{median(c[k]['irq']):.2f} of {median(c[k]['machine']):.2f}"
                )

            cpu = v["worker_cpu_s"]
            rows.append(
                [
                    f"(g) {what}: A/A (`--workers 1` again / `--workers 1`); CPU s of each of "
                    "the 2 workers; cores busy app + wrk + irq/softirq of the machine",
                    f"A/A {median(qa):.3f} ({min(qa):.2f}-{max(qa):.2f}); "
                    + " / ".join(f"{x:.1f} s" for x in cpu)
                    + f"; 2 workers {busy('w2')}, 1 worker {busy('w1')}",
                    "",
                    "",
                    "info",
                    "",
                ]
            )
    h = R.get("hi")
    if h:
        for key in ("w1", "w2"):
            run = h.get(key)
            if not run:
                continue
            res = run["wrk"]
            rows.append(
                [
                    f"(h) `--max-memory {h['limit_mb']}M --memory-check-interval "
                    f"{MEM_CHECK_INTERVAL:g} --wait-ready`"
                    + (" `--workers 2`" if key == "w2" else "")
                    + f", app leaks {h['grow_mb_per_s']} MiB/s, wrk -c {WRK_CONNS}: "
                    "failed requests (memory restarts during the load)",
                    f"{res['failed']} / {res['requests']} ({run['verdicts_during_load']} "
                    f"restarts, {run['spawned_during_load']} spawned)",
                    "n/a (no --max-memory)",
                    "",
                    "ours 0, restarts > 0",
                    yesno(res["failed"] == 0 and run["verdicts_during_load"] > 0),
                ]
            )
        for key in ("w1", "w2"):
            run = h.get(key)
            if not run:
                continue
            done = run["complete"]
            if not done:
                rows.append([f"(i) {run['desc']}: no complete replacement", "n/a", "", "", "", ""])
                continue
            det = median([r["detect"] for r in done])
            rdy = median([r["ready"] for r in done])
            gone = median([r["gone"] for r in done])
            worst = max(r["gone"] for r in done)
            rows.append(
                [
                    f"(i) over the limit -> detected / replacement ready / old one gone, "
                    f"{run['desc']}, median of {len(done)} (worst gone)",
                    f"{det:.2f} / {rdy:.2f} / {gone:.2f} s ({worst:.2f} s)",
                    "n/a (no --max-memory)",
                    "",
                    f"info (two checks {MEM_CHECK_INTERVAL:g} s apart: detect in "
                    f"{MEM_CHECK_INTERVAL:g}-{2 * MEM_CHECK_INTERVAL:g} s)",
                    "",
                ]
            )
    return rows


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def reading(R: dict[str, Any]) -> list[str]:
    """A short reading of each figure, written from the figures themselves."""
    out: list[str] = []
    a = R.get("a")
    if a:
        w = median(a["ours_ready"]["client"])
        p = median(a["perl"]["client"])
        srv = median(a["ours_ready"]["server"])
        app = median(a["app_start"])
        co, cp = median(a["client_start_ours"]), median(a["client_start_perl"])
        i1 = median(a["ours_i1"]["client"])
        i1s = median(a["ours_i1"]["server"])
        psrv = median(a["perl"]["server"])
        text = (
            f"**(a) `--restart`.** With `--wait-ready` ours takes {w:.3f} s against Perl's "
            f"{p:.3f} s (target < 0.3 s: {_met(w < 0.3)})."
        )
        ph = a["ours_ready"].get("phases")
        if ph:
            x, y, z = (median([t[k] for t in ph]) for k in range(3))
            text += (
                f" Cut in three by our starter's log: {x:.3f} s from the client's exec until "
                f"the starter got HUP (the client's interpreter, imports, reading the files), "
                f"{y:.3f} s from HUP until the last old worker died, and {z:.3f} s from then "
                f"until the client had exited (noticing the status file, interpreter teardown)."
            )
        text += (
            f" The takeover seen from outside (HUP until the status file lists only the new "
            f"generation, no client) takes {srv:.3f} s, and most of it is the app's own start "
            f"({app:.3f} s from exec to its first answer: it is ready 100 ms after its "
            f"process started, its interpreter's start-up included)"
            + (
                f", so the starter itself adds about {(srv - app) * 1000:.0f} ms"
                if srv >= app
                else " measured alone a little later, when the machine was slower: the "
                "split is not reliable in this run"
            )
            + f"; the rest of the figure is the client's own start (alone: {co:.3f} s, "
            f"Perl's {cp:.3f} s)."
        )
        if w >= 0.3:
            text += (
                f" The target is missed by {(w - 0.3) * 1000:.0f} ms: the client's start-up "
                "and the app's 100 ms leave little room, and on a busy machine each start-up "
                "is slower (see the load average above)."
            )
        text += (
            " The client reads a plain `--restart --pid-file F --status-file F` line without "
            "click and loads neither the supervisor's core nor dataclasses nor typing, "
            "so its own start is mostly the interpreter's."
        )
        text += (
            f" Perl's figure is its rule, not its speed: a generation counts as started after "
            f"`--interval` (1 s; takeover {psrv:.3f} s), and its client re-reads the status "
            f"file once a second, hence about 2 s. Under the same rule (`--interval 1`, no "
            f"READY=1) ours takes over in {i1s:.3f} s, and its client returns after {i1:.3f} s "
            f"because it watches the status file instead of sleeping a second between looks."
        )
        out.append(text)
    b = R.get("b")
    if b:
        o, p = median(b["ours_i1"]["first"]), median(b["perl"]["first"])
        app = median(b["app_start"])
        target = 0.2 + app
        text = (
            f"**(b) SIGKILL of the worker.** The first request after the kill succeeds "
            f"{o:.3f} s later under ours and {p:.3f} s under Perl (target < 0.2 s + the app's "
            f"start = {target:.3f} s: {_met(o < target)}). The listening socket stays open in "
            f"the starter, so requests wait in its backlog instead of failing; the figure is "
            f"the respawn plus the app's own start ({app:.3f} s"
            + (
                f"), so the starter's share is about {(o - app) * 1000:.0f} ms."
                if o >= app
                else ", measured alone when the machine was slower: the split is not reliable "
                "in this run)."
            )
        )
        o2 = b["ours_i1"]["second"][0] if b["ours_i1"]["second"] else None
        p2 = b["perl"]["second"][0] if b["perl"]["second"] else None
        if o2 is not None and p2 is not None:
            if o2 > 1.0:
                text += (
                    f" A second kill on the same starter (once the respawned worker counted as "
                    f"started) is answered after {o2:.3f} s under ours against {p2:.3f} s under "
                    f"Perl: that worker is killed the moment it counts as started, within "
                    f"`--min-uptime` (1 s) of its start, so ours counts it as a crash in a row "
                    f"and waits `--interval` x 2^(n-1) before the n-th respawn (crash-loop "
                    f"protection), where Perl respawns at once every time. By design, not a "
                    f"slowness: a worker that crashes as soon as it starts is retried at 1, "
                    f"2, 4 ... s, not in a tight loop."
                )
            else:
                text += (
                    f" A second kill on the same starter: {o2:.3f} s under ours, {p2:.3f} s "
                    f"under Perl."
                )
        serial = b.get("serial")
        if serial:
            r, i1, pl = (serial[k]["times"] for k in ("ours_ready", "ours_i1", "perl"))

            def ms(xs: list[float]) -> str:
                return ", ".join(f"{x:.3f}" for x in xs)

            text += (
                f" **A crashing app:** {SERIAL_KILLS} SIGKILLs of the serving worker "
                f"{SERIAL_PERIOD:g} s apart, each once its replacement counted as started, are "
                f"answered after {ms(r)} s under ours `--wait-ready` and {ms(pl)} s under Perl "
                f"(target: each < the app's start + 10 ms = {app + 0.01:.3f} s: "
                f"{_met(max(r) < app + 0.01)}): a worker that ran `--min-uptime` (1 s) since its "
                f"start is respawned at once, as Perl does. Under `--interval 1` (no READY=1) the "
                f"replacement counts as started only 1 s after its spawn, so a kill 1.5 s after "
                f"the spawn comes 0.5 s after its start, within `--min-uptime`: the crash-loop "
                f"backoff applies from the second such kill in a row: {ms(i1)} s."
            )
        out.append(text)
    c = R.get("c")
    if c:
        parts = []
        for period, label in (("0.1", "100 ms"), ("1", "1 s")):
            orr, oi, pr = (c[k]["runs"][period] for k in ("ours_ready", "ours_i1", "perl"))
            parts.append(
                f"HUP every {label}: failed requests {orr['failed']} (`--wait-ready`) and "
                f"{oi['failed']} (`--interval 1`) for ours, {pr['failed']} for Perl (target 0: "
                f"{_met(orr['failed'] == 0 and oi['failed'] == 0)}); p99 "
                f"{fms(orr['p99_us'])} / {fms(oi['p99_us'])} vs {fms(pr['p99_us'])}; "
                f"req/s {orr['rps']:.0f} / {oi['rps']:.0f} vs {pr['rps']:.0f}; "
                f"{orr['hups']} HUPs gave {orr['spawned']} / {oi['spawned']} generations under "
                f"ours, {pr['spawned']} under Perl"
            )
        out.append(
            "**(c) Restarts under load.** "
            + "; ".join(parts)
            + ". Ours coalesces the HUPs that arrive while a generation is starting into one "
            "pending restart (the log says so), so a HUP every 100 ms starts only as many "
            "generations as can start; Perl starts one per HUP and holds each for its 1 s "
            "interval, so at 100 ms it runs many interpreters at once, which is what its "
            "latency and req/s in that row show. Failed = non-2xx + connect + read + write + "
            "timeout errors of wrk."
        )
    d = R.get("de")
    if d:
        o, oa, orr = d["ours"], d["ours_auto"], d["ours_ready"]
        p, pa = d["perl"], d["perl_auto"]
        ok = o["switches"] == 0 and oa["switches"] == 0
        out.append(
            f"**(d) Idle wake-ups.** Over {d['window']:.0f} s idle, ours was switched in "
            f"{o['switches']} times without auto-restart, {oa['switches']} times with "
            f"`--enable-auto-restart --auto-restart-interval 3600` and {orr['switches']} with "
            f"`--wait-ready` (target 0: {_met(ok)}); Perl {p['switches']} and "
            f"{pa['switches']} times. Ours blocks in its selector with no timeout, or with the "
            "next deadline (an hour away) as the timeout; Perl with auto-restart wakes on a "
            "1 s alarm to check the time."
        )
        ok_e = o["rss_kb"] <= p["rss_kb"]
        text = (
            f"**(e) RSS.** Ours {fmb(o['rss_kb'])}, Perl {fmb(p['rss_kb'])} (target ours <= "
            f"Perl: {_met(ok_e)})."
        )
        text += (
            " Once its options are read (click, and PyYAML with --config), ours re-executes "
            "itself under `python -S` with the same pid and arguments, so the process that "
            "stays holds neither the option parser nor the site machinery; its run-time "
            "modules avoid typing, shutil, random and the IDNA codec. The floor is the "
            f"interpreter: a bare `python -S -c` blocked on stdin holds "
            f"{fmb(d['bare_python_kb'])}, a bare `perl -e` {fmb(d['bare_perl_kb'])}"
        )
        if "imports_kb" in d:
            text += (
                f"; importing our running starter's modules (nothing run) brings Python to "
                f"{fmb(d['imports_kb'])}, so the modules and the libraries they load "
                f"account for {fmb(d['imports_kb'] - d['bare_python_kb'])} and the running "
                f"starter's own data for {fmb(max(0, o['rss_kb'] - d['imports_kb']))}"
            )
        text += (
            f". Perl's starter is {fmb(p['rss_kb'] - d['bare_perl_kb'])} over its floor. "
            "It does not grow with restarts (next row)."
        )
        if c:
            r0, r1 = c["ours_ready"]["rss_start_kb"], c["ours_ready"]["rss_after_kb"]
            n_gens = sum(r["spawned"] for r in c["ours_ready"]["runs"].values())
            text += (
                f" After the (c) runs ({n_gens} generations) ours went from {fmb(r0)} to {fmb(r1)}."
            )
        out.append(text)
    f = R.get("f")
    if f:
        qo, qp, qa = f["ratios"]["ours"], f["ratios"]["perl"], f["ratios"]["direct_again"]
        mo, mp, ma = median(qo), median(qp), median(qa)
        spread = max(abs(x - 1) for x in qa)
        text = (
            f"**(f) Throughput.** The app answers {mo:.3f} x its direct req/s under ours and "
            f"{mp:.3f} x under Perl (target >= 0.98: {_met(mo >= 0.98)}). The A/A control, "
            f"the direct app measured twice in the same rounds, gives {ma:.3f} "
            f"({min(qa):.2f}-{max(qa):.2f})"
        )
        if spread > 0.02:
            text += (
                f": on this machine two identical runs differ by up to {spread * 100:.0f} %, so "
                "a 2 % difference cannot be resolved and the ratios of ours and Perl's should "
                "be read against the A/A figure, not against 1.000."
            )
        else:
            text += ", so the run resolves differences of about 2 %."
        text += (
            " A starter is not on the request path (the app accepts on the inherited socket "
            "itself); the last (f) row checks that the app runs under the same socket and "
            "process conditions as when bound directly."
        )
        out.append(text)
    g = R.get("g")
    if g:
        n = len(os.sched_getaffinity(0))
        text = (
            "**(g) `--workers 2`.** Perl's starter has no `--workers`, so this compares ours "
            "with 2 workers to ours with 1, the same single-process app, wrk on the same "
            f"{n} CPUs."
        )
        for variant in ("cpu", "plain"):
            v = g.get(variant)
            if not v:
                continue
            q2, qa = v["ratios"]["w2"], v["ratios"]["w1_again"]
            c = v["cores"]
            a1, k1 = median(c["w1"]["app"]), median(c["w1"]["wrk"])
            a2, k2 = median(c["w2"]["app"]), median(c["w2"]["wrk"])
            i1, i2 = median(c["w1"]["irq"]), median(c["w2"]["irq"])
            m1, m2 = median(c["w1"]["machine"]), median(c["w2"]["machine"])
            other = max(m1 - a1 - k1 - i1, m2 - a2 - k2 - i2)
            cpu = v["worker_cpu_s"]
            both = min(cpu) > 0.2 * max(cpu)
            if variant == "cpu":
                text += (
                    f" With the app spending {g['cpu_ms']:g} ms of CPU on each request "
                    f"(CPU-bound, what `--workers` is for), 2 workers serve {median(q2):.2f} x "
                    f"the req/s of 1 ({min(q2):.2f}-{max(q2):.2f}, A/A {median(qa):.2f}): the "
                    f"app kept {a1:.2f} cores busy with 1 worker and {a2:.2f} with 2."
                )
            else:
                text += (
                    f" With the plain app, which answers at once, the ratio is {median(q2):.2f} "
                    f"({min(q2):.2f}-{max(q2):.2f}, A/A {median(qa):.2f}): there the app is not "
                    f"the bottleneck; with 1 worker it kept {a1:.2f} cores busy, wrk {k1:.2f} "
                    f"and the kernel's loopback work (irq/softirq) {i1:.2f}, of {m1:.2f} cores "
                    f"busy on the machine, so a second worker has no CPU to run on."
                )
            text += f" The two workers used {cpu[0]:.1f} s and {cpu[1]:.1f} s of CPU" + (
                ", so both served." if both else ": one did most of the work."
            )
            if other > 0.3:
                text += (
                    f" Up to {other:.2f} cores went to processes other than the app and wrk "
                    "(other work on the machine), which lowers and blurs this figure."
                )
        out.append(text)
    h = R.get("hi")
    if h:
        parts = []
        for key in ("w1", "w2"):
            run = h.get(key)
            if not run:
                continue
            res = run["wrk"]
            parts.append(
                f"{run['desc']}: {res['failed']} failed of {res['requests']} requests, "
                f"{run['verdicts_during_load']} memory restarts during the load "
                f"({run['spawned_during_load']} workers spawned), p99 {fms(res['p99_us'])}"
            )
        ok = all(
            h[k]["wrk"]["failed"] == 0 and h[k]["verdicts_during_load"] > 0
            for k in ("w1", "w2")
            if k in h
        )
        out.append(
            f"**(h) Memory-limit restarts under load.** The app leaks {h['grow_mb_per_s']} "
            f"MiB/s once serving; ours runs it with `--max-memory {h['limit_mb']}M "
            f"--memory-check-interval {MEM_CHECK_INTERVAL:g} --wait-ready` while wrk -c "
            f"{WRK_CONNS} runs: "
            + "; ".join(parts)
            + f" (target zero failures, with restarts: {_met(ok)}). A memory restart is an "
            "ordinary graceful restart (one worker at a time with `--workers`), so no request "
            "is lost. Perl's starter has no memory limit."
        )
        parts = []
        for key in ("w1", "w2"):
            run = h.get(key)
            if not run or not run["complete"]:
                continue
            done = run["complete"]
            parts.append(
                f"{run['desc']} ({len(done)} replacements): detected after "
                f"{median([r['detect'] for r in done]):.2f} s, replacement ready after "
                f"{median([r['ready'] for r in done]):.2f} s, old worker gone after "
                f"{median([r['gone'] for r in done]):.2f} s (worst "
                f"{max(r['gone'] for r in done):.2f} s)"
            )
        if parts:
            out.append(
                "**(i) Time to replace a worker over the limit**, from the growth step that "
                "took its PSS over the limit (the app logs its own PSS after each step) to "
                "the starter's log lines (UTC, ms): "
                + "; ".join(parts)
                + f". The rule needs two checks in a row over the limit, checks run every "
                f"{MEM_CHECK_INTERVAL:g} s, so detection lands {MEM_CHECK_INTERVAL:g}-"
                f"{2 * MEM_CHECK_INTERVAL:g} s after the crossing by construction; then the "
                "replacement starts (`--wait-ready`: the app's own start) and the old worker "
                "drains and exits. With `--workers 2` both workers cross at about the same time "
                "and are replaced one after the other, so the second waits for the first "
                "replacement to be ready."
            )
    return out


HEADER = ["measure", "ours", "perl", "ours/perl", "target", "met"]


def text_table(rows: list[list[str]]) -> str:
    all_rows = [HEADER, *rows]
    widths = [max(len(r[i].replace("`", "")) for r in all_rows) for i in range(len(HEADER))]
    lines = []
    for n, r in enumerate(all_rows):
        cells = [c.replace("`", "").replace("**", "").ljust(w) for c, w in zip(r, widths)]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def md_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def c_details(R: dict[str, Any], markdown: bool) -> str:
    c = R.get("c")
    if not c:
        return ""
    head = [
        "config",
        "HUP every",
        "HUPs",
        "gens spawned",
        "requests",
        "req/s",
        "non-2xx",
        "connect",
        "read",
        "write",
        "timeout",
        "p50",
        "p99",
        "max",
    ]
    rows = []
    for key in ("ours_ready", "ours_i1", "perl"):
        for period, res in c[key]["runs"].items():
            rows.append(
                [
                    c[key]["desc"],
                    f"{float(period):g} s",
                    str(res["hups"]),
                    str(res["spawned"]),
                    str(res["requests"]),
                    f"{res['rps']:.0f}",
                    str(res["status"]),
                    str(res["connect"]),
                    str(res["read"]),
                    str(res["write"]),
                    str(res["timeout"]),
                    fms(res["p50_us"]),
                    fms(res["p99_us"]),
                    fms(res["max_us"]),
                ]
            )
    if markdown:
        return "\n".join(
            ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(r) + " |" for r in rows]
        )
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in [head, *rows]
    )


def samples_note(R: dict[str, Any], opt: argparse.Namespace) -> str:
    parts = []
    if "a" in R or "b" in R:
        parts.append(f"(a), (b): median of {opt.samples} samples")
    if "c" in R:
        parts.append(
            f"(c): one wrk run of {opt.load:g} s per row "
            f"(-c {WRK_CONNS} -t {WRK_THREADS}, --timeout {WRK_TIMEOUT}s)"
        )
    if "de" in R:
        parts.append(f"(d): {opt.idle:g} s idle window")
    mode = "keep-alive" if opt.keep_alive else "one request per connection"
    if "f" in R:
        parts.append(f"(f): {opt.reps} rounds of wrk runs of {opt.tput:g} s each, {mode}")
    if "g" in R:
        parts.append(f"(g): {opt.greps} rounds of wrk runs of {opt.tput:g} s each per app, {mode}")
    if "hi" in R:
        parts.append(f"(h), (i): one wrk run of {opt.mload:g} s per configuration")
    return "; ".join(parts)


def markdown_report(
    R: dict[str, Any],
    opt: argparse.Namespace,
    *,
    info: dict[str, str],
    rows: list[list[str]],
    note: str,
    elapsed: float,
) -> str:
    """The whole results file: machine, command, table, details, reading."""
    parts = [
        "# Benchmark results: our start_server vs Perl's Server::Starter",
        "",
        "Written by `bench/run.py` (do not edit by hand: run the command below again). How "
        "each figure is measured: [README.md](README.md).",
        "",
        f"- date: {info['date']}",
        f"- command: `{info['command']}`",
        f"- machine: {info['nproc']} CPUs ({info['cpu']}), {info['memory']} RAM, "
        f"{info['os']}, Linux {info['kernel']}",
        f"- Python {info['python']}; Perl {info['perl']}, Server::Starter "
        f"{info['server_starter']} (`{PERL_STARTER}`); ours {info['ours']}; {info['wrk']}",
        f"- load average (1, 5, 15 min) at the start: {info['load_start']}, at the end: "
        f"{info['load_end']}",
        f"- {note}; the whole run took {elapsed:.0f} s",
    ]
    if opt.note:
        parts += ["", f"> **Note:** {opt.note}"]
    parts += ["", "## Figures", "", md_table(rows)]
    details = c_details(R, markdown=True)
    if details:
        parts += ["", "(c) in detail:", "", details]
    if LEFTOVERS:
        parts += ["", "Leftover processes:", ""] + [f"- {ln}" for ln in LEFTOVERS]
    if ERRORS:
        parts += ["", "Errors:", ""] + [f"- {ln}" for ln in ERRORS]
    text = reading(R)
    if text:
        parts += ["", "## Reading", ""]
        for para in text:
            parts += [para, ""]
    return "\n".join(parts).rstrip() + "\n"


# ---- main ----------------------------------------------------------------------


WARM_UP = """
import importlib, pkgutil, start_server
for m in pkgutil.iter_modules(start_server.__path__):
    if not m.name.startswith("_"):
        importlib.import_module("start_server." + m.name)
import click, daemon, json, selectors, secrets, struct, ctypes.util, argparse, http.server
"""


def preflight(root: Path) -> None:
    if not os.path.exists(PERL_STARTER):
        raise BenchError(f"{PERL_STARTER} missing: apt-get install -y libserver-starter-perl")
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed")
    r = subprocess.run(
        [PY, "-c", "from start_server import notify_ready, __version__; print(__version__)"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if r.returncode != 0:
        raise BenchError(
            f"{PY} cannot import start_server (activate the venv where it is installed): {r.stderr}"
        )
    if SETTINGS["pycache"] is not None:
        # Fill the bytecode cache, so no timed run pays for compiling.
        missing = str(root / "no-such-dir" / "x.pid")
        for cmd in (
            [PY, "-c", WARM_UP],
            [*OURS, "--restart", "--pid-file", missing, "--status-file", missing],
            [*OURS, "--version"],
        ):
            subprocess.run(cmd, capture_output=True, timeout=60, env=base_env(), check=False)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="fewer samples, shorter loads")
    ap.add_argument(
        "--only",
        default="a,b,c,d,e,f,g,h,i",
        help="sections to run, e.g. a,c (d and e run together, so do h and i)",
    )
    ap.add_argument(
        "--samples", type=int, help="samples per timing in (a), (b) (default 5, quick 3)"
    )
    ap.add_argument("--load", type=int, help="seconds of each wrk run in (c) (default 5, quick 3)")
    ap.add_argument(
        "--idle", type=float, help="idle window of (d) in seconds (default 10, quick 5)"
    )
    ap.add_argument("--tput", type=int, help="seconds of each wrk run in (f) (default 1)")
    ap.add_argument("--reps", type=int, help="rounds of (f) (default 12, quick 4)")
    ap.add_argument("--greps", type=int, help="rounds of each app in (g) (default 8, quick 3)")
    ap.add_argument(
        "--mload", type=int, help="seconds of each wrk run in (h) (default 12, quick 6)"
    )
    ap.add_argument(
        "--keep-alive",
        action="store_true",
        help="(f) with HTTP/1.1 keep-alive instead of one request per connection",
    )
    ap.add_argument(
        "--pin",
        action="store_true",
        help="(f) with the app (and starter) on the last CPU and wrk on the others",
    )
    ap.add_argument(
        "--markdown",
        metavar="FILE",
        help="also write the whole results file (machine, command, tables, reading) as markdown",
    )
    ap.add_argument(
        "--note", default="", help="a sentence for the markdown file (e.g. the machine was busy)"
    )
    ap.add_argument("--json", metavar="FILE", help="also write every raw figure as JSON")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (logs)")
    ap.add_argument(
        "--no-pyc-cache",
        action="store_true",
        help="run Python with the caller's bytecode settings (by default a .pyc cache in the "
        "temporary directory is used, so PYTHONDONTWRITEBYTECODE=1 cannot make every start "
        "of ours recompile its sources)",
    )
    opt = ap.parse_args(argv)
    q = opt.quick
    opt.samples = opt.samples or (3 if q else 5)
    opt.load = opt.load or (3 if q else 5)
    opt.idle = opt.idle or (5.0 if q else 10.0)
    opt.tput = opt.tput or 1
    opt.reps = opt.reps or (4 if q else 12)
    opt.mload = opt.mload or (6 if q else 12)
    opt.greps = opt.greps or (3 if q else 8)
    only = {s.strip() for s in opt.only.split(",") if s.strip()}

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    root = Path(tempfile.mkdtemp(prefix="start_server-bench-"))
    if not opt.no_pyc_cache:
        SETTINGS["pycache"] = str(root / "pycache")
    R: dict[str, Any] = {}
    t_start = time.monotonic()
    try:
        preflight(root)
        info = machine()
        info["command"] = " ".join(
            ["python", sys.argv[0]]
            + [shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)]
        )
        info["load_start"] = loadavg()
        log(f"ours: {' '.join(OURS)} {info['ours']}; perl: {PERL_STARTER} {info['server_starter']}")
        log(f"workspace {root}")
        sections = [
            ("a", section_a),
            ("b", section_b),
            ("c", section_c),
            ("de", section_de),
            ("f", section_f),
            ("g", section_g),
            ("hi", section_hi),
        ]
        for name, fn in sections:
            if not (set(name) & only):
                continue
            try:
                with section_scope(name):
                    R[name] = fn(opt, root)
            except (BenchError, subprocess.SubprocessError) as exc:
                ERRORS.append(f"section {name}: {exc}")
                log(f"section {name} FAILED: {exc}")
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        return 130
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    finally:
        stop_all()
        sweep("end")
        if opt.keep_tmp:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = time.monotonic() - t_start
    info["load_end"] = loadavg()
    rows = build_rows(R)
    note = samples_note(R, opt)
    print()
    print(
        f"start_server benchmark, {info['date']}: {info['nproc']} x {info['cpu']}, "
        f"Linux {info['kernel']}, Python {info['python']}, Perl {info['perl']}, "
        f"Server::Starter {info['server_starter']}, ours {info['ours']}, {info['wrk']}"
    )
    print(f"({note}; run took {elapsed:.0f} s)")
    print()
    print(text_table(rows))
    details = c_details(R, markdown=False)
    if details:
        print()
        print("(c) in detail:")
        print(details)
    if LEFTOVERS:
        print()
        print("LEFTOVER PROCESSES (killed by the benchmark):")
        for line in LEFTOVERS:
            print("  " + line)
    if ERRORS:
        print()
        print("ERRORS:")
        for line in ERRORS:
            print("  " + line)
    if opt.markdown:
        Path(opt.markdown).write_text(
            markdown_report(R, opt, info=info, rows=rows, note=note, elapsed=elapsed)
        )
    if opt.json:
        Path(opt.json).write_text(
            json.dumps(
                {"machine": info, "results": R, "leftovers": LEFTOVERS, "errors": ERRORS},
                indent=1,
            )
        )
    return 1 if ERRORS else 0


if __name__ == "__main__":
    sys.exit(main())
