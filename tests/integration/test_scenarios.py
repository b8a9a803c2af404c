"""The scenarios of the original's own test suite (t/*.t), run against our starter.

Where the original behaves the same, a scenario is also run against the Perl
``start_server`` (``perl`` ids) to prove parity. Perl's ``--interval`` is whole
seconds and it sleeps through it, so Perl runs use ``--interval=0`` (started
as soon as spawned) and only where that does not change what is tested.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import stat
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from support import (
    APP,
    APPS,
    PY,
    Harness,
    Proc,
    daemon_guard,
    first_worker,
    free_port,
    gen_of,
    gone,
    has_ipv6_loopback,
    http_get,
    http_get_unix,
    log_time,
    read_status,
    serve_body,
    wait_until,
)

SIG_APP = str(APPS / "sig_app.py")
UDP_ECHO = str(APPS / "udp_echo.py")
ENV_DUMP = str(APPS / "env_dump.py")

IMPLS = [pytest.param(False, id="ours"), pytest.param(True, id="perl")]


# ---- helpers ------------------------------------------------------------------


def interval(perl: bool) -> str:
    """Ours: a fifth of a second. Perl takes whole seconds and sleeps them: 0."""
    return "--interval=0" if perl else "--interval=0.2"





def records(path: Path) -> list[tuple[int, str, float]]:
    """What sig_app.py wrote: (generation, signal name, monotonic time)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    out = []
    for line in text.splitlines():
        gen, name, when = line.split()
        out.append((int(gen), name, float(when)))
    return out


def hup_swap(s: Proc, status: Path, get: Callable[[], str], old_gen: int, old_pid: int) -> int:
    """HUP our starter; wait until only generation old_gen+1 is listed and answers."""
    new_gen = old_gen + 1
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(r"received HUP, spawning a new worker", start=mark)
    pid = int(s.wait_line(rf"gen={new_gen} pid=(\d+) new worker \d+ is now running",
                          start=mark).group(1))
    s.wait_line(rf"old worker {old_pid} died", start=mark)
    wait_until(lambda: read_status(status) == [(new_gen, pid)], what=f"status {new_gen} only")
    serve_body(get, f"gen={new_gen} pid={pid}\n")
    return pid


def umask_now() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    raise AssertionError("no Umask in /proc/self/status")


