"""Test support: run real starters, wait on conditions with deadlines, clean up.

No fixed sleeps: every wait is a condition with a deadline. Each process a
test starts carries a token in its environment, so teardown can prove that
nothing of the test is left running (and kill what is, failing the test).
"""

from __future__ import annotations

import contextlib
import datetime
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Callable, Literal, Optional, TypeVar, Union

TESTS = Path(__file__).resolve().parent
APPS = TESTS / "apps"
APP = str(APPS / "app.py")
HELLO_APP = str(TESTS.parent / "examples" / "hello_app.py")
PY = sys.executable
PERL_START_SERVER = "/usr/bin/start_server"
TOKEN_VAR = "START_SERVER_TEST_TOKEN"

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], Union[T, Literal[False], None]],
    timeout: float = 10.0,
    what: str = "condition",
    step: float = 0.01,
) -> T:
    """Re-check ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: Optional[BaseException] = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except (OSError, ValueError) as exc:
            last_exc = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} ({last_exc!r})")
        time.sleep(step)


def log_time(stamp: str) -> float:
    """Seconds since the epoch of one of our log lines' UTC stamp (ms precision).

    A stamp is taken when its line is written, not when the starter decided:
    compare two with some slack."""
    when = datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    return when.replace(tzinfo=datetime.timezone.utc).timestamp()


def has_ipv6_loopback() -> bool:
    """This machine can bind ::1 (containers often cannot)."""
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def wakeups(pid: int) -> int:
    """Context switches of every thread of ``pid`` so far: each one is a wake-up."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as fh:
            for line in fh:
                if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                    total += int(line.split()[1])
    return total


def free_port(kind: int = socket.SOCK_STREAM, host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str = "/", host: str = "127.0.0.1", timeout: float = 5.0) -> str:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read().decode()
        if resp.status != 200:
            raise OSError(f"HTTP {resp.status}")
        return body
    finally:
        conn.close()


def http_get_unix(path: str, timeout: float = 5.0) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data.decode().split("\r\n\r\n", 1)[1]


def gen_of(body: str) -> int:
    m = re.search(r"gen=(\d+)", body)
    assert m, body
    return int(m.group(1))


def read_status(path: Path) -> list[tuple[int, int]]:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        g, _, p = line.partition(":")
        out.append((int(g), int(p)))
    return out


def processes_with_token(token: str) -> list[int]:
    """Pids of live processes (not zombies) whose environment carries ``token``."""
    needle = f"{TOKEN_VAR}={token}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                env = fh.read()
            with open(f"/proc/{entry}/stat", "rb") as fh:
                state = fh.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in env.split(b"\0") and state != b"Z":
            found.append(int(entry))
    return found


class Proc:
    """A process under test with its combined output captured line by line."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        env: dict[str, str],
        cwd: Optional[str] = None,
        stdin: Optional[int] = subprocess.DEVNULL,
    ) -> None:
        self.argv = list(argv)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            self.argv,
            env=env,
            cwd=cwd,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._cond:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self.lines.append("<EOF>")
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(line for line in self.lines if line != "<EOF>")

    def wait_line(self, pattern: str, timeout: float = 10.0, start: int = 0) -> re.Match[str]:
        """Wait for a line (from index ``start``) matching ``pattern``; return the match."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    if m:
                        return m
                    i += 1
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.lines and self.lines[-1] == "<EOF>"):
                    raise AssertionError(
                        f"no line matching {pattern!r} within {timeout} s; output:\n{self.output}"
                    )
                self._cond.wait(remaining)

    def mark(self) -> int:
        """An index to pass as ``start=`` to wait only for lines after now."""
        with self._cond:
            return len(self.lines)

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 15.0) -> int:
        rc = self.proc.wait(timeout)
        self._reader.join(timeout)
        return rc

    def stop(self, timeout: float = 15.0) -> Optional[int]:
        """TERM, wait with a deadline, then KILL the whole session."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout)
        return self.proc.returncode

    def close(self, timeout: float = 5.0) -> None:
        """Join the reader, then close the pipe (only once nobody else holds it:
        closing a pipe another thread is blocked reading would deadlock)."""
        self._reader.join(timeout)
        if self.proc.stdout is not None and not self._reader.is_alive():
            self.proc.stdout.close()


class Harness:
    """What the ``run`` fixture hands a test: start processes that get cleaned up."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.token = uuid.uuid4().hex
        self.procs: list[Proc] = []

    def env(self, extra: Optional[dict[str, str]] = None) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_SOCKET", "LISTEN_"))
        }
        for k in ("SERVER_STARTER_PORT", "ENVDIR", "KILL_OLD_DELAY", "ENABLE_AUTO_RESTART",
                  "AUTO_RESTART_INTERVAL", "SERVER_STARTER_GENERATION"):
            env.pop(k, None)
        env[TOKEN_VAR] = self.token
        env["PYTHONUNBUFFERED"] = "1"
        if extra:
            env.update(extra)
        return env

    def start(
        self,
        *args: str,
        env: Optional[dict[str, str]] = None,
        cwd: Optional[str] = None,
        perl: bool = False,
        stdin: Optional[int] = subprocess.DEVNULL,
        argv0: Optional[list[str]] = None,
    ) -> Proc:
        """Start a starter (ours, or Perl's with ``perl=True``) with these arguments;
        ``argv0`` replaces the command that runs ours (``python -m start_server``)."""
        argv = [PERL_START_SERVER] if perl else argv0 or [PY, "-m", "start_server"]
        proc = Proc(argv + list(args), env=self.env(env), cwd=cwd or str(self.tmp), stdin=stdin)
        self.procs.append(proc)
        return proc

    def envdir(self, **values: str) -> Path:
        """The test's envdir (``--envdir``), one file per variable; written again
        by a later call, as a deploy would change it."""
        d = self.tmp / "env"
        d.mkdir(exist_ok=True)
        for k, v in values.items():
            (d / k).write_text(v + "\n")
        return d

    def run(self, *args: str, env: Optional[dict[str, str]] = None,
            timeout: float = 30.0, perl: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a short command (a client, a bad invocation) to completion."""
        argv = [PERL_START_SERVER] if perl else [PY, "-m", "start_server"]
        return subprocess.run(
            argv + list(args), env=self.env(env), cwd=str(self.tmp), capture_output=True,
            text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False,
        )

    def leftovers(self) -> list[int]:
        return processes_with_token(self.token)

    def cleanup(self) -> list[int]:
        """Stop everything; return the pids that had to be killed afterwards."""
        for p in self.procs:
            p.stop()
        left: list[int] = []
        try:
            wait_until(lambda: not self.leftovers(), timeout=10, what="processes to exit")
        except AssertionError:
            left = self.leftovers()
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not self.leftovers(), timeout=10, what="killed processes")
        for p in self.procs:
            p.close()
            # Captured by pytest and shown only when the test fails.
            print(f"----- output of {' '.join(p.argv)}\n{p.output}")
        return left


def gone(pid: int) -> bool:
    """The process no longer exists (or is a zombie nobody will run again)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except FileNotFoundError:
        return True


def first_worker(s: Proc) -> int:
    """The pid of generation 1 once it has started, from either implementation's log.

    Perl (run with ``--interval=0``) counts a worker as started when spawned; ours
    says so after the start check. A HUP sent before that would be coalesced.
    """
    pid = int(s.wait_line(r"starting new worker (\d+)").group(1))
    if s.argv[0] != PERL_START_SERVER:
        s.wait_line(rf"new worker {pid} is now running")
    return pid


def serve_body(get: Callable[[], str], expected: str, what: str = "") -> str:
    """Wait until a request is answered with ``expected``."""
    return wait_until(lambda: get() == expected and expected, what=what or repr(expected))


@contextlib.contextmanager
def daemon_guard(pid_file: Path) -> Iterator[None]:
    """Whatever happens in the test, TERM a daemonized starter left running."""
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text())
            if not gone(pid):
                os.kill(pid, signal.SIGTERM)
                wait_until(lambda: gone(pid), timeout=10, what="the daemon to exit")


