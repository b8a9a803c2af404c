"""The loop: one queue of events, the status published from the core's latest
state, and timers that cannot overflow or recurse."""

from __future__ import annotations

import json
import signal

import pytest
from support import APP, PY, Harness, free_port, http_get, wait_until


def _json_view(status: str) -> list[tuple[int, str]]:
    with open(status + ".json") as fh:
        detail = json.load(fh)
    return [(g["generation"], g["state"]) for g in detail["generations"]]


def test_status_shows_the_first_generation_while_it_starts(run: Harness) -> None:
    """The .json once said "generations": [] for the whole start check: an older
    snapshot was written after a newer one."""
    port = free_port()
    status = str(run.tmp / "status")
    s = run.start(f"--port=127.0.0.1:{port}", f"--status-file={status}",
                  "--interval=60", "--", PY, APP)
    s.wait_line(r"starting new worker")
    wait_until(lambda: _json_view(status) == [(1, "starting")], timeout=20,
               what="generation 1 shown starting")
    s.signal(signal.SIGTERM)
    assert s.wait() == 0


def test_status_shows_the_new_generation_starting_after_hup(run: Harness) -> None:
    port = free_port()
    status = str(run.tmp / "status")
    pid_file = str(run.tmp / "pid")
    envdir = run.envdir(APP_EXTRA="")
    s = run.start(f"--port=127.0.0.1:{port}", f"--status-file={status}", f"--pid-file={pid_file}",
                  f"--envdir={envdir}", "--wait-ready", "--", PY, APP, "--notify")
    s.wait_line(r"gen=1 .*is now running")
    run.envdir(APP_EXTRA="--notify-delay 60")  # generation 2 stays starting
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(r"gen=2 .*starting new worker", start=mark)

    def shown() -> list[tuple[int, str]]:
        out = run.run("--status", "--json", f"--pid-file={pid_file}", f"--status-file={status}")
        assert out.returncode == 0, out.stderr
        return [(g["generation"], g["state"]) for g in json.loads(out.stdout)["generations"]]

    wait_until(lambda: shown() == [(1, "active"), (2, "starting")], timeout=20,
               what="--status showing generation 2 starting")
    s.signal(signal.SIGTERM)
    assert s.wait() == 0


FAR = "3e6"  # 35 days: a valid delay, and more milliseconds than epoll's int timeout holds


@pytest.mark.parametrize(
    ("options", "hup"),
    [
        (("--interval=" + FAR,), False),
        (("--wait-ready", "--ready-timeout=" + FAR), False),
        (("--interval=0.1", "--stop-timeout=" + FAR), False),
        (("--interval=0.1", "--kill-old-delay=" + FAR), True),
        (("--interval=0.1", "--enable-auto-restart", "--auto-restart-interval=" + FAR), True),
    ],
    ids=["interval", "ready-timeout", "stop-timeout", "kill-old-delay", "auto-restart-interval"],
)
def test_a_far_deadline_does_not_overflow_the_wait(
    run: Harness, options: tuple[str, ...], hup: bool
) -> None:
    """A timeout of more than 2**31 ms once raised OverflowError in the selector."""
    port = free_port()
    s = run.start(f"--port=127.0.0.1:{port}", *options, "--", PY, APP)
    s.wait_line(r"gen=1 .*starting new worker")
    if hup or "--stop-timeout" in " ".join(options):
        s.wait_line(r"gen=1 .*is now running")
    if hup:
        mark = s.mark()
        s.signal(signal.SIGHUP)
        s.wait_line(r"gen=2 .*is now running", start=mark)
    assert http_get(port).startswith("gen=")
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    assert "Traceback" not in s.output


def test_a_memory_check_shorter_than_a_proc_scan_does_not_recurse(run: Harness) -> None:
    """Measure -> Measured -> Measure ... once recursed until RecursionError."""
    port = free_port()
    status = str(run.tmp / "status")
    s = run.start(f"--port=127.0.0.1:{port}", f"--status-file={status}", "--interval=0.1",
                  "--max-memory=1G", "--memory-check-interval=0.001", "--", PY, APP)
    s.wait_line(r"gen=1 .*is now running")

    def memory() -> object:
        with open(status + ".json") as fh:
            return json.load(fh)["generations"][0]["memory"]

    wait_until(memory, what="a memory measurement")
    for n in (2, 3):  # many checks later, the loop still answers
        mark = s.mark()
        s.signal(signal.SIGHUP)
        s.wait_line(rf"gen={n} .*is now running", start=mark, timeout=20)
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    assert "Traceback" not in s.output


def test_term_during_a_storm_of_failed_spawns(run: Harness) -> None:
    """The command is gone and --interval=0 retries at once: a TERM handled
    between a spawn and its result once left the starter waiting forever for a
    generation that had no process."""
    port = free_port()
    script = run.tmp / "app.sh"
    script.write_text(f"#!/bin/sh\nexec {PY} {APP}\n")
    script.chmod(0o755)
    s = run.start(f"--port=127.0.0.1:{port}", "--interval=0", "--", str(script))
    s.wait_line(r"gen=1 .*is now running")
    script.unlink()
    mark = s.mark()
    s.signal(signal.SIGHUP)
    for _ in range(3):  # several attempts in a row
        s.wait_line(r"failed to start generation", start=mark)
        mark = s.mark()
    s.signal(signal.SIGTERM)
    assert s.wait(timeout=30) == 0
    assert "Traceback" not in s.output
