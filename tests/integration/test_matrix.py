"""Every signal in every mode, with ``--workers 3 --wait-ready``.

One starter per mode (foreground, ``--daemonize``, PID 1 of a PID namespace,
systemd socket activation) takes the signals in sequence, each checked by
what a user sees:

- stray signals (ALRM, TSTP, RTMIN): one line each, nothing else changes;
- USR1 after the log was rotated: the new file gets the lines;
- HUP under client load: a new generation of 3 ready workers serves, the old
  workers are gone, not one request failed;
- TTIN, TTOU: a worker more, then one fewer;
- USR2: the upgrade keeps the starter's pid and every worker;
- the stop signal (TERM, INT or QUIT, a different one per mode): exit 0 where
  the exit code can be seen, and nothing left behind: no pid file, no status
  file, no socket file, no process.

The other (mode, stop signal) pairs stop a fresh starter of that mode at once.
"""

from __future__ import annotations

import errno
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Callable, Optional

import pytest
from support import (
    APP,
    APPS,
    PY,
    TOKEN_VAR,
    Harness,
    Proc,
    daemon_guard,
    free_port,
    gen_of,
    gone,
    http_get,
    log_time,
    read_status,
    wait_until,
)

# pid1-daemonize: --daemonize in a container's entry point: PID 1 stays in the foreground.
MODES = ("foreground", "daemonize", "pid1", "pid1-daemonize", "socket")
STOPS = ("TERM", "INT", "QUIT")
# The stop signal of each mode's long sequence; the other pairs get a short test.
SEQUENCE_STOP = {"foreground": "QUIT", "daemonize": "INT", "pid1": "QUIT",
                 "pid1-daemonize": "TERM", "socket": "TERM"}
STRAYS = ("ALRM", "TSTP", "RTMIN")
WORKERS = 3
ACTIVATE = shutil.which("systemd-socket-activate")
SIG_APP = str(APPS / "sig_app.py")


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True,
                       timeout=30, check=False)
    return r.returncode == 0


def _skip_unless_possible(mode: str) -> None:
    if mode.startswith("pid1") and not _unshare_works():
        pytest.skip("no PID namespace on this machine")
    if mode == "socket" and ACTIVATE is None:
        pytest.skip("systemd-socket-activate is not installed")


