"""Readiness-gated starts, bounded stops, crash backoff, a truthful --restart."""

from __future__ import annotations

import os
import re
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import (
    APP,
    PY,
    Harness,
    Proc,
    free_port,
    gen_of,
    http_get,
    log_time,
    read_status,
    wait_until,
    wakeups,
)


def _gens(status: Path) -> list[int]:
    return [g for g, _ in read_status(status)]


def test_wait_ready_gates_the_cut_over(run: Harness) -> None:
    port = free_port()
    status = run.tmp / "status"
    env = run.envdir(APP_EXTRA="--notify")
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--status-file={status}", f"--envdir={env}",
        "--wait-ready", "--interval=0.1", "--", PY, APP,
    )
    s.wait_line(r"gen=1 .*is now running \(ready\)")
    # Generation 2 notifies only after 1.5 s: until then, generation 1 is not
    # signalled (both accept on the shared socket; only READY=1 retires the old).
    (env / "APP_EXTRA").write_text("--notify --notify-delay 1.5\n")
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(r"gen=2 .*starting new worker", start=mark)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 1.0:  # well past --interval, still before READY
        assert _gens(status) == [1]
        assert "killing old workers" not in s.output[len("\n".join(s.lines[:mark])):]
        http_get(port)
    s.wait_line(r"gen=2 .*is now running \(ready\)", start=mark)
    wait_until(lambda: _gens(status) == [2], what="generation 2 alone")
    assert gen_of(http_get(port)) == 2


def test_ready_before_interval_ends_the_wait(run: Harness) -> None:
    port = free_port()
    s = run.start(f"--port=127.0.0.1:{port}", "--interval=30", "--", PY, APP, "--notify")
    # With a 30 s interval, only READY=1 can have started it this soon.
    s.wait_line(r"gen=1 .*is now running \(ready\)", timeout=10)
    assert gen_of(http_get(port)) == 1


def test_ready_timeout_stops_the_generation_and_keeps_the_old(run: Harness) -> None:
    port = free_port()
    status = run.tmp / "status"
    env = run.envdir(APP_EXTRA="--notify")
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--status-file={status}", f"--envdir={env}",
        "--wait-ready", "--ready-timeout=0.5", "--stop-timeout=2", "--backoff-max=60",
        "--interval=1", "--", PY, APP,
    )
    s.wait_line(r"gen=1 .*is now running")
    (env / "APP_EXTRA").write_text("\n")  # generation 2 never says READY=1
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(r"gen=2 .*not ready after 0.5 s; stopping it", start=mark)
    s.wait_line(r"gen=2 .*never ready\) exited", start=mark)
    assert _gens(status) == [1]
    assert gen_of(http_get(port)) == 1
    assert "killing old workers" not in s.output  # generation 1 was never signalled


def test_stop_timeout_kills_a_generation_that_ignores_term(run: Harness) -> None:
    port = free_port()
    env = run.envdir(APP_EXTRA="--ignore-term --fork 2")
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--envdir={env}", "--interval=0.2", "--stop-timeout=0.5",
        "--", PY, APP,
    )
    s.wait_line(r"gen=1 .*is now running")
    old_pid = int(s.wait_line(r"gen=1 pid=(\d+)").group(1))
    (env / "APP_EXTRA").write_text("\n")
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(rf"worker {old_pid} did not exit 0.5 s after it was signalled; sending KILL",
                start=mark)
    s.wait_line(rf"old worker {old_pid} died, status:9 \(killed by SIGKILL\)", start=mark)
    # Its forked children, in its process group, went with it.
    wait_until(lambda: len(run.leftovers()) == 2, what="only the starter and generation 2")
    assert gen_of(http_get(port)) == 2


def test_stop_timeout_bounds_shutdown(run: Harness) -> None:
    port = free_port()
    s = run.start(f"--port=127.0.0.1:{port}", "--wait-ready", "--stop-timeout=0.3",
                  "--", PY, APP, "--ignore-term", "--notify")
    s.wait_line(r"gen=1 .*is now running")  # READY=1 comes after it ignores TERM
    s.signal(signal.SIGTERM)
    assert s.wait(timeout=10) == 0
    assert re.search(r"did not exit 0.3 s after it was signalled; sending KILL", s.output)


