"""Several workers per generation, memory-limit restarts, jitter, no orphans, --status."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import pytest
from support import (
    APP,
    PY,
    Harness,
    free_port,
    gen_of,
    gone,
    http_get,
    log_time,
    proc_environ,
    read_status,
    wait_until,
)


def test_workers_per_generation_and_a_restart(run: Harness) -> None:
    port = free_port()
    status = run.tmp / "status"
    s = run.start(
        f"--port=127.0.0.1:{port}",
        f"--status-file={status}",
        "--workers=3",
        "--wait-ready",
        "--",
        PY,
        APP,
        "--notify",
    )
    wait_until(lambda: len(read_status(status)) == 3, what="three workers listed")
    first = read_status(status)
    assert {g for g, _ in first} == {1}
    # Each worker its own slot, read from its environment (which worker the kernel
    # hands a connection is not ours to choose), and the app sees its slot.
    slots = {proc_environ(pid)["SERVER_STARTER_WORKER"] for _, pid in first}
    assert slots == {"0", "1", "2"}
    assert http_get(port, "/env/SERVER_STARTER_WORKER").strip() in slots
    mark = s.mark()
    s.signal(signal.SIGHUP)
    wait_until(
        lambda: {g for g, _ in read_status(status)} == {2} and len(read_status(status)) == 3,
        what="generation 2's three workers alone",
    )
    for _, pid in first:
        s.wait_line(rf"old worker {pid} died", start=mark)
    # The old generation was signalled only once all three new workers were up.
    text = "\n".join(s.lines[mark:])
    assert text.index("killing old workers") > max(
        m.start() for m in re.finditer(r"gen=2 .*is now running", text)
    )


def test_a_dead_worker_is_replaced_alone(run: Harness) -> None:
    port = free_port()
    status = run.tmp / "status"
    s = run.start(
        f"--port=127.0.0.1:{port}",
        f"--status-file={status}",
        "--workers=2",
        "--wait-ready",
        "--",
        PY,
        APP,
        "--notify",
    )
    wait_until(lambda: len(read_status(status)) == 2, what="two workers")
    (g1, victim), (_, other) = read_status(status)
    mark = s.mark()
    os.kill(victim, signal.SIGKILL)
    s.wait_line(rf"worker {victim} \(slot \d\) died unexpectedly", start=mark)
    s.wait_line(r"slot \d: replacing it", start=mark)
    wait_until(
        lambda: len(read_status(status)) == 2 and victim not in dict(read_status(status)).values(),
        what="the slot refilled",
    )
    now = read_status(status)
    assert {g for g, _ in now} == {g1}  # same generation
    assert other in [p for _, p in now]  # the other worker untouched
    assert "received HUP" not in s.output


def test_memory_limit_restarts_the_generation(run: Harness) -> None:
    port = free_port()
    status = run.tmp / "status"
    marker = run.tmp / "leak"
    marker.touch()  # generation 1 takes it and leaks; generation 2 finds none
    s = run.start(
        f"--port=127.0.0.1:{port}",
        f"--status-file={status}",
        "--wait-ready",
        "--max-memory=64M",
        "--memory-check-interval=0.2",
        "--",
        PY,
        APP,
        "--notify",
        "--leak=96",
        f"--leak-once={marker}",
    )
    s.wait_line(r"gen=1 .*is now running")
    assert not marker.exists()
    m = s.wait_line(
        r"generation 1 uses ([\d.]+) MiB > --max-memory 64.0 MiB \(two checks in a row\); "
        r"restarting",
        timeout=20,
    )
    assert float(m.group(1)) > 64
    s.wait_line(r"gen=2 .*is now running", timeout=30)
    wait_until(lambda: [g for g, _ in read_status(status)] == [2], what="generation 2 alone")
    assert gen_of(http_get(port)) == 2
    # Generation 2 stays under the limit: it is measured, and nothing restarts it.
    detail = wait_until(
        lambda: (
            (d := json.loads((run.tmp / "status.json").read_text()))
            and [g["generation"] for g in d["generations"]] == [2]
            and d["generations"][0].get("memory")
            and d
        ),
        what="generation 2 measured",
    )
    assert detail["generations"][0]["memory"] < 64 * 1048576
    assert len(re.findall(r"> --max-memory", s.output)) == 1, s.output


@pytest.mark.parametrize("rolling", [(), ("--rolling",)], ids=["all-at-once", "rolling"])
def test_memory_limit_with_workers_replaces_only_that_worker(
    run: Harness, rolling: tuple[str, ...]
) -> None:
    """With --rolling too: a verdict on one worker is that slot's replacement, no roll."""
    port = free_port()
    status = run.tmp / "status"
    marker = run.tmp / "leak"
    s = run.start(
        f"--port=127.0.0.1:{port}",
        f"--status-file={status}",
        "--wait-ready",
        *rolling,
        "--workers=2",
        "--max-memory=64M",
        "--memory-check-interval=0.2",
        "--",
        PY,
        APP,
        "--notify",
        "--leak=96",
        f"--leak-once={marker}",
    )
    wait_until(lambda: len(read_status(status)) == 2, what="two workers")
    # Only the next worker to start leaks: kill slot 1's worker so it is respawned leaking.
    marker.touch()
    (_, w0), (_, w1) = read_status(status)
    mark = s.mark()
    os.kill(w1, signal.SIGKILL)
    m = s.wait_line(
        r"worker (\d+) \(slot 1\) uses [\d.]+ MiB > --max-memory 64.0 MiB .*replacing it",
        start=mark,
        timeout=30,
    )
    leaker = int(m.group(1))
    assert not marker.exists()
    s.wait_line(r"slot 1: replacing its worker \(memory limit\)", start=mark)
    s.wait_line(rf"old worker {leaker} died", start=mark, timeout=30)
    wait_until(
        lambda: len(read_status(status)) == 2 and leaker not in dict(read_status(status)).values(),
        what="slot 1 refilled",
    )
    assert w0 in [p for _, p in read_status(status)]  # slot 0 never touched
    assert {g for g, _ in read_status(status)} == {1}
    assert len(re.findall(r"> --max-memory", s.output)) == 1, s.output
    assert "rolling:" not in s.output


