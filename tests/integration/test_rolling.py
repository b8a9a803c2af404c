"""Rolling restarts (``--rolling[=K]``) on real processes: under load, with a
replacement that fails mid-roll, daemonized with TERM mid-roll, an upgrade and an
old worker's crash mid-roll. The worker processes (the starter's children) are
sampled from /proc throughout: never more than --workers + K."""

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
    daemon_guard,
    free_port,
    gone,
    status_detail,
    wait_until,
)


def serving(status: Path, generation: int, n: int) -> bool:
    """Generation ``generation`` alone, its ``n`` workers all started."""
    workers = status_detail(status).get("generations", [])
    return len(workers) == n and all(
        w["generation"] == generation and w["state"] == "active" for w in workers
    )


def children(pid: int) -> int:
    """The live (not zombie) children of ``pid``."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            kids = fh.read().split()
    except OSError:
        return 0
    n = 0
    for kid in kids:
        try:
            with open(f"/proc/{kid}/stat", "rb") as fh:
                n += fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
        except OSError:
            pass  # gone meanwhile
    return n


class Sampler:
    """The most children ``pid`` had, and each roll the status JSON showed, until the block ends."""

    def __init__(self, pid: int, status: Path) -> None:
        self.pid, self.status = pid, status
        self.peak = 0
        self.rolls: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            self.peak = max(self.peak, children(self.pid))
            roll = status_detail(self.status).get("rolling")
            if roll and (not self.rolls or self.rolls[-1] != str(roll)):
                self.rolls.append(str(roll))
            self.stop.wait(0.005)  # the sampling period

    def __enter__(self) -> Sampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def _restart(run: Harness, files: list[str], out: list[Any]) -> threading.Thread:
    """``--restart`` in a thread (it returns once the roll is over)."""
    t = threading.Thread(
        target=lambda: out.append(run.run("--restart", *files, "--timeout=60", timeout=90)),
        daemon=True,
    )
    t.start()
    return t


@pytest.mark.timeout(120)
def test_rolling_restart_under_load_one_at_a_time_with_wait_ready(run: Harness) -> None:
    port = free_port()
    status, pid_file = run.tmp / "status", run.tmp / "pid"
    files = [f"--pid-file={pid_file}", f"--status-file={status}"]
    s = run.start(f"--port=127.0.0.1:{port}", *files, "--workers=4", "--rolling",
                  "--wait-ready", "--", PY, HELLO_APP)
    wait_until(lambda: serving(status, 1, 4), timeout=60, what="generation 1")
    with ClientLoad(port, clients=8, timeout=15) as load, Sampler(s.pid, status) as sample:
        wait_until(lambda: sum(load.ok) > 50, timeout=60, what="the load to run")
        mark = s.mark()
        r = run.run("--restart", *files, "--timeout=60", timeout=90)
        assert r.returncode == 0, r.stderr + s.output
        assert "restarted: generation 2" in r.stderr
        served = sum(load.ok)
        wait_until(lambda: sum(load.ok) > served + 50, timeout=60, what="generation 2 serving")
    load.check()
    assert sample.peak <= 5, f"{sample.peak} workers at once > --workers 4 + 1"
    assert sample.peak == 5  # the roll did run one beside the four
    assert load.generations() == {1, 2}
    assert "{'generation': 2, 'started': 2, 'workers': 4}" in sample.rolls, sample.rolls
    # Each old worker went only once a new one was ready, and the next new one
    # was spawned only once that old one had exited: one at a time.
    lines = [ln for ln in s.lines[mark:] if "gen=2 " in ln or "gen=1 " in ln]
    kinds = [("spawn" if "starting new worker" in ln else "ready" if "is now running" in ln
              else "retire" if "rolling:" in ln else "exit") for ln in lines]
    assert kinds == ["spawn", "ready", "retire", "exit"] * 4, "\n".join(lines)


@pytest.mark.timeout(120)
def test_a_replacement_that_fails_stops_the_roll_and_the_old_workers_serve(
    run: Harness,
) -> None:
    port = free_port()
    status, pid_file, broken = run.tmp / "status", run.tmp / "pid", run.tmp / "broken"
    files = [f"--pid-file={pid_file}", f"--status-file={status}"]
    app = f'test -e {broken} && exit 3; exec "$0" "$@"'
    s = run.start(f"--port=127.0.0.1:{port}", *files, "--workers=4", "--rolling",
                  "--wait-ready", "--backoff-max=1", "--", "sh", "-c", app, PY, HELLO_APP)
    wait_until(lambda: serving(status, 1, 4), timeout=60, what="generation 1")
    with ClientLoad(port, clients=8, timeout=15) as load, Sampler(s.pid, status) as sample:
        wait_until(lambda: sum(load.ok) > 50, timeout=60, what="the load to run")
        mark = s.mark()
        out: list[Any] = []
        client = _restart(run, files, out)
        s.wait_line(r"rolling: generation 2: sending TERM to old worker", start=mark, timeout=30)
        broken.touch()  # the next replacement fails
        client.join(90)
        r = out[0]
        assert r.returncode == 1, r.stderr
        assert "generation 2 failed to start" in r.stderr
        assert "the previous generation keeps serving" in r.stderr
        stopped = r"rolling: stopped; generation 2's started workers \([\d,]+\) serve"
        s.wait_line(stopped, start=mark)
        served = sum(load.ok)
        wait_until(lambda: sum(load.ok) > served + 50, timeout=60, what="serving on")
        assert load.generations() == {1, 2}
        broken.unlink()  # fixed: the slot is filled again, then the next attempt rolls in
        wait_until(lambda: serving(status, 3, 4), timeout=60, what="generation 3 alone")
        served = sum(load.ok)
        wait_until(lambda: sum(load.ok) > served + 50, timeout=60, what="generation 3 serving")
    load.check()
    assert sample.peak <= 5, f"{sample.peak} workers at once > --workers 4 + 1"
    assert 3 in load.generations()


@pytest.mark.timeout(120)
def test_daemonized_roll_two_at_a_time_then_term_mid_roll_stops_everything(
    run: Harness,
) -> None:
    port = free_port()
    pid_file, status, log = run.tmp / "pid", run.tmp / "status", run.tmp / "log"
    with daemon_guard(pid_file):
        fg = run.run("--daemonize", f"--log-file={log}", f"--pid-file={pid_file}",
                     f"--status-file={status}", f"--port=127.0.0.1:{port}", "--workers=4",
                     "--rolling=2", "--interval=0.3", "--", PY, HELLO_APP, timeout=20)
        assert fg.returncode == 0, fg
        daemon = wait_until(lambda: pid_file.read_text().endswith("\n")
                            and int(pid_file.read_text()), what="the pid file")
        wait_until(lambda: serving(status, 1, 4), timeout=60, what="generation 1")
        with Sampler(daemon, status) as sample:
            r = run.run("--restart", f"--pid-file={pid_file}", f"--status-file={status}",
                        "--timeout=60", timeout=90)
            assert r.returncode == 0, r.stderr
        assert sample.peak == 6, f"{sample.peak} workers at once, not --workers 4 + 2"
        wait_until(lambda: serving(status, 2, 4), timeout=60, what="generation 2 alone")
        os.kill(daemon, signal.SIGHUP)
        wait_until(lambda: "rolling: generation 3: sending" in log.read_text(),
                   timeout=30, what="generation 3's roll to begin")
        os.kill(daemon, signal.SIGTERM)
        wait_until(lambda: gone(daemon), timeout=30, what="the daemon to exit")
    assert not run.leftovers()
    assert not pid_file.exists() and not status.exists()
    text = log.read_text()
    assert "received TERM, sending TERM to all workers" in text
    assert "Traceback" not in text


@pytest.mark.timeout(120)
def test_an_upgrade_and_an_old_worker_crash_mid_roll_and_the_roll_goes_on(
    run: Harness,
) -> None:
    port = free_port()
    status, pid_file = run.tmp / "status", run.tmp / "pid"
    files = [f"--pid-file={pid_file}", f"--status-file={status}"]
    s = run.start(f"--port=127.0.0.1:{port}", *files, "--workers=3", "--rolling",
                  "--interval=0.5", "--", PY, HELLO_APP)
    wait_until(lambda: serving(status, 1, 3), timeout=60, what="generation 1")
    olds = [w["pid"] for w in status_detail(status)["generations"]]
    mark = s.mark()
    s.signal(signal.SIGHUP)
    m = s.wait_line(r"rolling: generation 2: sending TERM to old worker (\d+)", start=mark)
    left = [pid for pid in olds if pid != int(m.group(1))]
    os.kill(left[-1], signal.SIGKILL)  # an old worker not yet replaced crashes
    s.wait_line(r"generation 2's roll replaces it", start=mark)
    r = run.run("--upgrade", *files, "--timeout=60", timeout=90)
    assert r.returncode == 0, r.stderr
    wait_until(lambda: serving(status, 2, 3), timeout=60, what="generation 2 alone")
    assert all(gone(pid) for pid in olds)
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    assert "Traceback" not in s.output


@pytest.mark.timeout(150)
def test_a_hup_mid_roll_rolls_the_newest_code_in_at_once(run: Harness) -> None:
    port = free_port()
    status, pid_file, slow = run.tmp / "status", run.tmp / "pid", run.tmp / "slow"
    files = [f"--pid-file={pid_file}", f"--status-file={status}"]
    # While ``slow`` exists a worker takes 3 s to start: generation 2's second
    # worker is still starting when the HUP comes.
    app = ("import os, sys, time; os.path.exists(sys.argv[1]) and time.sleep(3); "
           "os.execv(sys.executable, [sys.executable] + sys.argv[2:])")
    s = run.start(f"--port=127.0.0.1:{port}", *files, "--workers=4", "--rolling",
                  "--wait-ready", "--", PY, "-c", app, str(slow), HELLO_APP)
    wait_until(lambda: serving(status, 1, 4), timeout=60, what="generation 1")
    with ClientLoad(port, clients=8, timeout=15) as load, Sampler(s.pid, status) as sample:
        wait_until(lambda: sum(load.ok) > 50, timeout=60, what="the load to run")
        mark = s.mark()
        slow.touch()
        out: list[Any] = []
        client = _restart(run, files, out)  # waits for generation 2
        s.wait_line(r"rolling: generation 2: sending TERM to old worker", start=mark, timeout=60)
        wait_until(lambda: sum("gen=2 " in ln and "starting new worker" in ln
                               for ln in s.lines[mark:]) == 2, timeout=60,
                   what="generation 2's second worker")
        slow.unlink()
        s.signal(signal.SIGHUP)
        s.wait_line(r"rolling: HUP: generation 2 is superseded", start=mark, timeout=30)
        client.join(90)
        r = out[0]
        assert r.returncode == 0, r.stderr + s.output
        assert "restarted: generation 3" in r.stderr
        wait_until(lambda: serving(status, 3, 4), timeout=60, what="generation 3 alone")
        before = dict(load.answered)
        wait_until(lambda: sum(load.ok) > sum(before.values()) + 50, timeout=60,
                   what="generation 3 serving")
        assert {n: c for n, c in load.answered.items() if n != 3} == {
            n: c for n, c in before.items() if n != 3
        }  # only generation 3 answers now
    load.check()
    assert sample.peak <= 5, f"{sample.peak} workers at once > --workers 4 + 1"
    lines = s.lines[mark:]
    spawned = [ln for ln in lines if "starting new worker" in ln]
    assert len([ln for ln in spawned if "gen=3 " in ln]) == 4
    assert len(spawned) < 8, "\n".join(spawned)  # fewer than two full rolls
    assert "one more restart" not in "\n".join(lines)
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    assert "Traceback" not in s.output