class Starter:
    """One starter in one mode, its log in a file, seen the same way in every mode."""

    def __init__(self, run: Harness, mode: str, tmpdir: Path) -> None:
        self.run, self.mode = run, mode
        self.port = free_port()
        tmp = run.tmp
        self.log, self.pid_file, self.status = tmp / "log", tmp / "pid", tmp / "status"
        self.sock_path = tmp / "s.sock"
        # Its private directory (notify and control sockets) is made in TMPDIR,
        # short enough for a socket's path.
        self.tmpdir = tmpdir
        env = {"TMPDIR": str(self.tmpdir)}
        self.pid = 0
        self.proc: Optional[Proc] = None
        self.offset = 0  # where in the log file lines after the last mark start
        args = [
            f"--port=127.0.0.1:{self.port}", f"--log-file={self.log}",
            f"--pid-file={self.pid_file}", f"--status-file={self.status}",
            f"--workers={WORKERS}", "--wait-ready", "--stop-timeout=10",
        ]
        if mode != "socket":  # socket activation passes the one socket it holds
            args.append(f"--path={self.sock_path}")
        args += ["--", PY, APP, "--notify"]
        starter = [PY, "-m", "start_server"]
        if mode == "foreground":
            self.proc = run.start(*args, env=env)
            self.pid = self.proc.pid
        elif mode == "daemonize":
            fg = run.run("--daemonize", *args, env=env, timeout=30)
            assert fg.returncode == 0, fg
            self.pid = wait_until(lambda: self.pid_file.read_text().endswith("\n")
                                  and int(self.pid_file.read_text()), what="the pid file")
        elif mode.startswith("pid1"):
            detach = ["--daemonize"] if mode == "pid1-daemonize" else []
            self.proc = self._own(["unshare", "--pid", "--fork", "--kill-child", *starter,
                                   *detach, *args])
            self.pid = wait_until(self._child_of_unshare, what="the starter under unshare")
        else:
            assert ACTIVATE is not None
            self.proc = self._own([ACTIVATE, "-E", f"{TOKEN_VAR}={run.token}",
                                   "-E", f"TMPDIR={self.tmpdir}",
                                   "-l", f"127.0.0.1:{self.port}", "--", *starter, *args])
            self.proc.wait_line(r"Listening on ", 15)
            self.pid = self.proc.pid  # exec keeps the pid
        self.workers = self.wait_generation(1)
        assert list(self.tmpdir.iterdir()), "no private directory where it was looked for"

    def _own(self, argv: list[str]) -> Proc:
        proc = Proc(argv, env=self.run.env({"TMPDIR": str(self.tmpdir)}), cwd=str(self.run.tmp))
        self.run.procs.append(proc)
        return proc

    def _child_of_unshare(self) -> int:
        assert self.proc is not None
        tasks = Path(f"/proc/{self.proc.pid}/task").glob("*/children")
        kids = " ".join(p.read_text() for p in tasks).split()
        return int(kids[0]) if kids else 0

    # -- the log --------------------------------------------------------------

    def text(self) -> str:
        try:
            return self.log.read_text()[self.offset:]
        except FileNotFoundError:
            return ""

    def mark(self) -> None:
        self.offset += len(self.text())

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 30) -> str:
        rx = re.compile(pattern, re.M)
        return wait_until(lambda: len(rx.findall(self.text())) >= count and self.text(),
                          timeout, f"{count} x {pattern!r} in the log")

    # -- what it serves -----------------------------------------------------------

    def get(self) -> str:
        # Socket activation: the first connection also makes the starter run.
        return http_get(self.port, timeout=30)

    def wait_generation(self, gen: int) -> list[int]:
        """Wait until generation ``gen``'s workers alone are listed and serve."""
        def alone() -> list[int]:
            rows = read_status(self.status)
            ok = len(rows) == WORKERS and {g for g, _ in rows} == {gen}
            return [p for _, p in rows] if ok else []

        if self.mode == "socket" and gen == 1:
            self.get()
        pids = wait_until(alone, 40, f"generation {gen}'s {WORKERS} workers alone")
        wait_until(lambda: gen_of(self.get()) == gen, 20, f"generation {gen} serving")
        if self.mode != "socket":  # bound (the app serves only the first socket)
            assert self.sock_path.is_socket()
        return pids

    # -- the end ------------------------------------------------------------------

    def wait_exit(self) -> Optional[int]:
        """The exit code where it can be seen (not a daemon's)."""
        if self.proc is not None:
            return self.proc.wait(40)
        wait_until(lambda: gone(self.pid), 40, "the daemon to exit")
        return None


@pytest.fixture
def make(run: Harness) -> Iterator[Callable[[str], Starter]]:
    """Start a starter in a mode; on teardown a daemon left running is stopped
    and the TMPDIR given to each is removed."""
    made: list[Starter] = []

    def start(mode: str) -> Starter:
        _skip_unless_possible(mode)
        made.append(Starter(run, mode, Path(tempfile.mkdtemp(prefix="matrix."))))
        return made[-1]

    try:
        with daemon_guard(run.tmp / "pid"):
            yield start
    finally:
        for s in made:
            shutil.rmtree(s.tmpdir, ignore_errors=True)