def http_get_unix_path(sock_path: str, url: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(sock_path)
        s.sendall(f"GET {url} HTTP/1.0\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data.decode().split("\r\n\r\n", 1)[1]


def refused(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as c:
        c.settimeout(5)
        try:
            c.connect((host, port))
        except ConnectionRefusedError:
            return True
    return False


def udp_ask(port: int, data: bytes, host: str = "127.0.0.1") -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        c.settimeout(5)
        c.sendto(data, (host, port))
        return c.recvfrom(65536)[0].decode()



# ---- t/01-starter.t: HUP swap, status file, --signal-on-hup ---------------------


@pytest.mark.parametrize("perl", IMPLS)
@pytest.mark.parametrize("sig", ["TERM", "USR1"])
def test_hup_swap_with_status_file(run: Harness, sig: str, perl: bool) -> None:
    port = free_port()
    status = run.tmp / "status"
    record = run.tmp / "signals"
    release = run.tmp / "release"
    s = run.start(
        f"--port={port}", f"--status-file={status}", f"--signal-on-hup={sig}", interval(perl),
        "--", PY, SIG_APP, f"--record={record}", f"--hold-until={release}", perl=perl,
    )
    p1 = first_worker(s)
    serve_body(lambda: http_get(port), f"gen=1 pid={p1}\n")
    assert read_status(status) == [(1, p1)]

    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(r"received HUP, spawning a new worker", start=mark)
    p2 = int(s.wait_line(r"starting new worker (\d+)", start=mark).group(1))
    # The old generation gets --signal-on-hup, stops accepting, and lingers
    # until released: meanwhile both are listed and only the new one answers.
    wait_until(lambda: [r[:2] for r in records(record)] == [(1, sig)], what=f"gen 1 got {sig}")
    wait_until(lambda: read_status(status) == [(1, p1), (2, p2)], what="status 1 and 2")
    serve_body(lambda: http_get(port), f"gen=2 pid={p2}\n")
    assert not gone(p1)

    release.touch()
    s.wait_line(rf"old worker {p1} died", start=mark)
    wait_until(lambda: read_status(status) == [(2, p2)], what="status 2 only")
    assert gone(p1)
    assert http_get(port) == f"gen=2 pid={p2}\n"

    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    # --signal-on-term is still TERM, whatever --signal-on-hup is.
    assert [r[:2] for r in records(record)] == [(1, sig), (2, "TERM")]
    assert not status.exists()


@pytest.mark.parametrize("perl", IMPLS)
@pytest.mark.parametrize(("stop_with", "expected"), [("TERM", "USR1"), ("INT", "TERM")])
def test_signal_on_term(run: Harness, stop_with: str, expected: str, perl: bool) -> None:
    """TERM sends --signal-on-term to the workers; INT always sends TERM."""
    port = free_port()
    record = run.tmp / "signals"
    s = run.start(
        f"--port=127.0.0.1:{port}", "--signal-on-term=usr1", interval(perl),
        "--", PY, SIG_APP, f"--record={record}", perl=perl,
    )
    p1 = first_worker(s)
    serve_body(lambda: http_get(port), f"gen=1 pid={p1}\n")
    s.signal(getattr(signal, f"SIG{stop_with}"))
    assert s.wait() == 0
    assert [r[:2] for r in records(record)] == [(1, expected)]
    assert gone(p1)
    assert re.search(rf"received {stop_with}, sending {expected} to all workers:{p1}$", s.output,
                     re.M), s.output


# ---- t/02-startfail.t: a failing start keeps the old generation serving -------


def test_start_failure_keeps_old_generation(run: Harness) -> None:
    port = free_port()
    status = run.tmp / "status"
    broken = run.tmp / "broken-build"
    # --interval=1: the app needs a few tenths of a second to import and fail,
    # and a failure must happen within the start check to count as one.
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--status-file={status}", "--interval=1",
        "--", PY, APP, f"--fail-if={broken}",
    )
    p1 = first_worker(s)
    serve_body(lambda: http_get(port), f"gen=1 pid={p1}\n")

    broken.touch()
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(r"gen=2 pid=\d+ new worker \d+ seems to have failed to start", start=mark)
    # Generation 1 keeps serving, alone in the status file.
    assert http_get(port) == f"gen=1 pid={p1}\n"
    assert read_status(status) == [(1, p1)]
    assert not gone(p1)

    broken.unlink()
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(r"received HUP, spawning a new worker", start=mark)
    hup_line = next(i for i in range(mark, len(s.lines)) if "received HUP" in s.lines[i])
    # The HUP spawns at once, or, if a retry happened to be starting just then,
    # it is coalesced and spawns right after that one.
    m = s.wait_line(r"generation (\d+) is still starting|gen=(\d+) pid=\d+ starting new worker",
                    start=hup_line)
    gen = int(m.group(1)) + 1 if m.group(1) else int(m.group(2))
    pid = int(s.wait_line(rf"gen={gen} pid=(\d+) new worker \d+ is now running",
                          start=mark).group(1))
    s.wait_line(rf"old worker {p1} died")
    wait_until(lambda: read_status(status) == [(gen, pid)], what=f"status {gen} only")
    assert http_get(port) == f"gen={gen} pid={pid}\n"
    # SERVER_STARTER_GENERATION counts every attempt, the failed ones included.
    assert gen == len(re.findall(r"starting new worker", s.output))

    s.signal(signal.SIGTERM)
    assert s.wait() == 0


# ---- t/05-killolddelay.t -------------------------------------------------------


@pytest.mark.parametrize("how", ["option", "env"])
def test_kill_old_delay(run: Harness, how: str) -> None:
    port = free_port()
    status = run.tmp / "status"
    record = run.tmp / "signals"
    opts = ["--kill-old-delay=1"] if how == "option" else []
    env = {"KILL_OLD_DELAY": "1"} if how == "env" else None
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--status-file={status}", "--interval=0.2", *opts,
        "--", PY, SIG_APP, f"--record={record}", env=env,
    )
    p1 = first_worker(s)
    serve_body(lambda: http_get(port), f"gen=1 pid={p1}\n")

    mark = s.mark()
    hup_at = time.monotonic()
    s.signal(signal.SIGHUP)
    p2 = int(s.wait_line(r"gen=2 pid=(\d+) new worker \d+ is now running", start=mark).group(1))
    s.wait_line(r"sleeping 1 secs before killing old workers", start=mark)
    # During the delay both generations run and are listed.
    wait_until(lambda: read_status(status) == [(1, p1), (2, p2)], what="status 1 and 2")
    s.wait_line(r"killing old workers", start=mark)
    s.wait_line(rf"old worker {p1} died", start=mark)
    (gen, name, signalled_at), *_ = records(record)
    assert (gen, name) == (1, "TERM")
    # Signalled no sooner than --interval (start check) + the delay after the HUP.
    assert signalled_at - hup_at >= 0.2 + 1.0, signalled_at - hup_at
    wait_until(lambda: read_status(status) == [(2, p2)], what="status 2 only")
    assert http_get(port) == f"gen=2 pid={p2}\n"


# ---- t/06-autorestart.t --------------------------------------------------------


@pytest.mark.parametrize("how", ["option", "env", "envdir"])
def test_auto_restart(run: Harness, how: str) -> None:
    port = free_port()
    status = run.tmp / "status"
    record = run.tmp / "signals"
    settings = {"ENABLE_AUTO_RESTART": "1", "AUTO_RESTART_INTERVAL": "1", "KILL_OLD_DELAY": "0.3"}
    opts: list[str] = []
    env = None
    if how == "option":
        opts = ["--enable-auto-restart", "--auto-restart-interval=1", "--kill-old-delay=0.3"]
    elif how == "env":
        env = settings
    else:  # the original reads these from the envdir too
        opts = [f"--envdir={run.envdir(**settings)}"]
    started = time.monotonic()
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--status-file={status}", "--interval=0.2", *opts,
        "--", PY, SIG_APP, f"--record={record}", env=env,
    )
    p1 = first_worker(s)
    serve_body(lambda: http_get(port), f"gen=1 pid={p1}\n")

    # No HUP: the starter restarts by itself once generation 1 is 1 s old.
    s.wait_line(r"autorestart triggered \(interval=1\)")
    assert time.monotonic() - started >= 0.2 + 1.0
    p2 = int(s.wait_line(r"gen=2 pid=(\d+) new worker \d+ is now running").group(1))
    s.wait_line(r"sleeping 0.3 secs before killing old workers")
    s.wait_line(rf"old worker {p1} died")
    (gen, name, signalled_at), *_ = records(record)
    assert (gen, name) == (1, "TERM")
    assert signalled_at - started >= 0.2 + 1.0 + 0.2 + 0.3
    wait_until(lambda: read_status(status) == [(2, p2)], what="status 2 only")
    assert http_get(port) == f"gen=2 pid={p2}\n"


