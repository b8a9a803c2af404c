"""--max-open-files and --max-fd-fraction on the real program: a generation (a
worker) that leaks handles is replaced gracefully, and nobody notices."""

from __future__ import annotations

import contextlib
import json
import os
import re
import time

import pytest
from support import APPS, PY, ClientLoad, Harness, first_worker, free_port, read_status, wait_until

from start_server import procfs

FD_APP = str(APPS / "fd_app.py")


@pytest.mark.timeout(120)
def test_a_leaking_app_is_replaced_under_load_without_a_failed_request(run: Harness) -> None:
    port = free_port()
    marker = run.tmp / "leak"
    marker.touch()  # generation 1 takes it and leaks a socket per request; generation 2 not
    s = run.start(
        f"--port=127.0.0.1:{port}",
        "--wait-ready",
        "--max-open-files=100",
        "--health-check-interval=0.2",
        "--",
        PY,
        FD_APP,
        "--leak-per-request",
        f"--once={marker}",
    )
    leaker = first_worker(s)
    with ClientLoad(port, clients=8, timeout=15) as load:
        m = s.wait_line(
            r"gen=1 .*generation 1 holds (\d+) fds: (\d+) sockets(?:, \d+ [a-z ]+)* "
            r"> --max-open-files 100 \(two checks in a row\); restarting",
            timeout=60,
        )
        assert int(m.group(1)) >= int(m.group(2)) > 100  # mostly the leaked sockets
        s.wait_line(r"gen=2 .*new worker \d+ is now running \(ready\)", timeout=60)
        s.wait_line(rf"old worker {leaker} died", timeout=60)
        # Generation 2 serves on, under load, and is not replaced: it does not leak.
        wait_until(lambda: load.answered[2] >= 200, timeout=60, what="generation 2 serving")
    load.check()
    assert {1, 2} <= load.generations()
    assert len(re.findall(r"> --max-open-files", s.output)) == 1, s.output
    assert "gen=3" not in s.output


def test_the_fraction_of_each_workers_own_limit_replaces_that_worker_alone(
    run: Harness,
) -> None:
    port = free_port()
    status = run.tmp / "status"
    marker = run.tmp / "leak"
    marker.touch()  # the first worker to start holds 60 sockets; the other none
    s = run.start(
        f"--port=127.0.0.1:{port}",
        f"--status-file={status}",
        "--workers=2",
        "--wait-ready",
        "--max-fd-fraction=0.5",
        "--health-check-interval=0.2",
        "--",
        "sh",
        "-c",
        'ulimit -S -n 100 && exec "$0" "$@"',  # RLIMIT_NOFILE 100: a limit of 50 fds
        PY,
        FD_APP,
        "--hold=60",
        f"--once={marker}",
    )
    m = s.wait_line(
        r"worker (\d+) \(slot (\d)\) holds \d+ fds: 6\d sockets(?:, \d+ [a-z ]+)* > 50 "
        r"\(--max-fd-fraction 0\.5 of 100\) \(two checks in a row\); replacing it",
        timeout=30,
    )
    leaker, slot = int(m.group(1)), m.group(2)
    s.wait_line(rf"slot {slot}: replacing its worker \(fd limit\)")
    s.wait_line(rf"worker \d+ \(slot {slot}\) is now running \(ready\)", timeout=30)
    s.wait_line(rf"old worker {leaker} died", timeout=30)
    wait_until(
        lambda: len(read_status(status)) == 2 and leaker not in dict(read_status(status)).values(),
        what="the slot refilled",
    )
    assert {g for g, _ in read_status(status)} == {1}  # the same generation
    assert len(re.findall(r"> 50 \(--max-fd-fraction", s.output)) == 1, s.output


def test_status_sums_what_the_tree_holds_but_the_sockets_it_inherited(run: Harness) -> None:
    ports = [free_port() for _ in range(3)]
    status, pid_file = run.tmp / "status", run.tmp / "pid"
    s = run.start(
        *(f"--port=127.0.0.1:{p}" for p in ports),
        f"--status-file={status}",
        f"--pid-file={pid_file}",
        "--wait-ready",
        "--max-open-files=1000",
        "--memory-check-interval=0.2",  # the old name still works
        "--",
        PY,
        FD_APP,
        "--hold=5",
        "--child",  # holds the same 5 sockets and the inherited listeners: summed
    )
    worker = wait_until(lambda: read_status(status), what="a worker")[0][1]

    def links(pid: int) -> dict[int, str]:
        fds = {}
        for name in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(FileNotFoundError):
                fds[int(name)] = os.readlink(f"/proc/{pid}/fd/{name}")
        return fds

    def expected() -> int:
        """What the worker and its child hold, but fds 0-2 and what they share with
        the starter: the inherited listening sockets."""
        inherited = {link for link in links(s.pid).values() if link.startswith("socket:")}
        assert len(children) == 1, children
        return sum(
            1
            for pid in (worker, *children)
            for fd, link in links(pid).items()
            if fd > 2 and link not in inherited
        )

    def counted() -> object:
        d = json.loads((run.tmp / "status.json").read_text())
        return d["generations"][0].get("fds")

    children = wait_until(lambda: _children(worker), what="the worker's child")
    held = wait_until(
        lambda: (n := counted()) is not None and n == expected() and n,
        what="the count of what the worker holds",
    )
    assert held >= 10  # 5 sockets in each
    r = run.run("--status", f"--pid-file={pid_file}", f"--status-file={status}")
    assert r.returncode == 0, r.stderr
    header, row = r.stdout.splitlines()[1:3]
    assert row.split()[header.split().index("FDS")] == str(held), r.stdout


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as fh:
        return [int(x) for x in fh.read().split()]


def test_a_process_whose_fds_cannot_be_read_is_left_out_with_one_line(run: Harness) -> None:
    # The worker's child makes itself non-dumpable: only a starter that may ptrace
    # it reads its fds. Ours runs as root without CAP_SYS_PTRACE (or, not root, as a
    # user for whom that child's /proc/PID/fd is root's).
    drop = ["setpriv", "--bounding-set=-sys_ptrace"] if os.geteuid() == 0 else []
    status = run.tmp / "status"
    s = run.start(
        f"--port=127.0.0.1:{free_port()}",
        f"--status-file={status}",
        "--wait-ready",
        "--max-open-files=1000",
        "--health-check-interval=0.1",
        "--",
        PY,
        FD_APP,
        "--hold=3",
        "--hidden-child",
        argv0=[*drop, PY, "-m", "start_server"],
    )
    m = s.wait_line(
        r"gen=1 pid=(\d+) cannot read the fds of process (\d+) \(Permission denied\); "
        r"not counted",
        timeout=30,
    )
    worker, child = int(m.group(1)), int(m.group(2))
    assert procfs.parent_of(child) == worker
    # The worker itself is still counted: its 3 sockets at least.
    wait_until(
        lambda: json.loads((run.tmp / "status.json").read_text())["generations"][0]["fds"] >= 3,
        what="the worker's own fds counted",
    )
    # An observation window of about ten more checks: the line is not repeated.
    time.sleep(1.0)
    assert s.output.count("cannot read the fds") == 1, s.output
