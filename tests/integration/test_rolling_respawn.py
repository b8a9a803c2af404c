"""--rolling never makes an outage longer: a serving worker that dies is replaced
at once, even while more than K retiring workers (a scale down) are still
leaving, and a new worker that dies mid-roll after it started is a crash
respawned in its slot, not a failed start: the roll goes on."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
from support import (
    HELLO_APP,
    PY,
    ClientLoad,
    Harness,
    free_port,
    gone,
    status_detail,
    wait_until,
)

# A worker that ignores TERM (from before --interval says it started): a retiring
# one stays until --stop-timeout.
STUBBORN = "trap '' TERM; exec sleep 600"


def _workers(status: Path) -> list[dict[str, Any]]:
    return list(status_detail(status).get("generations", []))


@pytest.mark.timeout(120)
def test_the_last_workers_respawn_does_not_wait_for_retiring_workers(run: Harness) -> None:
    status = run.tmp / "status"
    s = run.start(f"--port=127.0.0.1:{free_port()}", f"--status-file={status}", "--workers=3",
                  "--rolling", "--interval=1", "--stop-timeout=90", "--", "/bin/sh", "-c", STUBBORN)
    wait_until(lambda: len(_workers(status)) == 3
               and all(w["state"] == "active" for w in _workers(status)),
               timeout=60, what="three workers")
    mark = s.mark()
    s.signal(signal.SIGTTOU)
    s.wait_line(r"slot 2: retiring worker", start=mark)
    s.signal(signal.SIGTTOU)
    s.wait_line(r"slot 1: retiring worker", start=mark)
    # 1 serving + 2 retiring (TERM ignored) = 3 processes, above --workers 1 + 1.
    retiring = [w["pid"] for w in _workers(status) if w["worker"] != 0]
    (serving,) = [w["pid"] for w in _workers(status) if w["worker"] == 0]
    os.kill(serving, signal.SIGKILL)
    s.wait_line(rf"worker {serving} died unexpectedly", start=mark)
    # Without --rolling the slot is refilled at once; it must not wait 90 s for room.
    new = wait_until(lambda: [w["pid"] for w in _workers(status) if w["worker"] == 0
                              and w["pid"] != serving and w["state"] == "active"],
                     timeout=30, what="slot 0 serving again")
    # They all ignore TERM: stop the starter, then end them rather than wait out --stop-timeout.
    mark = s.mark()
    s.signal(signal.SIGTERM)
    s.wait_line(r"received TERM", start=mark)
    for pid in retiring + new:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: all(gone(pid) for pid in retiring + new), timeout=30, what="workers gone")


@pytest.mark.timeout(120)
def test_one_of_several_respawns_beside_more_than_k_retiring_workers(run: Harness) -> None:
    status = run.tmp / "status"
    s = run.start(f"--port=127.0.0.1:{free_port()}", f"--status-file={status}", "--workers=4",
                  "--rolling", "--interval=1", "--stop-timeout=90", "--", "/bin/sh", "-c", STUBBORN)
    wait_until(lambda: len(_workers(status)) == 4
               and all(w["state"] == "active" for w in _workers(status)),
               timeout=60, what="four workers")
    mark = s.mark()
    s.signal(signal.SIGTTOU)
    s.wait_line(r"slot 3: retiring worker", start=mark)
    s.signal(signal.SIGTTOU)
    s.wait_line(r"slot 2: retiring worker", start=mark)
    # 2 serving + 2 retiring (TERM ignored) = 4 processes, above --workers 2 + 1.
    pids = [w["pid"] for w in _workers(status)]
    (dead,) = [w["pid"] for w in _workers(status) if w["worker"] == 0]
    os.kill(dead, signal.SIGKILL)
    s.wait_line(rf"worker {dead} \(slot 0\) died unexpectedly", start=mark)
    # Slot 1 still serves; slot 0 must not wait 90 s for a retiring worker to leave.
    new = wait_until(lambda: [w["pid"] for w in _workers(status) if w["worker"] == 0
                              and w["pid"] != dead and w["state"] == "active"],
                     timeout=30, what="slot 0 serving again")
    mark = s.mark()
    s.signal(signal.SIGTERM)
    s.wait_line(r"received TERM", start=mark)
    rest = [pid for pid in pids if pid != dead] + new
    for pid in rest:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: all(gone(pid) for pid in rest), timeout=30, what="workers gone")


class Serving:
    """The fewest started workers the status JSON showed, sampled until the block ends."""

    def __init__(self, status: Path) -> None:
        self.status = status
        self.fewest: int | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            workers = _workers(self.status)
            if workers:
                n = sum(w["state"] == "active" for w in workers)
                self.fewest = n if self.fewest is None else min(self.fewest, n)
            self.stop.wait(0.01)  # the sampling period

    def __enter__(self) -> Serving:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


@pytest.mark.timeout(150)
def test_a_started_new_worker_killed_mid_roll_is_respawned_and_the_roll_goes_on(
    run: Harness,
) -> None:
    port = free_port()
    status, pid_file = run.tmp / "status", run.tmp / "pid"
    files = [f"--pid-file={pid_file}", f"--status-file={status}"]
    s = run.start(f"--port=127.0.0.1:{port}", *files, "--workers=3", "--rolling",
                  "--interval=2", "--", PY, HELLO_APP)
    wait_until(lambda: len(_workers(status)) == 3
               and all(w["state"] == "active" for w in _workers(status)),
               timeout=60, what="generation 1")
    with ClientLoad(port, clients=8, timeout=15) as load:
        wait_until(lambda: sum(load.ok) > 50, timeout=60, what="the load to run")
        mark = s.mark()
        out: list[Any] = []
        client = threading.Thread(target=lambda: out.append(
            run.run("--restart", *files, "--timeout=60", timeout=90)), daemon=True)
        with Serving(status) as sample:
            client.start()
            s.wait_line(r"rolling: generation 2: sending TERM to old worker", start=mark,
                        timeout=60)
            (first,) = wait_until(lambda: [w["pid"] for w in _workers(status)
                                           if w["generation"] == 2 and w["state"] == "active"],
                                  timeout=30, what="generation 2's first worker in the status")
            os.kill(first, signal.SIGKILL)
            # A crash of a serving worker (respawned in its slot), not a failed start.
            s.wait_line(rf"new worker {first} \(slot 0\) died unexpectedly", start=mark,
                        timeout=30)
            client.join(90)
        r = out[0]
        assert r.returncode == 0, r.stderr + s.output
        assert "restarted: generation 2" in r.stderr
        assert len(_workers(status)) == 3 and all(
            w["generation"] == 2 and w["state"] == "active" for w in _workers(status))
        served = sum(load.ok)
        wait_until(lambda: sum(load.ok) > served + 50, timeout=60, what="generation 2 serving")
    # Only requests in flight to the killed worker may fail (one per client at most),
    # and only as a SIGKILL cuts them: reset, or closed before or during the answer
    # (headers sent, body not). Never refused, never a wrong answer.
    assert len(load.failures) <= 8, load.failures
    assert not [f for f in load.other if "Refused" in f or "HTTP " in f], load.other
    assert all(load.ok)
    # Only the killed worker's slot went without a worker, until its respawn started.
    assert sample.fewest == 2, sample.fewest
    lines = "\n".join(s.lines[mark:])
    assert "during its generation's start" not in lines and "rolling: stopped" not in lines
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    assert "Traceback" not in s.output