def test_auto_restart_forced_when_old_generations_linger(run: Harness) -> None:
    """Older than the interval: restart only if no old one lingers; older than twice: anyway."""
    port = free_port()
    status = run.tmp / "status"
    release = run.tmp / "release"
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--status-file={status}", "--interval=0.2",
        "--enable-auto-restart", "--auto-restart-interval=0.5", "--kill-old-delay=0",
        "--", PY, SIG_APP, f"--hold-until={release}",
    )
    p1 = first_worker(s)
    s.wait_line(r"autorestart triggered \(interval=0.5\)")
    m = s.wait_line(r"^(\S+) .*gen=2 pid=(\d+) new worker \d+ is now running")
    started2, p2 = log_time(m.group(1)), int(m.group(2))
    s.wait_line(r"killing old workers")
    # Generation 1 was signalled but lingers: no plain restart one interval on,
    # a forced one after two.
    forced = log_time(s.wait_line(r"^(\S+) .*autorestart triggered \(forced, interval=0.5\)")
                      .group(1))
    # The stamps are taken when each line is written, not when the core decided (a
    # loaded machine can delay either write), so allow slack: half an interval still
    # tells a forced restart (2 intervals on) from a plain one (1 interval on).
    assert forced - started2 >= 1.5 * 0.5
    assert len(re.findall(r"autorestart triggered \(interval=0.5\)", s.output)) == 1
    p3 = int(s.wait_line(r"gen=3 pid=(\d+) new worker \d+ is now running").group(1))
    release.touch()
    wait_until(lambda: read_status(status) == [(3, p3)], what="status 3 only")
    assert gone(p1)
    assert gone(p2)


