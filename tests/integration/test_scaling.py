"""Live scaling (``--scale``, TTIN, TTOU) and one worker restarted alone (``--restart
--worker``), on real processes: under load, across a HUP, daemonized."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from support import (
    APP,
    HELLO_APP,
    PY,
    ClientLoad,
    Harness,
    daemon_guard,
    free_port,
    gone,
    proc_environ,
    status_detail,
    wait_until,
)


def slots(status: Path) -> dict[int, tuple[int, int, str]]:
    """slot -> (generation, pid, state), while each slot has one worker (else {})."""
    workers = status_detail(status).get("generations", [])
    out = {w["worker"]: (w["generation"], w["pid"], w["state"]) for w in workers}
    return out if len(out) == len(workers) else {}


def settled(status: Path, n: int, generation: int = 1) -> dict[int, int]:
    """Wait until generation ``generation`` alone serves with slots 0..n-1, all active;
    slot -> pid."""
    def check() -> dict[int, int]:
        got = slots(status)
        ok = sorted(got) == list(range(n)) and all(
            g == generation and state == "active" for g, _, state in got.values()
        )
        return {k: v[1] for k, v in got.items()} if ok else {}
    return wait_until(check, timeout=60, what=f"generation {generation} with {n} workers")


def worker_env(pid: int, name: str) -> str:
    return proc_environ(pid).get(name, "<unset>")


def client(run: Harness, files: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return run.run(*args, *files, "--timeout=60", timeout=90)


@pytest.mark.timeout(180)
def test_scale_4_to_6_to_2_under_load_without_a_failed_request(run: Harness) -> None:
    port = free_port()
    status, pid_file = run.tmp / "status", run.tmp / "pid"
    files = [f"--pid-file={pid_file}", f"--status-file={status}"]
    s = run.start(f"--port=127.0.0.1:{port}", *files, "--workers=4", "--wait-ready",
                  "--", PY, HELLO_APP)
    four = settled(status, 4)
    with ClientLoad(port, clients=8, timeout=15) as load:
        wait_until(lambda: sum(load.ok) > 50, timeout=60, what="the load to run")
        r = client(run, files, "--scale=6")
        assert r.returncode == 0, r.stderr
        assert r.stderr == "start_server: generation 1 runs 6 workers\n"
        six = settled(status, 6)
        assert {k: six[k] for k in range(4)} == four  # the four serve on, untouched
        assert [worker_env(six[k], "SERVER_STARTER_WORKER") for k in (4, 5)] == ["4", "5"]
        assert worker_env(six[5], "SERVER_STARTER_GENERATION") == "1"
        served = sum(load.ok)
        r = client(run, files, "--scale=-4")
        assert r.returncode == 0, r.stderr
        two = settled(status, 2)
        assert two == {0: four[0], 1: four[1]}  # the highest slots retired
        assert all(gone(six[k]) for k in range(2, 6))
        wait_until(lambda: sum(load.ok) > served + 50, timeout=60, what="two workers serving")
    load.check()
    assert load.generations() == {1}
    for k in range(2, 6):
        s.wait_line(rf"slot {k}: retiring worker {six[k]} \(scaled to 2\)")
    assert status_detail(status)["workers"] == 2


def test_ttin_and_ttou_add_and_retire_one_worker_one_line_at_a_bound(run: Harness) -> None:
    port = free_port()
    status = run.tmp / "status"
    s = run.start(f"--port=127.0.0.1:{port}", f"--status-file={status}", "--interval=0.1",
                  "--", PY, APP)
    one = settled(status, 1)
    mark = s.mark()
    s.signal(signal.SIGTTOU)
    s.wait_line(r"received TTOU: already at 1 worker; ignored", start=mark)
    s.signal(signal.SIGTTIN)
    two = settled(status, 2)
    assert two[0] == one[0]
    s.wait_line(r"received TTIN: scaling from 1 to 2 workers", start=mark)
    s.signal(signal.SIGTTOU)
    assert settled(status, 1) == one
    s.wait_line(r"received TTOU: scaling from 2 to 1 workers", start=mark)
    lines = s.lines[mark:]
    # The refused TTOU was that one line, nothing else between it and the TTIN.
    at = next(i for i, line in enumerate(lines) if "already at 1 worker" in line)
    assert "received TTIN" in lines[at + 1], lines


@pytest.mark.parametrize("ready", [False, True], ids=["interval", "wait-ready"])
def test_restart_worker_2_replaces_that_slot_alone(run: Harness, ready: bool) -> None:
    port = free_port()
    status, pid_file = run.tmp / "status", run.tmp / "pid"
    files = [f"--pid-file={pid_file}", f"--status-file={status}"]
    app = [PY, APP, "--notify"] if ready else [PY, APP]
    s = run.start(f"--port=127.0.0.1:{port}", *files, "--workers=4", "--interval=0.2",
                  *(["--wait-ready"] if ready else []), "--", *app)
    before = settled(status, 4)
    mark = s.mark()
    r = client(run, files, "--restart", "--worker=2")
    assert r.returncode == 0, r.stderr
    after = settled(status, 4)
    assert r.stderr == f"start_server: worker 2 restarted: pid {before[2]} -> {after[2]}\n"
    assert after[2] != before[2] and gone(before[2])
    assert {k: after[k] for k in (0, 1, 3)} == {k: before[k] for k in (0, 1, 3)}
    why = "ready" if ready else "alive after 0.2 s"
    s.wait_line(rf"worker {after[2]} \(slot 2\) is now running \({why}\)", start=mark)
    assert status_detail(status)["generations"][2]["restarts"] == 1


def test_a_failed_worker_restart_is_reported_and_the_old_worker_serves_on(
    run: Harness,
) -> None:
    port = free_port()
    status, pid_file = run.tmp / "status", run.tmp / "pid"
    files = [f"--pid-file={pid_file}", f"--status-file={status}"]
    envdir = run.envdir(APP_EXTRA="")
    run.start(f"--port=127.0.0.1:{port}", *files, f"--envdir={envdir}", "--workers=2",
              "--wait-ready", "--", PY, APP, "--notify")
    before = settled(status, 2)
    run.envdir(APP_EXTRA="--exit 3")  # the new code is broken: it exits before it is ready
    r = client(run, files, "--restart", "--worker=1")
    assert r.returncode == 1
    assert r.stderr == "start_server: the new worker in slot 1 did not start\n"
    workers = status_detail(status)["generations"]
    assert [w["pid"] for w in workers if w["worker"] == 1 and w["state"] == "active"] == [
        before[1]
    ]


def test_a_scale_holds_across_a_restart_of_the_generation(run: Harness) -> None:
    port = free_port()
    status, pid_file = run.tmp / "status", run.tmp / "pid"
    files = [f"--pid-file={pid_file}", f"--status-file={status}"]
    run.start(f"--port=127.0.0.1:{port}", *files, "--workers=2", "--interval=0.1",
              "--", PY, APP)
    settled(status, 2)
    # The clients find the starter from a --config file, as the other clients do.
    config = run.tmp / "clients.yaml"
    config.write_text(f"pid-file: {pid_file}\nstatus-file: {status}\ntimeout: 60\n")
    r = run.run(f"--config={config}", "--scale=+1", timeout=90)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "start_server: generation 1 runs 3 workers\n"
    r = client(run, files, "--restart")
    assert r.returncode == 0, r.stderr
    settled(status, 3, generation=2)


@pytest.mark.timeout(120)
def test_scale_and_restart_worker_with_daemonize(run: Harness) -> None:
    port = free_port()
    status, pid_file, log = run.tmp / "status", run.tmp / "pid", run.tmp / "log"
    files = [f"--pid-file={pid_file}", f"--status-file={status}"]
    with daemon_guard(pid_file):
        r = run.run(f"--port=127.0.0.1:{port}", *files, f"--log-file={log}", "--daemonize",
                    "--workers=2", "--interval=0.1", "--", PY, APP)
        assert r.returncode == 0, r.stderr
        before = settled(status, 2)
        r = client(run, files, "--scale=3")
        assert r.returncode == 0, r.stderr
        three = settled(status, 3)
        r = client(run, files, "--restart", "--worker=0")
        assert r.returncode == 0, r.stderr
        after = settled(status, 3)
        assert {k: three[k] for k in (0, 1)} == before
        assert {k: after[k] for k in (1, 2)} == {k: three[k] for k in (1, 2)}
        assert after[0] != three[0] and gone(three[0])
        # A TTIN to the daemon (it has no controlling terminal) scales too.
        os.kill(int(pid_file.read_text()), signal.SIGTTIN)
        settled(status, 4)
        assert client(run, ["--pid-file=" + str(pid_file)], "--stop").returncode == 0


@pytest.mark.timeout(120)
def test_a_scale_survives_an_upgrade_in_place(run: Harness) -> None:
    port = free_port()
    status, pid_file = run.tmp / "status", run.tmp / "pid"
    files = [f"--pid-file={pid_file}", f"--status-file={status}"]
    s = run.start(f"--port=127.0.0.1:{port}", *files, "--workers=2", "--interval=0.1",
                  "--", PY, APP)
    settled(status, 2)
    assert client(run, files, "--scale=3").returncode == 0
    three = settled(status, 3)
    r = client(run, files, "--upgrade")
    assert r.returncode == 0, r.stderr
    assert status_detail(status)["workers"] == 3
    # The upgraded code answers on its own control socket, with the count carried over.
    r = client(run, files, "--scale=-1")
    assert r.returncode == 0, r.stderr
    assert settled(status, 2) == {0: three[0], 1: three[1]}
    s.signal(signal.SIGHUP)
    settled(status, 2, generation=2)
    assert "Traceback" not in s.output


def test_with_a_controlling_terminal_ttin_and_ttou_stay_job_control(run: Harness) -> None:
    """A background job writing to its terminal gets TTOU from the kernel (with
    ``stty tostop``): a starter with a terminal leaves both ignored, without a line."""
    port = free_port()
    status, log = run.tmp / "status", run.tmp / "log"
    master, tty = os.openpty()
    # A session leader (start_new_session) takes the terminal on its stdin, then runs us.
    take_the_terminal = (
        "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
        "os.execv(sys.executable, [sys.executable, '-m', 'start_server', *sys.argv[1:]])"
    )
    try:
        proc = subprocess.Popen(
            [PY, "-c", take_the_terminal, f"--port=127.0.0.1:{port}",
             f"--status-file={status}", f"--log-file={log}", "--interval=0.1", "--", PY, APP],
            stdin=tty, stdout=tty, stderr=tty, start_new_session=True, env=run.env(),
            cwd=run.tmp,
        )
        try:
            settled(status, 1)
            proc.send_signal(signal.SIGTTIN)
            proc.send_signal(signal.SIGTTOU)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    finally:
        os.close(master)
        os.close(tty)
    text = log.read_text()
    assert "exiting" in text and "TTIN" not in text and "TTOU" not in text, text
