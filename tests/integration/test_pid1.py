"""start_server as PID 1 of a PID namespace, as in a container without an init.

    unshare --pid --fork --kill-child start_server --port ... -- prog

The kernel delivers to PID 1 only the signals it has a handler for, and every
orphan in the namespace becomes PID 1's child. So: HUP, TERM and INT must
work, orphans must be reaped (no zombie piles up), and a stop must stop and
reap everything the workers left behind before the starter exits (when PID
1 exits, the kernel SIGKILLs whatever is left in the namespace).

``unshare`` itself ignores TERM and INT while it waits, so the tests signal
the starter, its child, found through /proc/<unshare>/task/*/children.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from support import APP, PY, Harness, Proc, free_port, gone, http_get, wait_until

# Worker wrapper: leave an orphan that exits once re-parented (only its new
# parent, the starter, can reap it), then become the test app with 2 forked
# children that ignore TERM.
ORPHANS = f'''\
import os, time
r, w = os.pipe()
middle = os.fork()
if middle == 0:
    if os.fork() == 0:
        parent = os.getppid()
        os.write(w, b"x")  # the middle may go now
        while os.getppid() == parent:  # until the kernel re-parented us
            time.sleep(0.01)
        print(f"orphan {{os.getpid()}} parent {{os.getppid()}}", flush=True)
        os._exit(0)
    os.read(r, 1)
    os._exit(0)
os.waitpid(middle, 0)
os.execv({PY!r}, [{PY!r}, {APP!r}, "--fork", "2"])
'''

HANDLED = (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
           signal.SIGCHLD)


def _unshare_works() -> str:
    """'' if a PID namespace can be made here, else why not."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    r = subprocess.run(["unshare", "--pid", "--fork", "true"], capture_output=True, text=True,
                       timeout=30, check=False)
    return "" if r.returncode == 0 else f"unshare --pid --fork fails here: {r.stderr.strip()}"


@pytest.fixture(scope="module")
def pid_namespaces() -> None:
    why = _unshare_works()
    if why:
        pytest.skip(f"no PID namespace on this machine ({why}); start_server as PID 1 untested")


def _stat(pid: int) -> tuple[str, int]:
    """(state, parent pid) from /proc/<pid>/stat."""
    data = Path(f"/proc/{pid}/stat").read_bytes()
    fields = data[data.rfind(b")") + 2 :].split()
    return fields[0].decode(), int(fields[1])


def _ns_pid(pid: int) -> int:
    """The pid inside its innermost PID namespace."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("NSpid:"):
            return int(line.split()[-1])
    raise AssertionError(f"no NSpid for {pid}")


def _in_namespace(starter: int) -> dict[int, tuple[str, int, int]]:
    """Every process of the starter's PID namespace: outer pid -> (state, ppid, inner pid)."""
    ns = os.readlink(f"/proc/{starter}/ns/pid")
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            if os.readlink(f"/proc/{pid}/ns/pid") != ns:
                continue
            state, ppid = _stat(pid)
            out[pid] = (state, ppid, _ns_pid(pid))
        except OSError:
            continue  # gone meanwhile
    return out


