"""Signals: held back from the starter's first instruction until its loop runs;
every signal it does not use, and whose default would end or stop it, ignored."""

from __future__ import annotations

import errno
import os
import signal
from pathlib import Path

import pytest
from support import APP, PY, Harness, free_port, http_get, wait_until

from start_server.signals import STRAY


def _open_writer(fifo: Path) -> int:
    """Open the FIFO for writing once the starter has it open for reading."""
    def attempt() -> int:
        try:
            return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no reader yet
                return 0
            raise
    return wait_until(attempt, timeout=20, what="the starter to open its --config")


@pytest.mark.parametrize("signum", ["HUP", "INT", "QUIT", "TERM"])
def test_a_signal_while_the_options_are_read_waits_for_the_loop(
    run: Harness, signum: str
) -> None:
    """The starter reads its --config from a FIFO (as from ``--config <(...)``):
    a signal sent then once killed it (HUP, QUIT, TERM by their default action,
    INT with a KeyboardInterrupt traceback)."""
    port = free_port()
    fifo = run.tmp / "config.yaml"
    os.mkfifo(fifo)
    s = run.start(f"--config={fifo}")
    fd = _open_writer(fifo)
    s.signal(getattr(signal, "SIG" + signum))
    os.set_blocking(fd, True)
    os.write(fd, f"port: 127.0.0.1:{port}\ninterval: 0.1\ncommand: [{PY}, {APP}]\n".encode())
    os.close(fd)
    if signum == "HUP":
        s.wait_line(r"received HUP")
        s.wait_line(r"gen=\d+ .*is now running")
        assert http_get(port).startswith("gen=")
        s.signal(signal.SIGTERM)
    assert s.wait() == 0, s.output
    assert f"received {signum}" in s.output or signum == "HUP"
    assert "Traceback" not in s.output
    assert "exiting" in s.output


def _state(pid: int) -> str:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]


def test_stray_signals_are_ignored_with_a_line(run: Harness) -> None:
    """ALRM, VTALRM, PROF, XCPU, XFSZ, IO, PWR, TSTP and the real-time
    signals once ended (or stopped) the starter, leaving its worker unmanaged."""
    port = free_port()
    s = run.start(f"--port=127.0.0.1:{port}", "--interval=0.1", "--", PY, APP)
    s.wait_line(r"gen=1 .*is now running")
    for signum in STRAY:
        mark = s.mark()
        os.kill(s.pid, signum)
        s.wait_line(r"received \w+: not used by start_server, ignored", start=mark)
    # PIPE is ignored without a line; the starter still runs. (TTIN and TTOU
    # scale, without a controlling terminal: test_scaling.py.)
    os.kill(s.pid, signal.SIGPIPE)
    mark = s.mark()
    os.kill(s.pid, signal.SIGALRM)  # handled only if the starter was not stopped
    s.wait_line(r"received ALRM", start=mark)
    assert _state(s.pid) != "T"
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(r"gen=2 .*is now running", start=mark)
    # Generation 1 shares the socket until it is gone: it may answer meanwhile.
    wait_until(lambda: http_get(port).startswith("gen=2 "), what="generation 2 to serve")
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    assert "Traceback" not in s.output
    assert len([line for line in s.output.splitlines() if "ignored" in line]) == len(STRAY) + 1


def _blocked(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigBlk line")


@pytest.mark.parametrize("repeated", [False, True], ids=["each-option-once", "an-option-twice"])
def test_a_client_does_not_hold_signals_back(run: Harness, repeated: bool) -> None:
    """A --restart that waits can be interrupted: the starter's held signals are
    released as soon as the client's mode is known."""
    port = free_port()
    status, pid_file = run.tmp / "status", run.tmp / "pid"
    envdir = run.envdir(APP_EXTRA="--notify")
    s = run.start(f"--port=127.0.0.1:{port}", f"--status-file={status}",
                  f"--pid-file={pid_file}", f"--envdir={envdir}", "--wait-ready",
                  "--", PY, APP)
    s.wait_line(r"gen=1 .*is now running")
    run.envdir(APP_EXTRA="")  # generation 2 is never ready: the client waits
    args = ["--restart", f"--pid-file={pid_file}", f"--status-file={status}", "--timeout=60"]
    if repeated:
        args.append("--timeout=61")  # an option twice: the later one counts
    client = run.start(*args)
    wait_until(lambda: s.output.count("received HUP") >= 1, what="the client's HUP")
    assert client.proc.poll() is None, client.output
    assert _blocked(client.pid) == 0
    client.signal(signal.SIGINT)
    assert client.wait() != 0
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
