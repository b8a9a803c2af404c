"""systemd both ways, with real processes and real sockets.

In: ``systemd-socket-activate -l ADDR ... -- python -m start_server ...``
binds, waits for the first connection, then execs start_server with
``LISTEN_FDS``/``LISTEN_PID`` (its own pid, which exec keeps). start_server
adopts those sockets instead of binding: matched to ``--port``/``--path`` by
address, or all of them without any spec; a mismatch either way is one line
and exit 1 with nothing left behind.

Out: with ``--listen-fds`` each generation gets its sockets on fds 3, 4, ...
with ``LISTEN_FDS``, ``LISTEN_PID`` (its own) and ``LISTEN_FDNAMES``, so
gunicorn without ``--bind`` serves and hot-restarts under start_server.

And the units in contrib/systemd pass ``systemd-analyze verify`` without a
single complaint. (Debian package ``systemd`` provides both tools.)
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
from pathlib import Path
from typing import Any, Optional

import pytest
from support import (
    APP,
    APPS,
    PY,
    TOKEN_VAR,
    ClientLoad,
    Harness,
    Proc,
    free_port,
    http_get,
    http_get_unix,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
HELLO_APP = str(ROOT / "examples" / "hello_app.py")
SD_APP = str(APPS / "sd_app.py")
SERVERS = APPS / "servers"
UNITS = ROOT / "contrib" / "systemd"
ACTIVATE = shutil.which("systemd-socket-activate") or "systemd-socket-activate"
ANALYZE = shutil.which("systemd-analyze") or "systemd-analyze"
FIRST = 30.0  # deadline of the first request: it waits for start_server and the app


def activate(
    run: Harness,
    listens: list[str],
    starter_args: list[str],
    *,
    fdnames: Optional[str] = None,
    datagram: bool = False,
    cwd: Optional[Path] = None,
    wrapper: Optional[list[str]] = None,
) -> Proc:
    """systemd-socket-activate holding ``listens``, then exec'ing our starter."""
    argv = [ACTIVATE]
    # It passes on only the variables named with -E: the harness's token must
    # be one, or the check that nothing is left running would be blind.
    for name, value in run.env().items():
        if name in (TOKEN_VAR, "PYTHONUNBUFFERED"):
            argv += ["-E", f"{name}={value}"]
    for address in listens:
        argv += ["-l", address]
    if fdnames is not None:
        argv.append(f"--fdname={fdnames}")
    if datagram:
        argv.append("--datagram")
    starter = [PY, "-m", "start_server", *starter_args]
    argv += ["--", *(wrapper or []), *starter]
    proc = Proc(argv, env=run.env(), cwd=str(cwd or run.tmp))
    run.procs.append(proc)
    # "Listening on ADDR as FD." for each: then a connection makes it exec.
    wait_until(lambda: proc.output.count("Listening on ") >= len(listens), 15, "the sockets")
    return proc


def get(port: int, path: str = "/", timeout: float = FIRST) -> str:
    """One request; the first one also triggers the exec (so a long deadline)."""
    return http_get(port, path, timeout=timeout)


def get_json(port: int) -> dict[str, Any]:
    data = json.loads(get(port))
    assert isinstance(data, dict)
    return data


def knock(address: str, datagram: bool = False) -> None:
    """Make systemd-socket-activate exec the starter, without waiting for an answer."""
    target: Any = address
    family = socket.AF_UNIX
    if not address.startswith("/"):
        host, _, port = address.rpartition(":")
        family, target = socket.AF_INET, (host or "127.0.0.1", int(port))
    with socket.socket(family, socket.SOCK_DGRAM if datagram else socket.SOCK_STREAM) as s:
        if datagram:
            s.sendto(b"x", target)
        else:
            s.connect(target)


# ---- socket activation in ---------------------------------------------------


