"""Upgrading the running starter in place (SIGUSR2, ``--upgrade``): the same
pid, the same sockets, the same workers, the state carried on; a broken
install refused while the running code carries on."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from support import (
    APP,
    PY,
    ClientLoad,
    Harness,
    Proc,
    daemon_guard,
    free_port,
    gone,
    http_get,
    wait_until,
)

from start_server import __version__

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples" / "hello_app.py")


def _detail(status: Path) -> dict[str, Any]:
    detail: dict[str, Any] = json.loads(Path(f"{status}.json").read_text())
    return detail


def _client(run: Harness, mode: str, pid_file: Path, status: Path,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run.run(f"--{mode}", f"--pid-file={pid_file}", f"--status-file={status}",
                   "--timeout=60", env=env, timeout=90)


def _worker_pids(status: Path) -> dict[int, int]:
    return {g["pid"]: g["generation"] for g in _detail(status)["generations"]}


def _more_answers(load: ClientLoad, count: int) -> None:
    target = sum(load.ok) + count
    wait_until(lambda: sum(load.ok) >= target, timeout=20, what=f"{count} more answers")


@pytest.mark.timeout(120)
def test_upgrade_under_load_keeps_pid_sockets_and_workers(run: Harness) -> None:
    port = free_port()
    pid_file, status = run.tmp / "pid", run.tmp / "status"
    s = run.start(f"--port=127.0.0.1:{port}", f"--pid-file={pid_file}",
                  f"--status-file={status}", "--workers=2", "--", PY, EXAMPLE)
    s.wait_line(r"gen=1 .*is now running")
    wait_until(lambda: len(_worker_pids(status)) == 2, what="two workers listed")
    workers = _worker_pids(status)
    with ClientLoad(port, 8, timeout=10) as load:
        _more_answers(load, 20)
        for _ in range(3):
            r = _client(run, "upgrade", pid_file, status)
            assert r.returncode == 0, r.stderr
            assert f"upgraded start_server {__version__} -> {__version__} (pid {s.pid})" in r.stderr
            s.wait_line(rf"upgraded start_server .* \(pid {s.pid}\)", start=0)
            _more_answers(load, 20)
    load.check()
    assert load.generations() == {1}
    assert s.proc.poll() is None  # the same process, not a new one
    assert int(pid_file.read_text()) == s.pid
    assert _worker_pids(status) == workers  # the same workers, never signalled
    assert "Traceback" not in s.output
    detail = _detail(status)
    assert detail["version"] == __version__ and detail["upgrade"]["seq"] == 3
    # The loop runs on: HUP, --restart and --stop work; generation numbers continue.
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(r"gen=2 .*is now running", start=mark)
    r = _client(run, "restart", pid_file, status)
    assert r.returncode == 0 and "generation 3" in r.stderr, r.stderr
    r = run.run("--stop", f"--pid-file={pid_file}", timeout=60)
    assert r.returncode == 0, r.stderr
    assert s.wait() == 0
    assert not pid_file.exists() and not status.exists()
    assert all(gone(pid) for pid in workers)


@pytest.mark.timeout(90)
def test_upgrade_while_a_generation_is_starting_keeps_its_start_check(run: Harness) -> None:
    port = free_port()
    pid_file, status = run.tmp / "pid", run.tmp / "status"
    s = run.start(f"--port=127.0.0.1:{port}", f"--pid-file={pid_file}",
                  f"--status-file={status}", "--interval=4", "--", PY, APP)
    s.wait_line(r"gen=1 .*is now running", timeout=20)
    mark = s.mark()
    s.signal(signal.SIGHUP)
    p2 = int(s.wait_line(r"gen=2 pid=(\d+) starting new worker", start=mark).group(1))
    r = _client(run, "upgrade", pid_file, status)
    assert r.returncode == 0, r.stderr
    # Generation 2's start check (4 s from its spawn) is kept, not restarted.
    m = s.wait_line(rf"gen=2 pid={p2} new worker {p2} is now running \(alive after ([\d.]+) s\)",
                    timeout=20, start=mark)
    assert float(m.group(1)) < 4.5
    wait_until(lambda: http_get(port).startswith("gen=2 "), what="generation 2 to serve")
    s.wait_line(r"gen=1 pid=\d+ old worker \d+ died", start=mark)
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    assert "Traceback" not in s.output


@pytest.mark.timeout(90)
def test_upgrade_tells_systemd_and_a_starting_generation_is_heard_after_it(run: Harness) -> None:
    """The notify socket of a generation still starting is adopted: its READY=1,
    sent after the upgrade, reaches the new code; upstream hears RELOADING=1,
    then READY=1 with STATUS=upgraded to the version."""
    port = free_port()
    pid_file, status = run.tmp / "pid", run.tmp / "status"
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    upstream.bind(str(run.tmp / "notify"))
    upstream.settimeout(30)
    try:
        s = run.start(f"--port=127.0.0.1:{port}", f"--pid-file={pid_file}",
                      f"--status-file={status}", "--wait-ready", "--ready-timeout=30",
                      "--", PY, APP, "--notify", "--notify-delay", "3",
                      env={"NOTIFY_SOCKET": str(run.tmp / "notify")})
        s.wait_line(r"gen=1 .*is now running", timeout=20)
        mark = s.mark()
        s.signal(signal.SIGHUP)
        s.wait_line(r"gen=2 pid=\d+ starting new worker", start=mark)
        while "READY=1" not in upstream.recv(4096).decode():  # generation 1's
            pass
        r = _client(run, "upgrade", pid_file, status)
        assert r.returncode == 0, r.stderr
        messages: list[str] = []
        while not any("STATUS=upgraded to" in m for m in messages):
            messages.append(upstream.recv(4096).decode())
        assert any(m.startswith("RELOADING=1\nMONOTONIC_USEC=") for m in messages), messages
        assert f"READY=1\nSTATUS=upgraded to {__version__}" in messages, messages
        s.wait_line(r"gen=2 pid=\d+ new worker \d+ is now running \(ready\)", start=mark,
                    timeout=20)
        wait_until(lambda: http_get(port).startswith("gen=2 "), what="generation 2 to serve")
        s.signal(signal.SIGTERM)
        assert s.wait() == 0
        assert "Traceback" not in s.output
    finally:
        upstream.close()


def _stamp(line: str) -> float:
    """The log line's UTC time stamp, in seconds."""
    from datetime import datetime, timezone

    text = line.split(maxsplit=1)[0].rstrip("Z")
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


