"""Drop-in compatibility with Perl's Server::Starter 0.35, both ways.

A Perl server written against ``Server::Starter::server_ports()`` runs and
hot-restarts under our starter; our ``listen_from_env()`` app runs and
hot-restarts under the Perl starter; each implementation's ``--restart`` and
``--stop`` clients drive the other's starter through the shared file formats
(pid file ``PID\\n``, status file ``GEN:PID`` lines). Perl runs use
``--interval=0``: its interval is whole seconds and it sleeps through it.
"""

from __future__ import annotations

import json
import re
import signal
import socket
from pathlib import Path
from typing import Any

import pytest
from support import (
    APP,
    APPS,
    PY,
    Harness,
    daemon_guard,
    first_worker,
    free_port,
    gone,
    http_get,
    read_status,
    serve_body,
    wait_until,
)

PERL = "/usr/bin/perl"
PERL_WORKER = str(APPS / "perl_worker.pl")
ENV_DUMP = str(APPS / "env_dump.py")





def read_pid_file(path: Path) -> int:
    """The pid once the whole line is written (Perl truncates, locks, then writes)."""
    return wait_until(
        lambda: path.read_text().endswith("\n") and int(path.read_text()), what=f"pid in {path}"
    )



# ---- (a) a Perl server under our starter --------------------------------------------


def test_perl_worker_hot_restarts_under_our_starter(run: Harness) -> None:
    port = free_port()
    status = run.tmp / "status"
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--status-file={status}", "--interval=0.2",
        "--", PERL, PERL_WORKER,
    )
    p1 = first_worker(s)
    serve_body(lambda: http_get(port), f"gen=1 pid={p1}\n")
    assert read_status(status) == [(1, p1)]
    # server_ports() of the original parses what we export.
    assert re.fullmatch(rf"127\.0\.0\.1:{port}=\d+\n", http_get(port, "/env/SERVER_STARTER_PORT"))

    mark = s.mark()
    s.signal(signal.SIGHUP)
    p2 = int(s.wait_line(r"gen=2 pid=(\d+) new worker \d+ is now running", start=mark).group(1))
    s.wait_line(rf"gen=1 pid={p1} old worker {p1} died, status:0 ", start=mark)
    wait_until(lambda: read_status(status) == [(2, p2)], what="status 2 only")
    assert gone(p1)
    assert http_get(port) == f"gen=2 pid={p2}\n"

    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    assert gone(p2)
    assert not status.exists()


# ---- (b) our app under the Perl starter ----------------------------------------------


def test_python_app_hot_restarts_under_perl_starter(run: Harness) -> None:
    port = free_port()
    status = run.tmp / "status"
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--status-file={status}", "--interval=0",
        "--", PY, APP, perl=True,
    )
    p1 = first_worker(s)
    serve_body(lambda: http_get(port), f"gen=1 pid={p1}\n")
    assert read_status(status) == [(1, p1)]

    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(r"^received HUP, spawning a new worker$", start=mark)
    p2 = int(s.wait_line(r"^starting new worker (\d+)$", start=mark).group(1))
    s.wait_line(rf"^new worker is now running, sending TERM to old workers:{p1}$", start=mark)
    s.wait_line(rf"^old worker {p1} died, status:0$", start=mark)
    wait_until(lambda: read_status(status) == [(2, p2)], what="status 2 only")
    serve_body(lambda: http_get(port), f"gen=2 pid={p2}\n")

    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    assert gone(p2)
    assert not status.exists()


@pytest.mark.parametrize("perl", [False, True], ids=["ours", "perl"])
def test_environment_protocol_parity(run: Harness, perl: bool) -> None:
    """Same options, same SERVER_STARTER_PORT keys in the same order, same socket kinds."""
    tcp, udp = free_port(), free_port(socket.SOCK_DGRAM)
    sock_path = run.tmp / "app.sock"
    out = run.tmp / "env.json"
    # --path first on the command line: ports still come first, then paths.
    s = run.start(
        f"--path={sock_path}", f"--port=127.0.0.1:{tcp}", f"--port=127.0.0.1:u{udp}",
        "--interval=0" if perl else "--interval=0.2", "--", PY, ENV_DUMP, str(out), perl=perl,
    )
    first_worker(s)
    info: dict[str, Any] = wait_until(
        lambda: out.exists() and json.loads(out.read_text()), what="env dump"
    )
    keys = [item.rsplit("=", 1)[0] for item in info["value"].split(";")]
    assert keys == [f"127.0.0.1:{tcp}", f"127.0.0.1:{udp}", str(sock_path)]
    assert list(info["server_ports"]) == keys
    assert info["sockets"] == [
        ["AF_INET", "SOCK_STREAM"], ["AF_INET", "SOCK_DGRAM"], ["AF_UNIX", "SOCK_STREAM"],
    ]
    assert info["generation"] == "1"
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    assert not sock_path.exists()