HELLO = re.compile(r"^hello from generation (\d+) pid \d+$")  # examples/hello_app.py & co


def status_detail(status: Path) -> dict[str, Any]:
    """The status file's JSON sidecar; {} while it is missing or being replaced."""
    try:
        return dict(json.loads(Path(f"{status}.json").read_text()))
    except (OSError, ValueError):
        return {}


def proc_environ(pid: int) -> dict[str, str]:
    """The environment ``pid`` was exec'd with."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(e.split("=", 1) for e in raw.split("\0") if "=" in e)


class ClientLoad:
    """Client threads, one new connection per request, until the block ends.

    Every answer must be a 200 with a ``hello from generation N pid P`` body.
    ``ok`` counts answers per client, ``answered`` per generation. A failure is
    "dropped" when the connection was accepted but never answered: reset or closed
    before any response, or left unanswered until the client gave up (the known
    shutdown race of some servers: a connection accepted during the drain is never
    read). Anything else (refused, a bad status or body, a response cut short) is
    "other".
    """

    def __init__(self, port: int, clients: int = 16, timeout: float = 30.0) -> None:
        self.port = port
        self.timeout = timeout
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ok = [0] * clients
        self.answered: Counter[int] = Counter()  # generation -> requests it answered
        self.dropped: list[str] = []
        self.other: list[str] = []
        self.threads = [
            threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)
        ]

    def __enter__(self) -> ClientLoad:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)
        assert not any(t.is_alive() for t in self.threads), "a client thread hangs"

    def generations(self) -> set[int]:
        with self.lock:
            return set(self.answered)

    def wait_answered_by(self, generation: int, timeout: float) -> None:
        """Wait until ``generation`` has answered one of the clients."""
        wait_until(
            lambda: generation in self.generations(), timeout, f"generation {generation} to answer"
        )

    @property
    def failures(self) -> list[str]:
        return self.dropped + self.other

    def _client(self, i: int) -> None:
        while not self.stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            responded = False
            try:
                conn.request("GET", "/", headers={"Connection": "close"})
                resp = conn.getresponse()
                responded = True
                body = resp.read().decode().strip()
                m = HELLO.match(body)
                with self.lock:
                    if resp.status == 200 and m:
                        self.ok[i] += 1
                        self.answered[int(m.group(1))] += 1
                    else:
                        self.other.append(f"client {i}: HTTP {resp.status} {body!r}")
            except (OSError, http.client.HTTPException) as exc:
                drop = not responded and isinstance(
                    exc, (ConnectionResetError, BrokenPipeError, TimeoutError)
                )
                with self.lock:
                    (self.dropped if drop else self.other).append(f"client {i}: {exc!r}")
            finally:
                conn.close()

    def check(self) -> None:
        """No failure, and every client got answers."""
        assert not self.failures, f"{len(self.failures)} failed requests, e.g. {self.failures[:5]}"
        assert all(self.ok), f"some client never got an answer: {self.ok}"
        assert sum(self.ok) > 100, self.ok