def _caught(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigCgt")


@pytest.mark.usefixtures("pid_namespaces")
@pytest.mark.parametrize(
    ("stop_with", "mount_proc"),
    [(signal.SIGTERM, False), (signal.SIGINT, True)],
    # A container mounts its own /proc; a bare unshare leaves the host's, where
    # the starter's children have other numbers than the ones it can signal.
    ids=["TERM-host-proc", "INT-own-proc"],
)
def test_start_server_as_pid_1(run: Harness, stop_with: signal.Signals, mount_proc: bool) -> None:
    port = free_port()
    wrapper = run.tmp / "orphans.py"
    wrapper.write_text(ORPHANS)
    outer = Proc(
        ["unshare", "--pid", "--fork", "--kill-child", *(["--mount-proc"] if mount_proc else []),
         PY, "-m", "start_server",
         f"--port=127.0.0.1:{port}", "--interval=0.2", "--stop-timeout=1", "--", PY, str(wrapper)],
        env=run.env(), cwd=str(run.tmp),
    )
    run.procs.append(outer)

    def child_of_unshare() -> int:
        kids = " ".join(p.read_text() for p in Path(f"/proc/{outer.pid}/task").glob("*/children"))
        return int(kids.split()[0]) if kids.split() else 0

    starter = wait_until(child_of_unshare, what="the starter under unshare")
    try:
        assert _ns_pid(starter) == 1
        outer.wait_line(r"start_server\[1\] .*gen=1 pid=\d+ new worker \d+ is now running", 20)
        # A handler for every signal that matters: PID 1 would not even die of the others.
        mask = _caught(starter)
        assert all(mask & (1 << (s - 1)) for s in HANDLED), f"SigCgt {mask:x}"
        assert http_get(port).startswith("gen=1 ")

        # The orphan was re-parented to PID 1 and, having exited, reaped by it.
        orphan = int(outer.wait_line(r"orphan (\d+) parent 1$").group(1))
        wait_until(
            lambda: orphan not in {inner for _, _, inner in _in_namespace(starter).values()},
            what=f"orphan {orphan} to be reaped, not left a zombie",
        )

        # HUP: a restart; generation 1's forked children are stopped (TERM ignored -> KILL).
        mark = outer.mark()
        os.kill(starter, signal.SIGHUP)
        outer.wait_line(r"gen=2 pid=\d+ new worker \d+ is now running", 20, start=mark)
        outer.wait_line(r"gen=1 pid=\d+ old worker \d+ died", 20, start=mark)
        for _ in range(2):
            outer.wait_line(r"leftover process \d+ exited", 20, start=mark)

        # Settled: the starter, the worker, its 2 children. Nobody a zombie.
        def settled() -> dict[int, tuple[str, int, int]]:
            procs = _in_namespace(starter)
            ok = len(procs) == 4 and all(state != "Z" for state, _, _ in procs.values())
            return procs if ok else {}

        procs = wait_until(settled, timeout=20, what="4 live processes and no zombie")
        worker = next(p for p, (_, ppid, _) in procs.items() if ppid == starter)
        forked = sorted(inner for _, ppid, inner in procs.values() if ppid == worker)
        assert len(forked) == 2

        mark = outer.mark()
        os.kill(starter, stop_with)
        assert outer.wait(timeout=30) == 0  # unshare exits with the starter's status
    finally:
        if outer.proc.poll() is None:
            os.kill(starter, signal.SIGKILL)  # --kill-child takes the rest
    name = signal.Signals(stop_with).name[3:]
    out = "\n".join(line for line in outer.lines[mark:] if line != "<EOF>")
    assert re.search(rf"received {name}, sending TERM to all workers", out), out
    # Everything the worker left behind was stopped and reaped by the starter itself,
    # before it exited: not SIGKILLed by the kernel when PID 1 went away.
    for inner in forked:
        assert re.search(rf"stopping leftover process {inner}\b", out), out
        assert re.search(rf"leftover process {inner} exited", out), out
    assert out.rstrip().endswith(" exiting"), out


@pytest.mark.usefixtures("pid_namespaces")
def test_a_stop_as_pid_1_without_stop_timeout_ends_despite_a_leftover_ignoring_term(
    run: Harness,
) -> None:
    """No --stop-timeout and a leftover that ignores TERM: the starter waits the
    not-ready grace (10 s), then exits; as PID 1 the kernel then kills the leftover."""
    port = free_port()
    outer = Proc(
        ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc", PY, "-m", "start_server",
         f"--port=127.0.0.1:{port}", "--interval=0.3", "--", PY, APP, "--setsid-child"],
        env=run.env(), cwd=str(run.tmp),
    )
    run.procs.append(outer)
    starter = 0
    try:
        m = outer.wait_line(r"start_server\[1\] .*gen=1 pid=(\d+) new worker \d+ is now running",
                            20)
        worker = int(m.group(1))  # inside the namespace
        starter = int(Path(f"/proc/{outer.pid}/task/{outer.pid}/children").read_text().split()[0])

        def helper() -> int:
            """The double-forked helper, re-parented to the starter (PID 1)."""
            kids = [p for p, (state, ppid, inner) in _in_namespace(starter).items()
                    if ppid == starter and inner != worker and state != "Z"]
            return kids[0] if len(kids) == 1 else 0

        left = wait_until(helper, timeout=20, what="the helper re-parented to PID 1")
        inner = _in_namespace(starter)[left][2]
        os.kill(starter, signal.SIGTERM)
        outer.wait_line(rf"leaving leftover processes running: {inner} ", 30)
        # Its output pipe stays open until the kernel kills the leftover: the exit, not EOF.
        assert outer.proc.wait(timeout=30) == 0
    finally:
        if outer.proc.poll() is None and starter:
            os.kill(starter, signal.SIGKILL)  # --kill-child takes the rest
    wait_until(lambda: gone(left), timeout=20, what="the kernel to kill the leftover")