class Load:
    """Two clients asking in a loop until the block ends; every failure is kept."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.answered: dict[int, int] = {}
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(2)]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)

    def _client(self) -> None:
        while not self.stop.is_set():
            try:
                gen = gen_of(http_get(self.port, timeout=30))
                with self.lock:
                    self.answered[gen] = self.answered.get(gen, 0) + 1
            except (OSError, http.client.HTTPException, AssertionError) as exc:
                with self.lock:
                    self.failures.append(repr(exc))

    def count(self, gen: int) -> int:
        with self.lock:
            return self.answered.get(gen, 0)


def _stop_and_check(run: Harness, s: Starter, stop: str) -> None:
    s.mark()
    os.kill(s.pid, getattr(signal, "SIG" + stop))
    rc = s.wait_exit()
    wait_until(lambda: not run.leftovers(), 20, "every worker to exit")
    text = s.text()
    assert re.search(rf"received {stop}\b", text), text
    assert text.rstrip().endswith("exiting"), text
    assert rc in (0, None), text
    assert "Traceback" not in s.log.read_text()
    left = [p for p in (s.pid_file, s.status, Path(f"{s.status}.json"), s.sock_path)
            if p.exists()] + list(s.tmpdir.iterdir())
    assert not left, f"left behind after {stop} in {s.mode}: {left}"


def _strays(s: Starter) -> None:
    s.mark()
    for name in STRAYS:
        os.kill(s.pid, getattr(signal, "SIG" + name))
    s.wait_log(r"received \w+: not used by start_server, ignored", len(STRAYS))
    state = Path(f"/proc/{s.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    assert state != "T", "a stray signal stopped the starter"
    assert sorted(p for _, p in read_status(s.status)) == sorted(s.workers)


def _usr1(s: Starter) -> None:
    s.log.rename(s.log.with_name("log.1"))
    s.offset = 0
    os.kill(s.pid, signal.SIGUSR1)
    s.wait_log(r"received USR1: reopened log file")


def _hup_under_load(s: Starter, gen: int) -> None:
    with Load(s.port) as load:
        wait_until(lambda: load.count(gen - 1) > 0, 20, "answers before the HUP")
        s.mark()
        os.kill(s.pid, signal.SIGHUP)
        s.workers = s.wait_generation(gen)
        served = load.count(gen)
        wait_until(lambda: load.count(gen) > served, 20, "answers after the HUP")
    assert not load.failures, load.failures[:5]
    if not s.mode.startswith("pid1"):  # there the log's pids are the namespace's
        for pid in re.findall(r"gen=\d+ pid=\d+ old worker (\d+) died", s.text()):
            assert gone(int(pid))


def _scale(s: Starter) -> None:
    """TTIN, then TTOU: a worker more, then one fewer (no controlling terminal here)."""
    def listed(n: int) -> list[int]:
        rows = read_status(s.status)
        ok = len(rows) == n and {g for g, _ in rows} == {2}
        return sorted(p for _, p in rows) if ok else []

    s.mark()
    os.kill(s.pid, signal.SIGTTIN)
    more = wait_until(lambda: listed(WORKERS + 1), 30, "a fourth worker")
    assert set(s.workers) < set(more)
    os.kill(s.pid, signal.SIGTTOU)
    s.workers = wait_until(lambda: listed(WORKERS), 30, "three workers again")
    assert set(s.workers) < set(more)
    s.wait_log(rf"received TTOU: scaling from {WORKERS + 1} to {WORKERS} workers")


def _usr2(s: Starter) -> None:
    s.mark()
    seq = json.loads(Path(f"{s.status}.json").read_text())["upgrade"]["seq"]
    os.kill(s.pid, signal.SIGUSR2)
    wait_until(
        lambda: json.loads(Path(f"{s.status}.json").read_text())["upgrade"]["seq"] > seq,
        30, "the upgrade",
    )
    s.wait_log(r"upgraded start_server .* \(pid \d+\)")
    assert sorted(p for _, p in read_status(s.status)) == sorted(s.workers)
    assert not gone(s.pid)
    assert gen_of(s.get()) == 2


@pytest.mark.timeout(180)
@pytest.mark.parametrize("mode", MODES)
def test_every_signal_in_sequence(run: Harness, make: Callable[[str], Starter], mode: str) -> None:
    s = make(mode)
    _strays(s)
    _usr1(s)
    _hup_under_load(s, 2)
    _scale(s)
    _usr2(s)
    _stop_and_check(run, s, SEQUENCE_STOP[mode])


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("mode", "stop"),
    [(m, st) for m in MODES for st in STOPS if SEQUENCE_STOP[m] != st],
)
def test_stop_signal(run: Harness, make: Callable[[str], Starter], mode: str, stop: str) -> None:
    _stop_and_check(run, make(mode), stop)


# ---- options with --workers 3 --wait-ready ------------------------------------


def _answers(port: int, path: str, count: int) -> list[str]:
    return [http_get(port, path) for _ in range(count)]


@pytest.mark.timeout(120)
def test_options_with_workers_and_wait_ready(run: Harness) -> None:
    """--dir, --envdir, --listen-fds, --signal-on-hup, --kill-old-delay,
    --signal-on-term: each applies to every worker of a generation."""
    port = free_port()
    record, status = run.tmp / "signals", run.tmp / "status"
    app_dir = run.tmp / "app"
    app_dir.mkdir()
    envdir = run.envdir(MATRIX="one")
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--path={run.tmp / 's.sock'}", f"--dir={app_dir}",
        f"--envdir={envdir}", "--listen-fds", "--signal-on-hup=USR1", "--kill-old-delay=0.5",
        "--signal-on-term=INT", f"--status-file={status}", f"--workers={WORKERS}",
        "--wait-ready", "--", PY, SIG_APP, f"--record={record}", "--notify",
    )
    wait_until(lambda: len(read_status(status)) == WORKERS, 30, "3 workers")
    workers = {p for _, p in read_status(status)}
    assert set(_answers(port, "/cwd", 3)) == {f"{app_dir}\n"}
    assert set(_answers(port, "/env/MATRIX", 3)) == {"one\n"}
    assert set(_answers(port, "/env/LISTEN_FDS", 3)) == {"2\n"}
    for _ in range(6):  # each worker gets the systemd variables with its own pid
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/env/LISTEN_PID")
        listen_pid = int(conn.getresponse().read())
        conn.close()
        assert listen_pid in workers

    run.envdir(MATRIX="two")
    mark = s.mark()
    s.signal(signal.SIGHUP)
    wait_until(lambda: {g for g, _ in read_status(status)} == {2}
               and len(read_status(status)) == WORKERS, 30, "generation 2 alone")
    assert set(_answers(port, "/env/MATRIX", 3)) == {"two\n"}
    lines = s.lines[mark:]
    ran = max(log_time(line.split()[0]) for line in lines
              if re.search(r"new worker \d+ is now running", line))
    killed = next(log_time(line.split()[0]) for line in lines
                  if line.endswith("] killing old workers"))
    assert killed - ran >= 0.45, lines  # --kill-old-delay, after the last worker is ready
    wait_until(lambda: record.read_text().count("1 USR1") == WORKERS, 20, "3 x USR1")

    s.signal(signal.SIGTERM)
    assert s.wait(30) == 0, s.output
    assert record.read_text().count("2 INT") == WORKERS, record.read_text()
    assert "TERM" not in record.read_text()
    assert not status.exists() and not (run.tmp / "s.sock").exists()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", ["foreground", "daemonize"])
def test_clients_with_workers_and_wait_ready(
    run: Harness, make: Callable[[str], Starter], mode: str
) -> None:
    """--restart, --status, --upgrade, --stop against 3 workers that must be ready."""
    s = make(mode)
    files = [f"--pid-file={s.pid_file}", f"--status-file={s.status}"]
    r = run.run("--restart", *files, "--timeout=60", timeout=90)
    assert r.returncode == 0, r
    assert re.search(r"restarted: generation 2 \(pid \d+,\d+,\d+\)", r.stderr), r.stderr
    workers = s.wait_generation(2)  # the old workers may be on their way out still
    r = run.run("--status", "--json", *files)
    assert r.returncode == 0, r
    shown = json.loads(r.stdout)["generations"]
    assert sorted(g["pid"] for g in shown) == workers, shown
    r = run.run("--upgrade", *files, "--timeout=60", timeout=90)
    assert r.returncode == 0, r
    assert sorted(p for _, p in read_status(s.status)) == workers
    assert gen_of(s.get()) == 2
    r = run.run("--stop", f"--pid-file={s.pid_file}", "--timeout=60", timeout=90)
    assert r.returncode == 0, r
    assert s.wait_exit() in (0, None)
    wait_until(lambda: not run.leftovers(), 20, "every worker to exit")
    left = [p for p in (s.pid_file, s.status, Path(f"{s.status}.json"), s.sock_path)
            if p.exists()] + list(s.tmpdir.iterdir())
    assert not left, left


# ---- faults with --workers 3 ----------------------------------------------------


@pytest.mark.timeout(90)
def test_a_command_that_cannot_be_executed_is_one_line_for_all_workers(run: Harness) -> None:
    """Each worker's exec fails alike: one line says so, not one per worker (once
    the generation was told to go, its other workers' failures repeated it)."""
    port = free_port()
    script = run.tmp / "serve.sh"
    script.write_text(f"#!/bin/sh\nexec {PY} {APP} --notify\n")
    script.chmod(0o755)
    s = run.start(f"--port=127.0.0.1:{port}", f"--workers={WORKERS}", "--wait-ready",
                  "--backoff-max=60", "--", str(script))
    s.wait_line(r"sending TERM to old workers:none", 30)  # all 3 ready
    script.chmod(0o644)  # not executable: even root's exec fails (EACCES)
    mark = s.mark()
    s.signal(signal.SIGHUP)
    # The next attempt's failure comes after every report of generation 2's.
    s.wait_line(r"failed to start generation 3", 30, mark)
    s.signal(signal.SIGTERM)
    assert s.wait(30) == 0
    lines = s.lines[mark:]
    failed = [line for line in lines if "failed to start generation 2" in line]
    assert len(failed) == 1, "\n".join(lines)
    assert "Permission denied" in failed[0]