def test_failed_starts_back_off_exponentially(run: Harness) -> None:
    port = free_port()
    env = run.envdir(APP_EXTRA="--notify")
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--envdir={env}", "--wait-ready", "--interval=0.2",
        "--backoff-max=0.8", "--", PY, APP,
    )
    s.wait_line(r"gen=1 .*is now running")
    (env / "APP_EXTRA").write_text("--exit 1\n")
    mark = s.mark()
    s.signal(signal.SIGHUP)
    backoff = [0.2, 0.4, 0.8, 0.8]  # doubling from --interval, capped by --backoff-max
    waits = []
    for n in range(1, 5):
        m = s.wait_line(rf"next attempt in ([\d.]+) s \(failed starts in a row: {n}\)",
                        start=mark)
        waits.append(float(m.group(1)))
    # Each backoff is measured from the failed attempt's spawn, so the wait left once
    # it failed is shorter by the time the app took to fail (0 on a loaded machine).
    assert all(w <= b + 1e-6 for w, b in zip(waits, backoff)), waits
    # Spawn to spawn, each attempt came no sooner than its backoff. The stamps are
    # taken when a line is written: 0.1 s of slack still tells 0.4 from 0.2.
    spawns = [
        log_time(s.wait_line(rf"^(\S+) .*gen={g} pid=\d+ starting new worker", start=mark)
                 .group(1))
        for g in range(2, 7)
    ]
    gaps = [b - a for a, b in zip(spawns, spawns[1:])]
    assert all(gap >= b - 0.1 for gap, b in zip(gaps, backoff)), gaps
    assert gen_of(http_get(port)) == 1  # the old generation serves all along
    # A fixed deploy is picked up by the next attempt, which starts normally.
    (env / "APP_EXTRA").write_text("--notify\n")
    s.wait_line(r"is now running \(ready\)", start=s.mark(), timeout=10)
    wait_until(lambda: gen_of(http_get(port)) > 1, what="a new generation to serve")


def _restart(run: Harness, pid_file: Path, status: Path, *extra: str) -> tuple[int, str, float]:
    t0 = time.monotonic()
    r = run.run("--restart", f"--pid-file={pid_file}", f"--status-file={status}", *extra)
    return r.returncode, r.stderr, time.monotonic() - t0


@dataclass
class Served:
    """A --wait-ready starter serving generation 1, its files, and the envdir that
    tells the next generation's app what to do (``APP_EXTRA``)."""

    s: Proc
    port: int
    status: Path
    pid_file: Path
    env: Path

    def restart_client(self, run: Harness) -> Proc:
        return run.start("--restart", f"--pid-file={self.pid_file}",
                         f"--status-file={self.status}")


def _served(run: Harness, *extra: str) -> Served:
    port = free_port()
    status, pid_file = run.tmp / "status", run.tmp / "pid"
    env = run.envdir(APP_EXTRA="--notify")
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--status-file={status}", f"--pid-file={pid_file}",
        f"--envdir={env}", "--wait-ready", *extra, "--", PY, APP,
    )
    s.wait_line(r"gen=1 .*is now running")
    return Served(s, port, status, pid_file, env)


def test_restart_exit_codes(run: Harness) -> None:
    served = _served(run, "--ready-timeout=20")
    port, status, pid_file, env = served.port, served.status, served.pid_file, served.env

    code, err, took = _restart(run, pid_file, status)
    assert code == 0, err
    assert "restarted: generation 2" in err
    assert _gens(status) == [2]
    assert took < 5, took  # it returns when the swap is done, not on a 1 s poll

    (env / "APP_EXTRA").write_text("--exit 7\n")
    code, err, _ = _restart(run, pid_file, status)
    assert code == 1
    assert re.search(r"generation \d+ failed to start: .*exit code 7", err), err
    assert err.count("\n") == 1
    assert gen_of(http_get(port)) == 2

    (env / "APP_EXTRA").write_text("\n")  # never ready: the client's deadline ends it
    code, err, took = _restart(run, pid_file, status, "--timeout=1")
    assert code == 1
    assert "timed out after 1 s" in err, err
    assert took < 5