def test_jittered_auto_restart_replaces_workers_one_by_one(run: Harness) -> None:
    port = free_port()
    status = run.tmp / "status"
    s = run.start(
        f"--port=127.0.0.1:{port}",
        f"--status-file={status}",
        "--workers=2",
        "--wait-ready",
        "--enable-auto-restart",
        "--auto-restart-interval=1",
        "--auto-restart-jitter=0.5",
        "--kill-old-delay=0",
        "--",
        PY,
        APP,
        "--notify",
    )
    wait_until(lambda: len(read_status(status)) == 2, what="two workers")
    # Two replacements, counted (not awaited one after the other from a fresh mark:
    # the second line may be in before the first wait returns).
    wait_until(lambda: s.output.count("replacing its worker (auto-restart)") >= 2,
               timeout=30, what="two auto-restart replacements")
    # Never two replacements in flight: each "replacing" follows the previous one's
    # "is now running" line.
    lines = [
        ln
        for ln in s.lines
        if "replacing its worker" in ln or ("(slot" in ln and "is now running" in ln)
    ]
    starts = [ln for ln in lines if "replacing its worker" in ln]
    assert len(starts) >= 2
    for a, b in zip(lines, lines[1:]):
        assert not ("replacing its worker" in a and "replacing its worker" in b), lines
    assert {g for g, _ in read_status(status)} == {1}  # no new generation was needed


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().rstrip("\n")


def test_no_orphans_when_a_forking_worker_is_killed(run: Harness) -> None:
    port = free_port()
    env = run.envdir(APP_EXTRA="--notify --fork 2 --setsid-child")
    s = run.start(
        f"--port=127.0.0.1:{port}",
        f"--envdir={env}",
        "--wait-ready",
        "--stop-timeout=0.5",
        "--",
        PY,
        APP,
    )
    s.wait_line(r"gen=1 .*is now running")
    worker = int(s.wait_line(r"gen=1 pid=(\d+) starting new worker").group(1))
    (env / "APP_EXTRA").write_text("--notify\n")

    def settled() -> list[int]:
        """The worker, its 2 forked children and the double-forked helper, once the
        helper's intermediate parent has exited: until then the helper may not exist
        yet, and the intermediate (a zombie by the kill) is reaped, not a leftover."""
        procs = [p for p in run.leftovers() if p != s.pid]
        intermediate = [p for p in procs if p != worker and _parent(p) == worker
                        and _comm(p) != "app-grandchild"]
        return procs if len(procs) == 4 and worker in procs and not intermediate else []

    family = wait_until(settled, what="the forked processes")
    os.kill(worker, signal.SIGKILL)
    s.wait_line(r"gen=2 .*is now running")
    # Everything the killed worker left behind is stopped (TERM ignored -> KILL) and
    # reaped by the starter, its subreaper: gone from /proc, not left as zombies.
    s.wait_line(r"leftover process \d+ did not exit; sending KILL", timeout=15)
    for p in family:
        if p != worker:
            s.wait_line(rf"leftover process {p} exited", timeout=15)
    wait_until(
        lambda: not any(os.path.exists(f"/proc/{p}") for p in family),
        timeout=15,
        what="the leftovers to be reaped",
    )