def test_adopts_passed_sockets_by_address_and_never_unlinks_them(run: Harness) -> None:
    p1, p2 = free_port(), free_port()
    sock_path = str(run.tmp / "app.sock")
    pid_file, status_file = run.tmp / "pid", run.tmp / "status"
    # systemd's order differs from the options': matching is by address.
    s = activate(
        run,
        [sock_path, f"{p2}", f"127.0.0.1:{p1}"],
        [f"--port=127.0.0.1:{p1}", f"--port={p2}", f"--path={sock_path}",
         f"--pid-file={pid_file}", f"--status-file={status_file}", "--", PY, APP],
        fdnames="local:wild:web",
    )
    assert get(p1).startswith("gen=1 ")
    s.wait_line(rf"listening on 127\.0\.0\.1:{p1} \(fd 5\) adopted from systemd \(name web\)$")
    s.wait_line(rf"listening on {p2} \(fd 4\) adopted from systemd \(name wild\)$")
    s.wait_line(rf"listening on {re.escape(sock_path)} \(fd 3\) adopted from systemd "
                r"\(name local\)$")
    assert get(p1, "/env/SERVER_STARTER_PORT").strip() == (
        f"127.0.0.1:{p1}=5;{p2}=4;{sock_path}=3"
    )
    # The generation inherits no stale LISTEN_* (nor does the next one).
    for name in ("LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES"):
        assert get(p1, f"/env/{name}").strip() == "<unset>"
    assert s.pid in run.leftovers()  # exec'ed start_server: the leak check sees it
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(r"gen=2 .*is now running", 30, start=mark)
    wait_until(lambda: get(p1).startswith("gen=2 "), 30, "generation 2 to answer")
    assert get(p1, "/env/LISTEN_PID").strip() == "<unset>"
    assert s.stop() == 0
    # systemd's socket file is systemd's: we never unlink it. Ours are gone.
    assert Path(sock_path).exists()
    assert not pid_file.exists() and not status_file.exists()


def test_without_specs_adopts_every_passed_socket_keyed_by_address(run: Harness) -> None:
    p1, p6 = free_port(), free_port(host="::1")
    sock_path = str(run.tmp / "all.sock")
    s = activate(run, [f"127.0.0.1:{p1}", sock_path, f"[::1]:{p6}"], ["--", PY, APP])
    assert get(p1).startswith("gen=1 ")
    assert get(p1, "/env/SERVER_STARTER_PORT").strip() == (
        f"127.0.0.1:{p1}=3;[::1]:{p6}=5;{sock_path}=4"
    )
    s.wait_line(rf"listening on 127\.0\.0\.1:{p1} \(fd 3\) adopted from systemd$")
    s.wait_line(rf"listening on \[::1\]:{p6} \(fd 5\) adopted from systemd$")
    s.wait_line(rf"listening on {re.escape(sock_path)} \(fd 4\) adopted from systemd$")
    assert s.stop() == 0
    assert Path(sock_path).exists()


@pytest.mark.timeout(120)
def test_restart_under_load_on_adopted_socket_fails_no_request(run: Harness) -> None:
    port = free_port()
    s = activate(run, [f"127.0.0.1:{port}"], [f"--port=127.0.0.1:{port}", "--", PY, HELLO_APP])
    assert get(port).startswith("hello from generation 1 ")
    s.wait_line(r"gen=1 .*is now running", 30)

    with ClientLoad(port) as load:
        for n in range(2, 6):  # four restarts, each waited for, under load
            mark = s.mark()
            s.signal(signal.SIGHUP)
            s.wait_line(rf"gen={n} .*is now running", 60, start=mark)
            load.wait_answered_by(n, 60)
    load.check()
    assert set(range(1, 6)) <= load.generations()
    wait_until(lambda: s.output.count("old worker") >= 4, 60, "old generations to exit")
    assert s.stop() == 0