def test_restart_fails_when_the_starter_dies(run: Harness) -> None:
    served = _served(run)
    s = served.s
    run.envdir(APP_EXTRA="")
    client = served.restart_client(run)
    s.wait_line(r"gen=2 .*starting new worker")
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    assert client.wait(timeout=10) == 1
    assert re.search(r"exited before the restart completed|failed to start", client.output)


def test_restart_client_sleeps_through_a_busy_directory(run: Harness) -> None:
    """A log file written next to the status file must not wake the waiting
    client on every line (it watches renames and closes, not writes)."""
    served = _served(run)
    s = served.s
    run.envdir(APP_EXTRA="--notify --notify-delay 3")
    client = served.restart_client(run)
    s.wait_line(r"gen=2 .*starting new worker")
    wait_until(lambda: wakeups(client.pid) > 0, what="the client to run")
    before = wakeups(client.pid)
    writes = 0
    with open(run.tmp / "busy.log", "a") as log:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:  # the workload under test, not a settle delay
            log.write("a line of somebody else's log\n")
            log.flush()
            writes += 1
    woken = wakeups(client.pid) - before
    assert "restarted" not in client.output  # still waiting for generation 2 all along
    assert writes > 1000, writes
    assert woken < 20, f"the client woke {woken} times for {writes} writes beside it"
    assert client.wait(timeout=15) == 0, client.output
    assert "restarted: generation 2" in client.output


class _NotifyCatcher:
    """A NOTIFY_SOCKET of the test's own, as systemd would give the starter."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(10)
        self.messages: list[str] = []

    def expect(self, pattern: str) -> str:
        for m in self.messages:
            if re.search(pattern, m):
                self.messages.remove(m)
                return m
        while True:
            m = self.sock.recv(4096).decode()
            if re.search(pattern, m):
                return m
            self.messages.append(m)


def test_systemd_notify_upstream(run: Harness) -> None:
    port = free_port()
    catcher = _NotifyCatcher(run.tmp / "notify")
    try:
        s = run.start(f"--port=127.0.0.1:{port}", "--wait-ready", "--", PY, APP, "--notify",
                      env={"NOTIFY_SOCKET": catcher.path})
        assert "READY=1" in catcher.expect(r"READY=1")
        child_socket = http_get(port, "/env/NOTIFY_SOCKET").strip()
        assert child_socket.startswith("/") and "start_server." in child_socket, child_socket
        assert child_socket != catcher.path
        s.signal(signal.SIGHUP)
        reloading = catcher.expect(r"RELOADING=1")
        usec = int(re.search(r"MONOTONIC_USEC=(\d+)", reloading).group(1))  # type: ignore[union-attr]
        assert abs(usec / 1e6 - time.monotonic()) < 30
        ready = catcher.expect(r"READY=1")
        assert "STATUS=generation 2" in ready
        s.signal(signal.SIGTERM)
        catcher.expect(r"STOPPING=1")
        assert s.wait() == 0
    finally:
        catcher.sock.close()


def test_notifications_from_outside_the_generation_are_ignored(run: Harness) -> None:
    port = free_port()
    status = run.tmp / "status"
    s = run.start(f"--port=127.0.0.1:{port}", f"--status-file={status}", "--wait-ready",
                  "--ready-timeout=30", "--", PY, APP)
    s.wait_line(r"gen=1 .*starting new worker")
    address = wait_until(lambda: http_get(port, "/env/NOTIFY_SOCKET").strip(),
                         what="the app to answer")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as intruder:
        intruder.sendto(b"READY=1", address)
    s.wait_line(rf"ignored a notification to generation 1 from outside it "
                rf"\(last: pid {os.getpid()}, uid {os.getuid()}: not in its process tree\)")
    assert _gens(status) == []
    assert "is now running" not in s.output


@pytest.mark.skipif(not os.path.exists("/usr/bin/systemd-notify"), reason="needs systemd-notify")
def test_systemd_notify_tool_from_the_app_tree_counts(run: Harness) -> None:
    port = free_port()
    script = run.tmp / "serve.sh"
    script.write_text(f"#!/bin/sh\n{PY} {APP} &\nsystemd-notify --ready\nwait\n")
    script.chmod(0o755)
    s = run.start(f"--port=127.0.0.1:{port}", "--wait-ready", "--", str(script))
    s.wait_line(r"gen=1 .*is now running \(ready\)")