@pytest.mark.timeout(90)
def test_upgrade_while_a_generation_retires_keeps_its_delay(run: Harness) -> None:
    port = free_port()
    pid_file, status = run.tmp / "pid", run.tmp / "status"
    s = run.start(f"--port=127.0.0.1:{port}", f"--pid-file={pid_file}",
                  f"--status-file={status}", "--interval=0.2", "--kill-old-delay=3",
                  "--", PY, APP)
    s.wait_line(r"gen=1 .*is now running")
    mark = s.mark()
    s.signal(signal.SIGHUP)
    sleeping = s.wait_line(r"sleeping 3 secs before killing old workers", start=mark).string
    # Upgrade a second into the delay: a delay started over would end 4 s after it.
    wait_until(lambda: time.time() > _stamp(sleeping) + 1.0, what="a second of the delay")
    r = _client(run, "upgrade", pid_file, status)
    assert r.returncode == 0, r.stderr
    upgraded = s.wait_line(r"upgraded start_server", start=mark).string
    killing = s.wait_line(r"\] killing old workers", start=mark, timeout=20).string
    assert _stamp(sleeping) < _stamp(upgraded) < _stamp(killing)
    # The delay counts from the cut-over, not from the upgrade.
    assert 2.9 < _stamp(killing) - _stamp(sleeping) < 3.8, (sleeping, killing)
    s.wait_line(r"gen=1 pid=\d+ old worker \d+ died", start=mark)
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    assert "Traceback" not in s.output


@pytest.mark.timeout(90)
def test_upgrade_during_crash_backoff_keeps_the_remaining_time(run: Harness) -> None:
    port = free_port()
    pid_file, status = run.tmp / "pid", run.tmp / "status"
    s = run.start(f"--port=127.0.0.1:{port}", f"--pid-file={pid_file}",
                  f"--status-file={status}", "--interval=0.2", "--backoff-max=4",
                  "--", PY, "-c", "raise SystemExit(3)")
    # Failures in a row until the delay is long enough to upgrade inside it.
    wait_until(lambda: (_detail(status).get("next_attempt_at") or 0) - time.time() > 1.5,
               timeout=30, what="a backoff of more than 1.5 s")
    before = _detail(status)["next_attempt_at"]
    r = _client(run, "upgrade", pid_file, status)
    assert r.returncode == 0, r.stderr
    after = _detail(status)["next_attempt_at"]
    assert after is not None and abs(after - before) < 0.1, (before, after)
    s.signal(signal.SIGTERM)
    assert s.wait() in (0, 1)
    assert "Traceback" not in s.output