def test_a_stop_without_stop_timeout_leaves_a_leftover_that_ignores_term(run: Harness) -> None:
    """No --stop-timeout: a leftover ignoring TERM gets the not-ready grace (10 s),
    then the starter exits without it (the original does not wait for it at all)."""
    port = free_port()
    s = run.start(f"--port=127.0.0.1:{port}", "--interval=0.3", "--", PY, APP, "--setsid-child")
    worker = int(s.wait_line(r"gen=1 pid=(\d+) new worker \d+ is now running").group(1))

    def helper() -> int:
        """The double-forked helper, re-parented to the starter (its subreaper)."""
        kids = [p for p in run.leftovers() if p not in (s.pid, worker) and _parent(p) == s.pid]
        return kids[0] if len(kids) == 1 else 0

    left = wait_until(helper, what="the helper re-parented to the starter")
    s.signal(signal.SIGTERM)
    first = s.wait_line(rf"(\S+) start_server\[\d+\] stopping leftover process {left}:")
    last = s.wait_line(rf"(\S+) start_server\[\d+\] leaving leftover processes running: "
                       rf"{left} \(no exit 10 s after TERM", timeout=30)
    s.wait_line(r"\] exiting$")
    # Its output pipe stays open while the leftover holds it: the exit, not EOF.
    assert s.proc.wait(timeout=15) == 0
    assert log_time(last.group(1)) - log_time(first.group(1)) >= 9.9
    assert not gone(left), "the leftover was killed"
    os.kill(left, signal.SIGKILL)
    wait_until(lambda: gone(left), what="the leftover to go")


def test_status_view_table_and_json(run: Harness) -> None:
    port = free_port()
    status, pid_file = run.tmp / "status", run.tmp / "pid"
    s = run.start(
        f"--port=127.0.0.1:{port}",
        f"--status-file={status}",
        f"--pid-file={pid_file}",
        "--workers=2",
        "--wait-ready",
        "--max-memory=1G",
        "--max-open-files=10000",
        "--memory-check-interval=0.2",
        "--",
        PY,
        APP,
        "--notify",
    )
    wait_until(lambda: len(read_status(status)) == 2, what="two workers")
    detail = wait_until(
        lambda: (
            (d := json.loads((run.tmp / "status.json").read_text()))
            and all(g.get("memory") and isinstance(g.get("fds"), int) for g in d["generations"])
            and d
        ),
        what="memory and fd figures",
    )
    assert [g["worker"] for g in detail["generations"]] == [0, 1]
    r = run.run("--status", f"--pid-file={pid_file}", f"--status-file={status}")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == f"start_server pid {s.pid}: serving generation 1"
    assert lines[1].split() == [
        "GEN", "WORKER", "PID", "STATE", "READY", "UPTIME", "MEMORY", "FDS", "STATUS"
    ]
    assert re.match(r"1\s+0\s+\d+\s+active\s+yes\s+\d+s\s+[\d.]+M\s+\d+", lines[2]), lines
    assert re.match(r"1\s+1\s+\d+\s+active\s+yes", lines[3]), lines
    r = run.run("--status", "--json", f"--pid-file={pid_file}", f"--status-file={status}")
    assert r.returncode == 0
    views = json.loads(r.stdout)["generations"]
    assert len(views) == 2 and all(isinstance(g["fds"], int) for g in views)


def test_perl_restart_understands_a_multi_worker_status_file(run: Harness) -> None:
    port = free_port()
    status, pid_file = run.tmp / "status", run.tmp / "pid"
    run.start(
        f"--port=127.0.0.1:{port}",
        f"--status-file={status}",
        f"--pid-file={pid_file}",
        "--workers=2",
        "--wait-ready",
        "--",
        PY,
        APP,
        "--notify",
    )
    wait_until(lambda: len(read_status(status)) == 2, what="two workers")
    r = run.run("--restart", f"--pid-file={pid_file}", f"--status-file={status}", perl=True)
    assert r.returncode == 0, r.stderr
    assert {g for g, _ in read_status(status)} == {2}


# A worker that sends READY=1 the moment it runs, then waits to be stopped
# (perl: starts in milliseconds, a few MB each, so 2 x 70 of them stay light).
_READY_AT_ONCE = (
    "use Socket; socket(my $s, PF_UNIX, SOCK_DGRAM, 0) or die $!;"
    " (my $a = $ENV{NOTIFY_SOCKET}) =~ s/^@/\\0/;"
    " send($s, 'READY=1', 0, pack_sockaddr_un($a)) or die $!; sleep 600"
)


def test_many_workers_ready_at_once_are_all_heard(run: Harness) -> None:
    """More workers than the loop handles events per pass, all ready at once: a
    READY=1 read while a worker's Spawned is still queued is that worker's, not a
    stranger's (it was dropped, and the generation waited --ready-timeout)."""
    n = 70  # the HUP and 70 Spawned events exceed one pass of the loop
    status = run.tmp / "status"
    s = run.start(
        f"--port=127.0.0.1:{free_port()}",
        f"--status-file={status}",
        f"--workers={n}",
        "--wait-ready",
        "--ready-timeout=60",
        "--",
        "perl",
        "-e",
        _READY_AT_ONCE,
    )
    # Spawning 70 workers is one long pass on a loaded machine: generous deadlines.
    s.wait_line(r"new worker is now running, sending", timeout=50)
    first = read_status(status)
    assert len(first) == n and {g for g, _ in first} == {1}
    mark = s.mark()
    s.signal(signal.SIGHUP)
    s.wait_line(r"new worker is now running, sending", timeout=50, start=mark)
    wait_until(
        lambda: {g for g, _ in read_status(status)} == {2} and len(read_status(status)) == n,
        what="generation 2's workers alone",
        timeout=50,
    )
    assert not [line for line in s.lines if "not ready" in line or "outside it" in line]