# ---- the current generation dies on its own --------------------------------------


@pytest.mark.parametrize("perl", IMPLS)
def test_worker_dies_unexpectedly(run: Harness, perl: bool) -> None:
    port = free_port()
    status = run.tmp / "status"
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--status-file={status}", interval(perl),
        "--", PY, APP, perl=perl,
    )
    p1 = first_worker(s)
    serve_body(lambda: http_get(port), f"gen=1 pid={p1}\n")
    mark = s.mark()
    os.kill(p1, signal.SIGKILL)
    s.wait_line(rf"worker {p1} died unexpectedly with status:9\b.*, restarting", start=mark)
    p2 = int(s.wait_line(r"starting new worker (\d+)", start=mark).group(1))
    serve_body(lambda: http_get(port), f"gen=2 pid={p2}\n")
    wait_until(lambda: read_status(status) == [(2, p2)], what="status 2 only")


# ---- t/07-envdir.t -------------------------------------------------------------


@pytest.mark.parametrize("how", ["option", "env"])
def test_envdir_reload(run: Harness, how: str) -> None:
    port = free_port()
    status = run.tmp / "status"
    envdir = run.tmp / "env"
    envdir.mkdir()
    (envdir / "FOO").write_text("foo-value1\nonly the first line counts\n")
    opts = [f"--envdir={envdir}"] if how == "option" else []
    env = {"ENVDIR": str(envdir)} if how == "env" else None
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--status-file={status}", "--interval=0.2", *opts,
        "--", PY, APP, env=env,
    )
    p1 = first_worker(s)
    serve_body(lambda: http_get(port), f"gen=1 pid={p1}\n")
    assert http_get(port, "/env/FOO") == "foo-value1\n"

    (envdir / "FOO").write_text("foo-value2")
    p2 = hup_swap(s, status, lambda: http_get(port), 1, p1)
    assert http_get(port, "/env/FOO") == "foo-value2\n"

    # The original keeps the first value of a removed file; the variable must go.
    (envdir / "FOO").unlink()
    hup_swap(s, status, lambda: http_get(port), 2, p2)
    assert http_get(port, "/env/FOO") == "<unset>\n"


# ---- t/03-starter-unix.t: --path -----------------------------------------------