def _copy_package(dest: Path) -> Path:
    """This checkout's package as a separate install, on PYTHONPATH."""
    target = dest / "start_server"
    shutil.copytree(ROOT / "start_server", target,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.mark.timeout(120)
def test_a_broken_install_is_refused_then_a_new_version_is_taken(run: Harness) -> None:
    port = free_port()
    pid_file, status = run.tmp / "pid", run.tmp / "status"
    pkg = _copy_package(run.tmp / "site")
    env = {"PYTHONPATH": str(pkg.parent)}
    s = run.start(f"--port=127.0.0.1:{port}", f"--pid-file={pid_file}",
                  f"--status-file={status}", "--interval=0.2", "--", PY, APP, env=env)
    s.wait_line(r"gen=1 .*is now running")
    p1 = int(http_get(port).split("pid=")[1])
    core = pkg / "core.py"
    good = core.read_text()
    core.write_text("this is not python\n" + good)  # an install broken half-way
    r = _client(run, "upgrade", pid_file, status, env=env)
    assert r.returncode == 1
    assert re.search(r"upgrade refused: the new install failed its check: SyntaxError", r.stderr)
    s.wait_line(rf"upgrade refused: .*; start_server {re.escape(__version__)} carries on")
    assert http_get(port) == f"gen=1 pid={p1}\n"
    # Fixed, and a version of its own: now it is taken.
    core.write_text(good)
    init = pkg / "__init__.py"
    init.write_text(init.read_text().replace(f'__version__ = "{__version__}"',
                                             '__version__ = "99.0"'))
    r = _client(run, "upgrade", pid_file, status, env=env)
    assert r.returncode == 0, r.stderr
    assert f"upgraded start_server {__version__} -> 99.0 (pid {s.pid})" in r.stderr
    assert _detail(status)["version"] == "99.0"
    st = _client(run, "status", pid_file, status, env=env)
    assert "running start_server 99.0, upgraded in place" in st.stdout, st.stdout
    assert http_get(port) == f"gen=1 pid={p1}\n"
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(r"gen=2 .*is now running", start=mark)
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    assert "Traceback" not in s.output


@pytest.mark.timeout(90)
def test_upgrade_of_a_daemonized_starter(run: Harness) -> None:
    port = free_port()
    pid_file, status, log = run.tmp / "pid", run.tmp / "status", run.tmp / "log"
    with daemon_guard(pid_file):
        fg = run.run("--daemonize", f"--log-file={log}", f"--pid-file={pid_file}",
                     f"--status-file={status}", f"--port=127.0.0.1:{port}", "--interval=0.2",
                     "--", PY, APP, timeout=20)
        assert fg.returncode == 0, fg
        daemon = wait_until(lambda: pid_file.read_text().endswith("\n")
                            and int(pid_file.read_text()), what="the pid file")
        wait_until(lambda: http_get(port).startswith("gen=1 "), what="generation 1")
        body = http_get(port)
        r = _client(run, "upgrade", pid_file, status)
        assert r.returncode == 0, r.stderr
        assert f"(pid {daemon})" in r.stderr
        assert http_get(port) == body
        assert int(pid_file.read_text()) == daemon
        r = _client(run, "restart", pid_file, status)
        assert r.returncode == 0, r.stderr
        r = run.run("--stop", f"--pid-file={pid_file}", timeout=60)
        assert r.returncode == 0, r.stderr
        wait_until(lambda: gone(daemon), what="the daemon to exit")
    text = log.read_text()
    assert f"upgraded start_server {__version__} -> {__version__} (pid {daemon})" in text
    assert "Traceback" not in text


def _unshare_works() -> bool:
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True,
                       timeout=30, check=False)
    return r.returncode == 0


@pytest.mark.timeout(90)
def test_upgrade_as_pid_1(run: Harness) -> None:
    if not _unshare_works():
        pytest.skip("no PID namespace on this machine")
    port = free_port()
    pid_file, status = run.tmp / "pid", run.tmp / "status"
    outer = Proc(
        ["unshare", "--pid", "--fork", "--kill-child", PY, "-m", "start_server",
         f"--port=127.0.0.1:{port}", f"--pid-file={pid_file}", f"--status-file={status}",
         "--interval=0.2", "--", PY, APP],
        env=run.env(), cwd=str(run.tmp),
    )
    run.procs.append(outer)
    outer.wait_line(r"start_server\[1\] .*gen=1 pid=\d+ new worker \d+ is now running", 20)
    body = http_get(port)
    # The client signals the pid in the pid file: 1, its own namespace's. So
    # the test sends USR2 to the starter as seen from here.
    kids = " ".join(p.read_text() for p in Path(f"/proc/{outer.pid}/task").glob("*/children"))
    starter = int(kids.split()[0])
    seq = _detail(status)["upgrade"]["seq"]
    os.kill(starter, signal.SIGUSR2)
    wait_until(lambda: _detail(status)["upgrade"]["seq"] > seq, timeout=30, what="the upgrade")
    assert _detail(status)["upgrade"]["ok"] is True
    outer.wait_line(r"start_server\[1\] upgraded start_server .* \(pid 1\)")
    assert http_get(port) == body
    mark = outer.mark()
    os.kill(starter, signal.SIGHUP)
    outer.wait_line(r"gen=2 .*is now running", start=mark)
    os.kill(starter, signal.SIGTERM)
    assert outer.wait(30) == 0
    assert "Traceback" not in outer.output