@pytest.mark.parametrize("perl", [False, True], ids=["ours", "perl"])
def test_port_zero_keeps_its_spec_in_the_environment(run: Harness, perl: bool) -> None:
    """--port=127.0.0.1:0: the kernel chooses the port; SERVER_STARTER_PORT names
    the spec, as the original's does."""
    out = run.tmp / "env.json"
    s = run.start("--port=127.0.0.1:0", "--interval=0" if perl else "--interval=0.2",
                  "--", PY, ENV_DUMP, str(out), perl=perl)
    first_worker(s)
    info: dict[str, Any] = wait_until(
        lambda: out.exists() and json.loads(out.read_text()), what="env dump"
    )
    assert re.fullmatch(r"127\.0\.0\.1:0=\d+", info["value"]), info
    s.signal(signal.SIGTERM)
    assert s.wait() == 0


def test_port_zero_logs_the_port_the_kernel_chose(run: Harness) -> None:
    s = run.start("--port=127.0.0.1:0", "--interval=0.2", "--", PY, APP)
    m = s.wait_line(r"listening on 127\.0\.0\.1:0 \(fd 3; port chosen by the kernel: "
                    r"127\.0\.0\.1:(\d+)\)$")
    port = int(m.group(1))
    assert port != 0
    first_worker(s)
    assert http_get(port).startswith("gen=1 ")
    assert http_get(port, "/env/SERVER_STARTER_PORT") == "127.0.0.1:0=3\n"


# ---- (c) each implementation's clients against the other's starter -------------------


def test_our_clients_drive_a_perl_starter(run: Harness) -> None:
    port = free_port()
    status = run.tmp / "status"
    pid_file = run.tmp / "pid"
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--status-file={status}", f"--pid-file={pid_file}",
        "--interval=0", "--", PY, APP, perl=True,
    )
    p1 = first_worker(s)
    serve_body(lambda: http_get(port), f"gen=1 pid={p1}\n")
    wait_until(lambda: read_status(status) == [(1, p1)], what="status 1")
    assert read_pid_file(pid_file) == s.pid

    shown = run.run("--status", f"--pid-file={pid_file}", f"--status-file={status}")
    assert shown.returncode == 0, shown
    assert re.search(rf"^1\s+0\s+{p1}\s", shown.stdout, re.M), shown.stdout

    restart = run.run("--restart", f"--pid-file={pid_file}", f"--status-file={status}",
                      "--timeout=20")
    assert restart.returncode == 0, restart
    # Returned once the new generation alone is listed.
    ((gen, p2),) = read_status(status)
    assert gen == 2
    assert gone(p1)
    assert http_get(port) == f"gen=2 pid={p2}\n"

    stop = run.run("--stop", f"--pid-file={pid_file}", "--timeout=20")
    assert stop.returncode == 0, stop
    assert not pid_file.exists()
    assert gone(p2)
    assert s.wait() == 0
    assert not status.exists()


def test_perl_clients_drive_our_starter(run: Harness) -> None:
    port = free_port()
    status = run.tmp / "status"
    pid_file = run.tmp / "pid"
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--status-file={status}", f"--pid-file={pid_file}",
        "--interval=0.2", "--", PY, APP,
    )
    p1 = first_worker(s)
    serve_body(lambda: http_get(port), f"gen=1 pid={p1}\n")
    assert read_status(status) == [(1, p1)]
    assert read_pid_file(pid_file) == s.pid

    restart = run.run("--restart", f"--pid-file={pid_file}", f"--status-file={status}",
                      perl=True)
    assert restart.returncode == 0, restart
    ((gen, p2),) = read_status(status)
    assert gen == 2
    assert http_get(port) == f"gen=2 pid={p2}\n"
    assert s.wait_line(rf"old worker {p1} died")

    stop = run.run("--stop", f"--pid-file={pid_file}", perl=True)
    assert stop.returncode == 0, stop
    assert f"stopping now (pid:{s.pid})" in stop.stderr
    # Perl's stop_server returns when our pid-file lock is released.
    assert not pid_file.exists()
    assert gone(p2)
    assert s.wait() == 0
    assert not status.exists()


@pytest.mark.parametrize(
    "starter_perl", [pytest.param(True, id="perl-daemon-our-stop"),
                     pytest.param(False, id="our-daemon-perl-stop")]
)
def test_daemonized_starter_stopped_by_the_other_client(run: Harness, starter_perl: bool) -> None:
    port = free_port()
    log = run.tmp / "log"
    pid_file = run.tmp / "pid"
    with daemon_guard(pid_file):
        fg = run.run(
            "--daemonize", f"--log-file={log}", f"--pid-file={pid_file}",
            f"--port=127.0.0.1:{port}", "--interval=0" if starter_perl else "--interval=0.2",
            "--", PY, APP, perl=starter_perl, timeout=20,
        )
        assert fg.returncode == 0, fg
        daemon = read_pid_file(pid_file)
        assert not gone(daemon)
        p1 = int(wait_until(lambda: re.search(r"starting new worker (\d+)", log.read_text()),
                            what="a worker in the log").group(1))
        serve_body(lambda: http_get(port), f"gen=1 pid={p1}\n")

        stop = run.run("--stop", f"--pid-file={pid_file}", perl=not starter_perl, timeout=20)
        assert stop.returncode == 0, stop
        assert not pid_file.exists()
        assert gone(p1)
        wait_until(lambda: gone(daemon), timeout=5, what="the daemon to exit")
    assert "exiting" in log.read_text()