@pytest.mark.timeout(60)
def test_a_first_generation_that_cannot_be_executed_is_one_line_and_exit_1(
    run: Harness,
) -> None:
    """The --user may not run the command: "giving up" once, no line after it
    but "exiting" (the other workers' failures followed it)."""
    if os.geteuid() != 0:
        pytest.skip("needs root for --user")
    private = run.tmp / "private"
    private.mkdir(mode=0o700)
    script = private / "serve.sh"
    script.write_text("#!/bin/sh\nexec sleep 100\n")
    script.chmod(0o755)
    s = run.start(f"--port=127.0.0.1:{free_port()}", "--user=nobody",
                  f"--workers={WORKERS}", "--wait-ready", "--", str(script))
    assert s.wait(30) == 1
    lines = [line.split("] ", 1)[-1] for line in s.lines if "] " in line]
    i = lines.index("giving up: the first generation could not be started")
    assert [line for line in lines if "failed to start" in line] == [
        f"failed to start generation 1: cannot execute '{script}': Permission denied"
    ], s.output
    assert not [line for line in lines[i + 1:] if "failed" in line], s.output
    assert lines[-1] == "exiting", s.output


def _fill(path: Path) -> None:
    """Write to ``path`` until the filesystem is full."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC, exc
    finally:
        os.close(fd)


@pytest.mark.timeout(90)
def test_a_full_disk_under_the_pid_and_status_files(run: Harness) -> None:
    """The status file's filesystem fills up (a tmpfs of the starter's own mount
    namespace): each write that fails is a line, HUP and USR2 still work, and
    once there is room the status file is right again."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare for a tmpfs of its own")
    port = free_port()
    full = run.tmp / "full"
    full.mkdir()
    mount = 'mount -t tmpfs -o size=256k tmpfs "$0" && exec "$@"'
    s = Proc(["unshare", "--mount", "sh", "-c", mount, str(full), PY, "-m", "start_server",
              f"--port=127.0.0.1:{port}", f"--pid-file={full / 'pid'}",
              f"--status-file={full / 'status'}", f"--workers={WORKERS}", "--wait-ready",
              "--", PY, APP, "--notify"], env=run.env(), cwd=str(run.tmp))
    run.procs.append(s)
    s.wait_line(r"starting now", 30)  # exec'd: s.pid is the starter, in its namespace
    inside = Path(f"/proc/{s.pid}/root") / full.relative_to("/")
    status = inside / "status"

    def generation_alone(gen: int) -> bool:
        rows = read_status(status)
        return len(rows) == WORKERS and {g for g, _ in rows} == {gen}

    wait_until(lambda: generation_alone(1), 30, "generation 1's workers")
    _fill(inside / "fill")
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(r"cannot write status file .*: No space left on device", 30, mark)
    wait_until(lambda: gen_of(http_get(port)) == 2, 30, "generation 2 serving")
    wait_until(lambda: len(re.findall(r"gen=1 pid=\d+ old worker \d+ died",
                                      "\n".join(s.lines[mark:]))) == WORKERS,
               30, "generation 1's workers gone")
    mark = s.mark()
    s.signal(signal.SIGUSR2)
    s.wait_line(r"upgraded start_server .* \(pid \d+\)", 30, mark)
    (inside / "fill").unlink()
    mark = s.mark()
    s.signal(signal.SIGHUP)
    wait_until(lambda: generation_alone(3), 30, "generation 3 in the status file")
    assert gen_of(http_get(port)) == 3
    s.signal(signal.SIGTERM)
    assert s.wait(30) == 0, s.output
    assert "Traceback" not in s.output