def test_unix_socket_path(run: Harness) -> None:
    status = run.tmp / "status"
    sock_path = run.tmp / "app.sock"
    # A stale socket file (nobody listens on it) is replaced.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(sock_path))
    assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)

    s = run.start(
        f"--path={sock_path}", f"--status-file={status}", "--interval=0.2", "--", PY, APP
    )
    p1 = first_worker(s)
    serve_body(lambda: http_get_unix(str(sock_path)), f"gen=1 pid={p1}\n")
    assert re.fullmatch(
        rf"{re.escape(str(sock_path))}=\d+\n",
        http_get_unix_path(str(sock_path), "/env/SERVER_STARTER_PORT"),
    )
    # Created honouring the umask (the original makes it world-writable).
    mode = stat.S_IMODE(os.stat(sock_path).st_mode)
    assert mode & umask_now() == 0, oct(mode)

    # A second starter refuses to steal the socket of a live one.
    other = run.run(f"--path={sock_path}", "--interval=0.2", "--", PY, APP)
    assert other.returncode == 1, other
    assert "live server" in other.stderr
    assert http_get_unix(str(sock_path)) == f"gen=1 pid={p1}\n"

    hup_swap(s, status, lambda: http_get_unix(str(sock_path)), 1, p1)

    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    assert not sock_path.exists()


# ---- t/04-starter-dir.t: --dir -------------------------------------------------


@pytest.mark.parametrize("perl", IMPLS)
def test_dir(run: Harness, perl: bool) -> None:
    port = free_port()
    workdir = run.tmp / "releases" / "current"
    workdir.mkdir(parents=True)
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--dir={workdir}", interval(perl), "--", PY, APP, perl=perl
    )
    p1 = first_worker(s)
    serve_body(lambda: http_get(port), f"gen=1 pid={p1}\n")
    assert http_get(port, "/cwd") == f"{os.path.realpath(workdir)}\n"


# ---- t/10-bindaddr.t -----------------------------------------------------------


@pytest.mark.parametrize("perl", IMPLS)
def test_bind_address_v4(run: Harness, perl: bool) -> None:
    port = free_port()
    s = run.start(f"--port=127.0.0.1:{port}", interval(perl), "--", PY, APP, perl=perl)
    p1 = first_worker(s)
    serve_body(lambda: http_get(port), f"gen=1 pid={p1}\n")
    assert re.fullmatch(rf"127\.0\.0\.1:{port}=\d+\n", http_get(port, "/env/SERVER_STARTER_PORT"))
    assert refused("127.0.0.2", port)  # bound to that one address only
    if has_ipv6_loopback():
        assert refused("::1", port)


@pytest.mark.skipif(
    not has_ipv6_loopback(), reason="this machine has no IPv6 loopback (cannot bind ::1)"
)
@pytest.mark.parametrize("perl", IMPLS)
@pytest.mark.parametrize("host", ["::1", "::"])
def test_bind_address_v6(run: Harness, host: str, perl: bool) -> None:
    port = free_port(host="::1")
    s = run.start(f"--port=[{host}]:{port}", interval(perl), "--", PY, APP, perl=perl)
    p1 = first_worker(s)
    serve_body(lambda: http_get(port, host="::1"), f"gen=1 pid={p1}\n")
    assert re.fullmatch(
        rf"\[{re.escape(host)}\]:{port}=\d+\n",
        http_get(port, "/env/SERVER_STARTER_PORT", host="::1"),
    )
    # IPV6_V6ONLY: even [::] takes no IPv4 connection.
    assert refused("127.0.0.1", port)


# ---- t/11-specified-fd.t: PORT=FD ----------------------------------------------


@pytest.mark.parametrize("perl", IMPLS)
@pytest.mark.parametrize("fd", [5, 0])
def test_port_on_given_fd(run: Harness, fd: int, perl: bool) -> None:
    port = free_port()
    s = run.start(f"--port=127.0.0.1:{port}={fd}", interval(perl), "--", PY, APP, perl=perl)
    p1 = first_worker(s)
    serve_body(lambda: http_get(port), f"gen=1 pid={p1}\n")
    assert http_get(port, "/env/SERVER_STARTER_PORT") == f"127.0.0.1:{port}={fd}\n"
    assert os.readlink(f"/proc/{p1}/fd/{fd}").startswith("socket:")


# ---- what a generation inherits ----------------------------------------------------