MISMATCHES = {
    # name: (systemd's sockets, our options, datagram, the stderr line)
    "spec-not-passed": (
        ["127.0.0.1:{p1}"], ["--port=127.0.0.1:{p2}"], False,
        "start_server: --port=127.0.0.1:{p2}: not among the sockets systemd passed "
        "(LISTEN_FDS: 127.0.0.1:{p1} (fd 3)); make the socket unit and the options agree",
    ),
    "passed-not-specified": (
        ["127.0.0.1:{p1}", "127.0.0.1:{p2}"], ["--port=127.0.0.1:{p1}"], False,
        "start_server: LISTEN_FDS: fd 4 (127.0.0.1:{p2}) matches no --port or --path "
        "(add --port=127.0.0.1:{p2}, or remove it from the socket unit)",
    ),
    "plain-port-is-the-wildcard-only": (
        ["127.0.0.1:{p1}"], ["--port={p1}"], False,
        "start_server: --port={p1}: not among the sockets systemd passed "
        "(LISTEN_FDS: 127.0.0.1:{p1} (fd 3)); make the socket unit and the options agree",
    ),
    "wildcard-passed-host-asked": (
        ["{p1}"], ["--port=127.0.0.1:{p1}"], False,
        "start_server: --port=127.0.0.1:{p1}: not among the sockets systemd passed "
        "(LISTEN_FDS: [::]:{p1} (fd 3)); make the socket unit and the options agree",
    ),
    "udp-passed-tcp-asked": (
        ["127.0.0.1:{p1}"], ["--port=127.0.0.1:{p1}"], True,
        "start_server: --port=127.0.0.1:{p1}: not among the sockets systemd passed "
        "(LISTEN_FDS: 127.0.0.1:u{p1} (fd 3)); make the socket unit and the options agree",
    ),
    "other-unix-path": (
        ["{tmp}/a.sock"], ["--path={tmp}/b.sock"], False,
        "start_server: --path={tmp}/b.sock: not among the sockets systemd passed "
        "(LISTEN_FDS: {tmp}/a.sock (fd 3)); make the socket unit and the options agree",
    ),
    "extra-wildcard-suggests-plain-port": (
        ["127.0.0.1:{p1}", "{p2}"], ["--port=127.0.0.1:{p1}"], False,
        "start_server: LISTEN_FDS: fd 4 ([::]:{p2}) matches no --port or --path "
        "(add --port={p2}, or remove it from the socket unit)",
    ),
}


@pytest.mark.parametrize("case", sorted(MISMATCHES))
def test_mismatch_is_one_line_exit_1_and_nothing_left(run: Harness, case: str) -> None:
    listens, options, datagram, line = MISMATCHES[case]
    values = {"p1": free_port(), "p2": free_port(), "tmp": str(run.tmp)}
    listens = [a.format(**values) for a in listens]
    options = [o.format(**values) for o in options]
    pid_file, status_file = run.tmp / "pid", run.tmp / "status"
    before = set(os.listdir(run.tmp))
    s = activate(
        run, listens,
        [*options, f"--pid-file={pid_file}", f"--status-file={status_file}", "--", PY, APP],
        datagram=datagram,
    )
    knock(listens[0] if listens[0].startswith("/") else f":{listens[0].split(':')[-1]}",
          datagram)
    assert s.wait(30) == 1
    lines = s.output.splitlines()
    execing = next(i for i, x in enumerate(lines) if x.startswith("Execing "))
    assert lines[execing + 1 :] == [line.format(**values)]
    # No pid or status file; systemd's own unix socket files stay (its, not ours).
    sockets = {os.path.basename(a) for a in listens if a.startswith("/")}
    assert set(os.listdir(run.tmp)) - before == sockets
    assert not run.leftovers()


def test_listen_pid_of_another_process_is_ignored_and_we_bind(run: Harness) -> None:
    passed, ours = free_port(), free_port()
    # A shell that forks (the trailing ':' keeps it from exec'ing) leaves
    # LISTEN_PID naming the shell, not start_server.
    s = activate(
        run, [f"127.0.0.1:{passed}"],
        [f"--port=127.0.0.1:{ours}", "--", PY, APP],
        wrapper=["sh", "-c", 'PATH=/usr/bin:/bin "$0" "$@"; :'],
    )
    knock(f"127.0.0.1:{passed}")
    m = s.wait_line(r"start_server\[(\d+)\] ignoring LISTEN_FDS=1: LISTEN_PID=(\d+) is not our "
                    r"pid (\d+) \(started through a wrapper that did not exec\?\); binding the "
                    r"sockets ourselves$", FIRST)
    starter = int(m.group(1))
    assert m.group(3) == str(starter) and m.group(2) != str(starter)
    s.wait_line(rf"listening on 127\.0\.0\.1:{ours} \(fd \d+\)$")
    assert get(ours).startswith("gen=1 ")
    assert get(ours, "/env/LISTEN_PID").strip() == "<unset>"
    assert "adopted" not in s.output
    assert starter in run.leftovers()  # the leak check sees it
    os.kill(starter, signal.SIGTERM)
    assert s.wait(30) == 0
    assert not run.leftovers()


