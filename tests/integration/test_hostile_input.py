"""Hostile input to a running starter and to its clients: the starter never
crashes, hangs or spins, and never signals a stranger; a client reading a
damaged file says so in one line (or shows what it can), never a traceback.

The one-line refusals at start-up are rows of test_bad_input.py; these need a
live starter, or a pid file that a live process holds locked.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import APP, APPS, PY, Harness, first_worker, free_port, gone, wait_until


def _locked(pid_file: Path) -> bool:
    """Does somebody hold the pid file's lock?"""
    fd = os.open(pid_file, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def test_stop_while_the_starter_is_starting_never_signals_the_old_pid(run: Harness) -> None:
    """The pid file names a stranger (a stale pid); the new starter has locked it
    but blocks opening its log (a FIFO nobody reads yet). ``--stop`` then must
    not signal the stranger: the file holds nothing, or our pid, once locked."""
    stranger = subprocess.Popen(
        [PY, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE, env=run.env()
    )
    pid_file, log = run.tmp / "pid", run.tmp / "log"
    try:
        pid_file.write_text(f"{stranger.pid}\n")
        os.mkfifo(log)
        s = run.start(
            f"--pid-file={pid_file}", f"--log-file={log}",
            f"--port=127.0.0.1:{free_port()}", "--", PY, APP,
        )
        wait_until(lambda: _locked(pid_file), what="the starter to lock the pid file")
        r = run.run("--stop", f"--pid-file={pid_file}", "--timeout=1")
        # Either the file is still empty, or it names the starter itself (whose
        # TERM waits until its loop runs): never the stranger.
        assert r.returncode == 1, r.stderr
        assert "no pid in it yet" in r.stderr or f"(pid:{s.pid})" in r.stderr, r.stderr
        assert stranger.poll() is None, "the stranger was signalled"
        with open(log, "rb") as reader:  # the starter's open() returns: it goes on
            if "no pid in it yet" in r.stderr:
                wait_until(lambda: pid_file.read_text() == f"{s.pid}\n", what="our pid")
                s.signal(signal.SIGTERM)
            assert s.wait() == 0
            reader.read()
        assert stranger.poll() is None, "the stranger was signalled"
    finally:
        stranger.kill()
        stranger.wait(10)
        assert stranger.stdin is not None
        stranger.stdin.close()


def test_envdir_fifo_and_dev_zero_are_skipped(run: Harness) -> None:
    """A FIFO hung the starter in open() before every spawn; /dev/zero was read
    until memory ran out (the address space is capped so that a regression
    fails instead of eating the machine's memory)."""
    env = run.envdir(GREETING="hello")
    os.mkfifo(env / "FIFO")
    (env / "ZERO").symlink_to("/dev/zero")
    (env / "LONG").write_bytes(b"x" * (1 << 19))  # a first line over 256 KiB
    s = run.start(
        f"--port=127.0.0.1:{free_port()}", f"--envdir={env}", "--interval=0.1",
        "--", PY, APP,
        argv0=["prlimit", f"--as={2 << 30}", "--", PY, "-m", "start_server"],
    )
    s.wait_line(r"gen=1 .*is now running", timeout=20)
    for name, why in (("FIFO", "not a regular file"), ("ZERO", "not a regular file"),
                      ("LONG", "first line over 262144 bytes")):
        s.wait_line(rf"ignoring envdir entry {env}/{name}: {why}")
    s.signal(signal.SIGTERM)
    assert s.wait() == 0


@pytest.mark.parametrize("value", ["nan", "inf", "1e11"])
def test_envdir_bad_kill_old_delay_is_ignored_on_hup(run: Harness, value: str) -> None:
    """nan made the starter spin and never retire the old generation; inf and
    1e11 crashed it with both generations orphaned."""
    env = run.envdir(KILL_OLD_DELAY=value)
    s = run.start(
        f"--port=127.0.0.1:{free_port()}", f"--envdir={env}", "--interval=0.2",
        "--", PY, APP,
    )
    s.wait_line(r"gen=1 .*is now running")
    old = first_worker(s)
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(r"ignoring the envdir's policy values: KILL_OLD_DELAY", start=mark)
    s.wait_line(r"gen=2 .*is now running", start=mark)
    wait_until(lambda: gone(old), what="generation 1 to be retired at once")
    assert s.proc.poll() is None, s.output
    s.signal(signal.SIGTERM)
    assert s.wait() == 0


# ---- --status reading a damaged status file or JSON sidecar ----------------------


HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, f"{os.getpid()}\\n".encode())
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def held_pid_file(run: Harness) -> Iterator[Path]:
    """A pid file a live process holds locked and names, as a starter's is.

    That process stands in for the starter: nothing here may signal it.
    """
    pid_file = run.tmp / "pid"
    holder = subprocess.Popen(
        [PY, "-c", HOLDER, str(pid_file)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        env=run.env(), text=True,
    )
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert holder.stdout.readline() == "held\n"
        yield pid_file
        assert holder.poll() is None, "the pid file's holder was signalled"
    finally:
        holder.stdin.close()
        holder.wait(10)
        holder.stdout.close()


DEEP = "[" * 100_000 + "]" * 100_000
SIDECARS = {
    "generations-of-numbers": '{"generations": [1, 2]}',
    "a-string": '"abc"',
    "generations-a-string": '{"generations": "abc"}',
    "spawned-at-1e400": '{"generations": [{"generation": 1, "pid": 1, "spawned_at": 1e400}]}',
    "spawned-at-minus-1e300": '{"generations": [{"generation": 1, "spawned_at": -1e300}]}',
    "spawned-at-nan": '{"generations": [{"generation": 1, "spawned_at": NaN, "memory": 1e300}]}',
    "infinities": '{"failed_at": Infinity, "generations": [{"generation": 1, "pid": 1, '
                  '"spawned_at": -Infinity, "memory": 1e400}]}',
    "absurd-values": json.dumps({
        "starter_pid": "me", "failed_generation": 1e400, "failed_at": -1e300,
        "next_attempt_at": "soon", "failed_reason": "\x1b[2J" * 1000,
        "generations": [{"generation": True, "worker": -1, "pid": 10**30, "state": ["x"],
                         "memory": 2**200, "fds": "many", "status": "\x1b]0;owned\x07" * 100}],
    }),
    "deep-nesting": '{"generations": ' + DEEP + "}",
    "not-utf8": b'{"generations": [{"status": "\xff\xfe"}]}'.decode("latin-1"),
}


def _not_json(name: str) -> None:
    raise AssertionError(f"{name} in the --status --json output")


@pytest.mark.parametrize("text", SIDECARS.values(), ids=SIDECARS.keys())
def test_status_survives_a_malformed_json_sidecar(
    run: Harness, held_pid_file: Path, text: str
) -> None:
    status = run.tmp / "status"
    status.write_text("1:1\n")
    Path(f"{status}.json").write_bytes(text.encode("latin-1", errors="replace"))
    for extra in ((), ("--json",)):
        r = run.run("--status", f"--pid-file={held_pid_file}", f"--status-file={status}", *extra)
        assert r.returncode == 0, r.stderr
        assert "Traceback" not in r.stderr and r.stderr == "", r.stderr
        if extra:  # strict JSON: no NaN or Infinity a consumer could not parse
            json.loads(r.stdout, parse_constant=_not_json)
        else:
            lines = r.stdout.splitlines()
            assert lines[0].startswith("start_server pid "), r.stdout
            assert all(len(line) < 400 for line in lines), r.stdout
            assert "\x1b" not in r.stdout


@pytest.mark.parametrize(
    "text", ["\uff11:\uff12\n", "1:" + "9" * 5000 + "\n", "x" * (2 << 20)],
    ids=["fullwidth", "5000-digits", "2-MiB"],
)
def test_status_and_restart_survive_a_malformed_status_file(
    run: Harness, held_pid_file: Path, text: str
) -> None:
    status = run.tmp / "status"
    status.write_text(text)
    r = run.run("--status", f"--pid-file={held_pid_file}", f"--status-file={status}")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    r = run.run("--restart", f"--pid-file={held_pid_file}", f"--status-file={status}")
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("\n") == 1 and "no active generation listed" in r.stderr, r.stderr


# ---- the --port grammar, side by side with the original ---------------------------


@pytest.mark.parametrize("perl", [False, True], ids=["ours", "original"])
def test_port_grammar_as_the_original_takes_it(run: Harness, perl: bool) -> None:
    """Brackets around an IPv4 address, an unbalanced bracket, blanks after the
    colon and before '=': both implementations bind them and pass the same keys."""
    p1, p2, p3 = free_port(), free_port(), free_port()
    out = run.tmp / "env.json"
    s = run.start(
        f"--port=[127.0.0.1]:{p1}", f"--port=[127.0.0.1: {p2}", f"--port= 127.0.0.1]:u{p3} =7",
        "--interval=0" if perl else "--interval=0.2",
        "--", PY, str(APPS / "env_dump.py"), str(out), perl=perl,
    )
    info = wait_until(lambda: out.exists() and json.loads(out.read_text()), what="env dump")
    assert info["value"].split(";") == [
        f"127.0.0.1:{p1}={info['server_ports'][f'127.0.0.1:{p1}']}",
        f"127.0.0.1:{p2}={info['server_ports'][f'127.0.0.1:{p2}']}",
        f"127.0.0.1:{p3}=7",
    ]
    assert info["sockets"][2] == ["AF_INET", "SOCK_DGRAM"]
    s.signal(signal.SIGTERM)
    assert s.wait() == 0


@pytest.mark.parametrize("perl", [False, True], ids=["ours", "original"])
def test_port_grammar_refusals_as_the_original(run: Harness, perl: bool) -> None:
    """No blank after '=', and no fullwidth digits: the original's regexes refuse
    them (it dies); ours says so in one line, exit 2."""
    for spec in (f"127.0.0.1:{free_port()}= 5", "\uff18\uff10\uff18\uff10"):
        r = run.run(f"--port={spec}", "--", PY, APP, perl=perl)
        assert r.returncode != 0
        if perl:
            assert "invalid ``port'' value" in r.stderr, r.stderr
        else:
            assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
            assert "invalid port spec" in r.stderr