def test_only_the_sockets_are_inherited(run: Harness) -> None:
    """The listening fds, stdin/out/err, and nothing else of the starter's.

    (Ours only: Perl's start_server leaks an extra socket on fd 3 to its workers.)
    """
    port = free_port()
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--path={run.tmp / 'app.sock'}",
        f"--pid-file={run.tmp / 'pid'}", f"--status-file={run.tmp / 'status'}",
        "--interval=0.2", "--", PY, APP,
    )
    p1 = first_worker(s)
    serve_body(lambda: http_get(port), f"gen=1 pid={p1}\n")
    port_env = http_get(port, "/env/SERVER_STARTER_PORT").strip()
    listening = {int(item.rsplit("=", 1)[1]) for item in port_env.split(";")}

    def extra() -> dict[int, str]:
        fds = {int(fd) for fd in os.listdir(f"/proc/{p1}/fd")}
        return {fd: os.readlink(f"/proc/{p1}/fd/{fd}") for fd in fds - {0, 1, 2} - listening}

    # (app.py keeps only its first socket and lets the others close; the connection
    # it just answered may take a moment to be closed by its handler thread, while
    # anything inherited from the starter would stay for good)
    try:
        wait_until(lambda: not extra(), timeout=5, what="only the inherited fds")
    except AssertionError:
        raise AssertionError(f"fds beyond the listening ones: {extra()}") from None


# ---- t/14-without-port.t -------------------------------------------------------


@pytest.mark.parametrize("perl", IMPLS)
def test_without_port(run: Harness, perl: bool) -> None:
    out = run.tmp / "env.json"
    s = run.start(interval(perl), "--", PY, ENV_DUMP, str(out), perl=perl)
    first_worker(s)
    info: dict[str, Any] = wait_until(
        lambda: out.exists() and json.loads(out.read_text()), what="env dump"
    )
    assert info["present"] is True
    assert info["value"] == ""
    assert info["server_ports"] == {}
    assert info["sockets"] == []
    assert info["generation"] == "1"
    s.signal(signal.SIGTERM)
    assert s.wait() == 0


# ---- t/15-udp.t ----------------------------------------------------------------


@pytest.mark.parametrize("perl", IMPLS)
def test_udp(run: Harness, perl: bool) -> None:
    port = free_port(socket.SOCK_DGRAM)
    s = run.start(f"--port=127.0.0.1:u{port}", interval(perl), "--", PY, UDP_ECHO, perl=perl)
    p1 = first_worker(s)
    reply = udp_ask(port, b"hello")
    # The key has no 'u': the original drops it.
    assert re.fullmatch(rf"gen=1 pid={p1} port=127\.0\.0\.1:{port}=\d+ data=hello", reply), reply

    mark = s.mark()
    s.signal(signal.SIGHUP)
    p2 = int(s.wait_line(r"starting new worker (\d+)", start=mark).group(1))
    s.wait_line(rf"old worker {p1} died", start=mark)
    assert udp_ask(port, b"again").startswith(f"gen=2 pid={p2} ")


# ---- t/12-stop.t, t/13-unix-daemonize.t: --daemonize, then --stop ---------------