# ---- the systemd protocol out (--listen-fds) --------------------------------


def test_listen_fds_puts_sockets_on_3_4_with_the_childs_own_pid(run: Harness) -> None:
    port = free_port()
    sock_path = str(run.tmp / "sd.sock")
    # systemd passes the unix socket first (fd 3); ours go ports first: the
    # child must see them swapped (TCP on 3, unix on 4), names following.
    s = activate(
        run, [sock_path, f"127.0.0.1:{port}"],
        ["--listen-fds", "--workers=2", "--", PY, SD_APP],
        fdnames="unixy:tcpy",
    )
    seen = [get_json(port)]

    def both_answered() -> bool:
        seen.append(get_json(port))
        return len({d["pid"] for d in seen}) == 2

    wait_until(both_answered, FIRST, "both workers to answer")
    for data in seen:
        assert data["env"] == {
            "LISTEN_FDS": "2",
            "LISTEN_PID": str(data["pid"]),
            "LISTEN_FDNAMES": "tcpy:unixy",
            "SERVER_STARTER_PORT": f"127.0.0.1:{port}=3;{sock_path}=4",
        }
        assert data["fds"] == {
            "3": ["AF_INET", "SOCK_STREAM", f"127.0.0.1:{port}"],
            "4": ["AF_UNIX", "SOCK_STREAM", sock_path],
        }
    # The unix socket really is served on fd 4.
    assert json.loads(http_get_unix(sock_path, timeout=10))["env"]["LISTEN_FDS"] == "2"
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(r"gen=2 .*is now running", 30, start=mark)
    data = wait_until(lambda: (d := get_json(port))["gen"] == "2" and d, 30, "generation 2")
    assert data["env"]["LISTEN_PID"] == str(data["pid"])
    assert s.stop() == 0


def test_listen_fds_names_are_keys_without_colons_for_bound_sockets(run: Harness) -> None:
    port = free_port()
    sock_path = str(run.tmp / "b.sock")
    s = run.start(f"--path={sock_path}", f"--port=127.0.0.1:{port}", "--listen-fds", "--",
                  PY, SD_APP)
    s.wait_line(rf"listening on 127\.0\.0\.1:{port} \(fd \d+\)$", FIRST)
    data = get_json(port)
    assert data["env"] == {
        "LISTEN_FDS": "2",
        "LISTEN_PID": str(data["pid"]),
        "LISTEN_FDNAMES": f"127.0.0.1_{port}:{sock_path}",
        "SERVER_STARTER_PORT": f"127.0.0.1:{port}=3;{sock_path}=4",
    }
    assert s.stop() == 0
    assert not Path(sock_path).exists()  # bound by us: ours to remove


def test_without_listen_fds_a_systemd_app_gets_no_sockets(run: Harness) -> None:
    """The flag is what makes the difference: sd_app refuses to run without it."""
    port = free_port()
    s = run.start(f"--port=127.0.0.1:{port}", "--", PY, SD_APP)
    s.wait_line(r"sd_app: LISTEN_PID=None is not mine", 30)
    assert s.stop() == 0


