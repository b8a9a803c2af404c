#!/usr/bin/env python3
"""The benchmark app: a tiny, fast, graceful HTTP server for start_server.

It serves the first socket of ``SERVER_STARTER_PORT`` (so it runs the same
under our starter, Perl's, or bench/run.py's own "direct" launcher) from a
single-threaded selector loop: no thread per request, so it answers fast.
By default one request per connection (HTTP/1.0, ``Connection: close``,
which wrk handles by reconnecting): a restart can then never race a client
reusing an idle keep-alive connection that the old generation is closing.

Environment:
  BENCH_READY_DELAY   seconds after the process started at which it begins
                      accepting and sends READY=1 (default 0): "becomes ready
                      100 ms after exec" is BENCH_READY_DELAY=0.1. The start is
                      the kernel's (/proc/self/stat, in clock ticks, rounded
                      up to the next tick), so the app is ready 100-110 ms
                      after its fork and exec, its own interpreter start-up
                      included, not 100 ms after that start-up.
  BENCH_NO_NOTIFY     if set (non-empty), never send READY=1: under our starter
                      the generation then starts by the --interval rule only,
                      exactly as under Perl's.
  BENCH_KEEPALIVE     if set (non-empty), HTTP/1.1 keep-alive instead; on TERM
                      idle connections are closed at once, busy ones after
                      their answer (a client may lose that race: use it for
                      throughput without restarts, not under HUP).
  BENCH_SPAWN_LOG     if set, a file to which each start appends one line
                      "GEN PID" (how the benchmark counts restarts that really
                      happened, under either starter).
  BENCH_CPU_MS        if set (> 0), spend this many ms of CPU time on each
                      request before answering: a CPU-bound app, the case
                      --workers is for.
  BENCH_GROW_MB_PER_S if set (> 0), once serving, grow the resident memory by
                      this many MiB per second, in steps every 0.1 s (written
                      bytes, so the pages are really resident), up to
                      BENCH_GROW_MAX_MB (default 512) in all: a leaking app
                      for --max-memory. Growth stops on TERM.
  BENCH_MEM_LOG       with BENCH_GROW_MB_PER_S, a file to which each growth
                      step appends one line "GEN WORKER PID UNIX_TIME PSS_BYTES"
                      (the PSS read from /proc/self/smaps_rollup right after
                      the step): when the process crossed a limit, to the step.
  BENCH_LEAK_FDS_PER_S if set (> 0), once serving, open this many sockets per
                      second and never close them, in steps every 0.1 s, up to
                      BENCH_LEAK_FDS_MAX (default 900) in all: a handle leak for
                      --max-open-files. The leak stops on TERM.
  BENCH_FD_LOG        with BENCH_LEAK_FDS_PER_S, a file to which each leak step
                      appends one line "GEN WORKER PID UNIX_TIME FDS" (its open
                      fds as the starter counts them: fds 0-2 and the inherited
                      listening sockets aside).

Graceful: on TERM (or INT) it stops accepting at once (the listening socket
stays open in the starter, so the next generation accepts what arrives),
answers the connections it already accepted, and exits 0. Signals only wake
the loop (``signal.set_wakeup_fd``), so a retiring generation exits within
milliseconds and an idle one never wakes up.

Every response body is ``gen=G pid=P\\n``.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import sys
import time

from start_server import listen_from_env, notify_ready

STRAGGLER_DEADLINE = 10.0  # after TERM, wait at most this long for accepted requests
ANSWERED = b"\0answered"  # a connection's buffer once answered: waiting for the client's FIN
GROW_STEP = 0.1  # seconds between two growth steps of BENCH_GROW_MB_PER_S


def seconds_since_start() -> float:
    """Seconds since this process started, at least (the kernel counts its start
    in clock ticks: rounding the start up to the next tick never undercounts)."""
    with open("/proc/self/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    tick = 1.0 / os.sysconf("SC_CLK_TCK")
    started = (int(fields[19]) + 1) * tick  # field 22 of stat(5), counted from after the ")"
    return time.clock_gettime(time.CLOCK_BOOTTIME) - started


def burn(cpu_seconds: float) -> None:
    """Spend ``cpu_seconds`` of this process's CPU time (not wall time: on a busy
    machine the request costs the same work, it just waits longer for a CPU)."""
    end = time.process_time() + cpu_seconds
    while time.process_time() < end:
        pass


def own_pss() -> int:
    """This process's PSS in bytes (what the starter's --max-memory compares), else RSS."""
    for path, key in (("/proc/self/smaps_rollup", "Pss:"), ("/proc/self/status", "VmRSS:")):
        try:
            with open(path) as fh:
                for line in fh:
                    if line.startswith(key):
                        return int(line.split()[1]) * 1024
        except OSError:
            continue
    return 0


def _inherited_sockets() -> set[str]:
    """The /proc links of the listening sockets SERVER_STARTER_PORT names."""
    out = set()
    for item in os.environ.get("SERVER_STARTER_PORT", "").split(";"):
        fd = item.rpartition("=")[2]
        if fd.isdigit():
            try:
                out.add(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                continue
    return out


def own_fds(inherited: set[str]) -> int:
    """Open fds as the starter's --max-open-files counts them: fds 0-2 and the
    inherited listening sockets aside."""
    n = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue  # the fd listdir itself used, closed by now
        n += int(name) > 2 and link not in inherited
    return n


def append_line(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())  # one write: lines of several workers never mix
    finally:
        os.close(fd)


def _tag() -> str:
    return "{} {} {}".format(
        os.environ.get("SERVER_STARTER_GENERATION", "0"),
        os.environ.get("SERVER_STARTER_WORKER", "0"),
        os.getpid(),
    )


class FdLeaker:
    """Opens sockets at a fixed rate and never closes them: a leak for --max-open-files."""

    def __init__(self, per_s: float, max_fds: int, log_path: str | None) -> None:
        self.step_fds = max(1, round(per_s * GROW_STEP))
        self.max_fds = max_fds
        self.log_path = log_path
        self.held: list[socket.socket] = []
        self.inherited = _inherited_sockets()
        self.next_at = time.monotonic() + GROW_STEP
        self.tag = _tag()

    def due_in(self) -> float | None:
        if len(self.held) >= self.max_fds:
            return None
        return max(0.0, self.next_at - time.monotonic())

    def step(self) -> None:
        now = time.monotonic()
        if now < self.next_at or len(self.held) >= self.max_fds:
            return
        self.next_at = now + GROW_STEP
        self.held.extend(socket.socket() for _ in range(self.step_fds))
        if self.log_path:
            append_line(self.log_path, f"{self.tag} {time.time():.6f} {own_fds(self.inherited)}\n")


class Grower:
    """Holds memory that grows at a fixed rate: a leak for the memory-limit benchmark."""

    def __init__(self, mb_per_s: float, max_mb: float, log_path: str | None) -> None:
        self.step_bytes = int(mb_per_s * GROW_STEP * 1048576)
        self.max_bytes = int(max_mb * 1048576)
        self.log_path = log_path
        self.held: list[bytes] = []
        self.total = 0
        self.next_at = time.monotonic() + GROW_STEP
        self.tag = _tag()

    def due_in(self) -> float | None:
        if self.total >= self.max_bytes:
            return None
        return max(0.0, self.next_at - time.monotonic())

    def step(self) -> None:
        now = time.monotonic()
        if now < self.next_at or self.total >= self.max_bytes:
            return
        self.next_at = now + GROW_STEP
        self.held.append(b"\1" * self.step_bytes)  # written: resident, not just reserved
        self.total += self.step_bytes
        if self.log_path:
            append_line(self.log_path, f"{self.tag} {time.time():.6f} {own_pss()}\n")


def response(keep_alive: bool) -> bytes:
    gen = os.environ.get("SERVER_STARTER_GENERATION", "0")
    body = f"gen={gen} pid={os.getpid()}\n".encode()
    head = (
        ("HTTP/1.1 200 OK\r\n" if keep_alive else "HTTP/1.0 200 OK\r\n")
        + "Content-Type: text/plain\r\n"
        + f"Content-Length: {len(body)}\r\n"
        + ("" if keep_alive else "Connection: close\r\n")
        + "\r\n"
    ).encode()
    return head + body


def main() -> int:
    delay = float(os.environ.get("BENCH_READY_DELAY", "0") or 0)
    spawn_log = os.environ.get("BENCH_SPAWN_LOG")
    if spawn_log:
        gen = os.environ.get("SERVER_STARTER_GENERATION", "0")
        fd = os.open(spawn_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{gen} {os.getpid()}\n".encode())  # one write: lines never mix
        finally:
            os.close(fd)
    keep_alive = bool(os.environ.get("BENCH_KEEPALIVE"))
    grow_rate = float(os.environ.get("BENCH_GROW_MB_PER_S", "0") or 0)
    leak_rate = float(os.environ.get("BENCH_LEAK_FDS_PER_S", "0") or 0)
    cpu_per_request = float(os.environ.get("BENCH_CPU_MS", "0") or 0) / 1000
    leaks: list[Grower | FdLeaker] = []
    reply = response(keep_alive)
    listener = listen_from_env()[0]
    listener.setblocking(False)

    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)

    if delay > 0:
        time.sleep(max(0.0, delay - seconds_since_start()))  # the simulated start-up work

    sel = selectors.DefaultSelector()
    sel.register(wake_r, selectors.EVENT_READ, "wake")
    sel.register(listener, selectors.EVENT_READ, "accept")
    pending: dict[socket.socket, bytes] = {}
    stop_deadline: float | None = None
    if not os.environ.get("BENCH_NO_NOTIFY"):
        notify_ready()  # a no-op without NOTIFY_SOCKET (Perl's starter sets none)
    if grow_rate > 0:
        leaks.append(Grower(
            grow_rate,
            float(os.environ.get("BENCH_GROW_MAX_MB", "512") or 512),
            os.environ.get("BENCH_MEM_LOG") or None,
        ))
    if leak_rate > 0:
        leaks.append(FdLeaker(
            leak_rate,
            int(os.environ.get("BENCH_LEAK_FDS_MAX", "900") or 900),
            os.environ.get("BENCH_FD_LOG") or None,
        ))

    while True:
        if stop_deadline is not None:
            if not pending:
                break
            timeout: float | None = max(0.0, stop_deadline - time.monotonic())
            if timeout == 0.0:
                break
        else:
            dues = [d for d in (x.due_in() for x in leaks) if d is not None]
            timeout = min(dues) if dues else None
        for key, _ in sel.select(timeout):
            tag = key.data
            if tag == "accept":
                for _ in range(64):
                    try:
                        conn, _addr = listener.accept()
                    except (BlockingIOError, InterruptedError):
                        break
                    except OSError:
                        break  # e.g. ECONNABORTED: the client gave up
                    conn.setblocking(False)
                    pending[conn] = b""
                    sel.register(conn, selectors.EVENT_READ, "conn")
            elif tag == "wake":
                try:
                    signums = wake_r.recv(64)
                except BlockingIOError:
                    signums = b""
                if stop_deadline is None and (
                    signal.SIGTERM in signums or signal.SIGINT in signums
                ):
                    sel.unregister(listener)  # stop accepting; keep the fd (it's shared)
                    stop_deadline = time.monotonic() + STRAGGLER_DEADLINE
                    leaks = []  # a retiring generation stops growing and leaking
                    if keep_alive:  # idle keep-alive connections: close now
                        for conn in [c for c, b in pending.items() if not b]:
                            sel.unregister(conn)
                            del pending[conn]
                            conn.close()
            else:
                conn = key.fileobj  # type: ignore[assignment]
                if conn not in pending:
                    continue  # closed earlier in this batch (idle at TERM)
                try:
                    data = conn.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if data and pending[conn] is ANSWERED:
                    continue  # the client sent more after its answer: ignore it
                if data:
                    buf = pending[conn] + data
                    answers = buf.count(b"\r\n\r\n")  # GETs only: no request bodies
                    if answers == 0:
                        pending[conn] = buf
                        continue
                    if cpu_per_request > 0:
                        burn(cpu_per_request * answers)
                    try:
                        conn.sendall(reply * answers)  # small: fits the send buffer
                    except OSError:
                        pass  # the client is gone: close
                    else:
                        if not keep_alive:
                            # The answer said "Connection: close": let the client close
                            # first, so TIME_WAIT lands on its side, where Linux reuses it.
                            pending[conn] = ANSWERED
                            continue
                        if stop_deadline is None and b" HTTP/1.0\r\n" not in buf:
                            pending[conn] = buf[buf.rindex(b"\r\n\r\n") + 4 :]
                            continue  # keep-alive: wait for the next request
                sel.unregister(conn)
                del pending[conn]
                conn.close()
        for leak in leaks:
            leak.step()
    for conn in pending:
        conn.close()
    sel.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