@pytest.mark.parametrize("on_fd0", [False, True], ids=["stdin-devnull", "socket-on-fd0"])
def test_daemonize_then_stop(run: Harness, on_fd0: bool) -> None:
    port = free_port()
    log = run.tmp / "log"
    pid_file = run.tmp / "pid"
    sock_path = run.tmp / "d.sock"
    with daemon_guard(pid_file):
        began = time.monotonic()
        fg = run.run(
            "--daemonize", f"--log-file={log}", f"--pid-file={pid_file}",
            f"--port=127.0.0.1:{port}{'=0' if on_fd0 else ''}", f"--path={sock_path}",
            "--interval=0.2", "--", PY, APP, timeout=20,
        )
        # The foreground command returns at once: the starter detached.
        assert fg.returncode == 0, fg
        assert time.monotonic() - began < 5
        daemon = wait_until(lambda: pid_file.read_text().endswith("\n")
                            and int(pid_file.read_text()), what="the pid file")
        assert not gone(daemon)
        assert os.getsid(daemon) != os.getsid(0)  # its own session
        # stdin is /dev/null, unless a socket was put on fd 0.
        stdin = os.readlink(f"/proc/{daemon}/fd/0")
        assert stdin.startswith("socket:") if on_fd0 else stdin == "/dev/null", stdin
        p1 = int(wait_until(lambda: re.search(r"gen=1 pid=(\d+) new worker \d+ is now running",
                                              log.read_text()), what="gen 1 in the log").group(1))
        assert http_get(port) == f"gen=1 pid={p1}\n"
        # (app.py serves only the first socket; t/13 checks the file is there)
        assert stat.S_ISSOCK(os.lstat(sock_path).st_mode)

        stop = run.run("--stop", f"--pid-file={pid_file}")
        assert stop.returncode == 0, stop
        # It returns once the starter is done: workers reaped, files removed.
        assert gone(p1)
        assert not pid_file.exists()
        assert not sock_path.exists()
        wait_until(lambda: gone(daemon), timeout=5, what="the daemon to exit")
    text = log.read_text()
    assert "received TERM" in text
    assert "exiting" in text


# ---- --restart ------------------------------------------------------------------


def test_restart_client_waits_for_the_new_generation(run: Harness) -> None:
    port = free_port()
    status = run.tmp / "status"
    pid_file = run.tmp / "pid"
    release = run.tmp / "release"
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--status-file={status}", f"--pid-file={pid_file}",
        "--interval=0.2", "--", PY, SIG_APP, f"--hold-until={release}",
    )
    p1 = first_worker(s)
    serve_body(lambda: http_get(port), f"gen=1 pid={p1}\n")

    client = run.start("--restart", f"--pid-file={pid_file}", f"--status-file={status}")
    # Generation 2 started, generation 1 lingers: the client keeps waiting.
    wait_until(lambda: [g for g, _ in read_status(status)] == [1, 2], what="status 1 and 2")
    assert client.proc.poll() is None, client.output
    release.touch()
    assert client.wait() == 0, client.output
    # It returned only once the new generation alone is listed.
    p2 = int(s.wait_line(r"gen=2 pid=(\d+) new worker \d+ is now running").group(1))
    assert read_status(status) == [(2, p2)]
    assert s.wait_line(rf"old worker {p1} died")
    assert http_get(port) == f"gen=2 pid={p2}\n"


def test_restart_client_reports_a_failed_start(run: Harness) -> None:
    port = free_port()
    status = run.tmp / "status"
    pid_file = run.tmp / "pid"
    broken = run.tmp / "broken-build"
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--status-file={status}", f"--pid-file={pid_file}",
        "--interval=1", "--", PY, APP, f"--fail-if={broken}",
    )
    p1 = first_worker(s)
    serve_body(lambda: http_get(port), f"gen=1 pid={p1}\n")

    broken.touch()
    began = time.monotonic()
    r = run.run("--restart", f"--pid-file={pid_file}", f"--status-file={status}",
                "--timeout=20")
    # The original waits forever; ours fails at once, clearly, non-zero.
    assert r.returncode == 1, r
    assert "failed to start" in r.stderr
    assert time.monotonic() - began < 10
    assert http_get(port) == f"gen=1 pid={p1}\n"
    assert read_status(status) == [(1, p1)]

    # The attempts go on by themselves: fixed build, new generation, no HUP needed.
    broken.unlink()
    s.wait_line(rf"old worker {p1} died")
    (gen, pid), = wait_until(lambda: len(read_status(status)) == 1
                             and read_status(status)[0][0] > 1 and read_status(status))
    assert gen_of(http_get(port)) == gen
    assert http_get(port) == f"gen={gen} pid={pid}\n"