@pytest.mark.timeout(180)
@pytest.mark.parametrize("how", ["socket-activated", "bound"])
def test_gunicorn_without_bind_serves_and_hot_restarts(run: Harness, how: str) -> None:
    port = free_port()
    gunicorn = [PY, "-m", "gunicorn", "--workers=2", "--no-control-socket", "wsgi_app:app"]
    if how == "socket-activated":
        s = activate(run, [f"127.0.0.1:{port}"],
                     ["--listen-fds", "--wait-ready", "--", *gunicorn], cwd=SERVERS)
    else:
        s = run.start(f"--port=127.0.0.1:{port}", "--listen-fds", "--wait-ready", "--",
                      *gunicorn, cwd=str(SERVERS))
        s.wait_line(rf"listening on 127\.0\.0\.1:{port} \(fd \d+\)$", FIRST)
    assert get(port).startswith("hello from generation 1 ")
    s.wait_line(r"gen=1 .*is now running \(ready\)", FIRST)
    failures: list[str] = []
    served: set[str] = set()
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            try:
                served.add(get(port, timeout=30).split()[3])
            except (OSError, IndexError) as exc:
                failures.append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for n in (2, 3):
            mark = s.mark()
            s.signal(signal.SIGHUP)
            s.wait_line(rf"gen={n} .*is now running \(ready\)", 60, start=mark)
            s.wait_line(r"old worker \d+ died", 60, start=mark)
            wait_until(functools.partial(set.__contains__, served, str(n)), 60,
                       f"generation {n} to answer")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert not failures, failures[:5]
    assert "Listening at: http://127.0.0.1:" in s.output  # gunicorn took fd 3
    assert s.stop() == 0


def test_listen_fds_with_fd_placement_is_refused(run: Harness) -> None:
    port = free_port()
    r = run.run(f"--port=127.0.0.1:{port}=3", "--listen-fds", "--", PY, APP)
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr == (
        f"start_server: --port=127.0.0.1:{port}=3: =FD cannot be combined with --listen-fds "
        "(it puts the sockets on fds 3, 4, ... in order)\n"
    )
    assert not run.leftovers()


# ---- contrib/systemd --------------------------------------------------------


def systemd_version() -> int:
    out = subprocess.run([ANALYZE, "--version"], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[1])


def verify(directory: Path, unit: str) -> tuple[int, list[str]]:
    r = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(directory / unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    return r.returncode, [x for x in (r.stdout + r.stderr).splitlines() if x.strip()]


@pytest.fixture
def units(tmp_path: Path) -> Path:
    """The units with ExecStart pointing at executables that exist here."""
    starter = shutil.which("start_server", path=os.path.dirname(PY)) or PY
    for unit in UNITS.iterdir():
        if unit.suffix in (".service", ".socket"):
            text = unit.read_text().replace("/opt/start_server/bin/start_server", starter)
            text = text.replace("/srv/app/current/bin/app-server", PY)
            (tmp_path / unit.name).write_text(text)
    return tmp_path


UNIT_FILES = [
    "start-server.service",
    "start-server-socket.socket",
    "start-server-socket.service",
    "start-server-notify.service",
]


@pytest.mark.parametrize("unit", UNIT_FILES)
def test_unit_passes_systemd_analyze_verify(units: Path, unit: str) -> None:
    assert sorted(p.name for p in UNITS.glob("*.s*")) == sorted(UNIT_FILES)
    rc, complaints = verify(units, unit)
    if unit == "start-server-notify.service" and systemd_version() < 253:
        # Type=notify-reload is new in systemd 253: an older one names exactly that.
        assert complaints == [
            f"{units / unit}:{_line_of(units / unit, 'Type=notify-reload')}: "
            "Failed to parse service type, ignoring: notify-reload"
        ]
        return
    assert (rc, complaints) == (0, [])


def _line_of(path: Path, text: str) -> int:
    return next(i for i, x in enumerate(path.read_text().splitlines(), 1) if x == text)


def test_the_verify_check_catches_a_broken_unit(units: Path) -> None:
    """The check above can fail: a typo'd key and a bad KillMode are reported."""
    unit = units / "start-server.service"
    unit.write_text(unit.read_text().replace("KillMode=mixed", "KillMode=bogus"))
    _, complaints = verify(units, unit.name)
    assert any("Failed to parse kill mode specification, ignoring: bogus" in x
               for x in complaints), complaints
    missing = "/nonexistent/bin/start_server"
    unit.write_text(
        (UNITS / unit.name).read_text().replace("/opt/start_server/bin/start_server", missing)
    )
    rc, complaints = verify(units, unit.name)
    assert rc != 0 and any(f"Command {missing} is not executable" in x
                           for x in complaints), complaints
