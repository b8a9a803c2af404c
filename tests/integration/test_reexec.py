"""The starter re-executes itself lean once its options are read (reexec.py).

Seen from outside: the same pid, ``python -S .../start_server/starter.py
--hand-over=FD`` with the same arguments and interpreter flags, the options
neither in the starter's environment nor left open after they were read, no
PyYAML extension mapped after a ``--config`` start, the server program's
environment exactly the caller's, no signal left blocked, and the standard
library still first on the import path.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path
from typing import Optional

import pytest
from support import (
    APP,
    PY,
    Harness,
    first_worker,
    free_port,
    gen_of,
    http_get,
    proc_environ,
    wait_until,
)

from start_server.reexec import STARTER
from start_server.signals import USED


def _cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]


def _lean_cmdline(pid: int, *before: str) -> list[str]:
    """The lean command line, the hand-over's fd number (reused since) made ``FD``."""
    cmdline = _cmdline(pid)
    at = len(before) + 3  # PY, *before, -S, STARTER, --hand-over=N
    assert re.fullmatch(r"--hand-over=[0-9]+", cmdline[at]), cmdline
    return [*cmdline[:at], "--hand-over=FD", *cmdline[at + 1 :]]


def _open_files(pid: int) -> list[str]:
    fds = Path(f"/proc/{pid}/fd")
    return [os.readlink(fds / n) for n in os.listdir(fds)]


def _blocked(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            return int(line.split()[1], 16)
    raise AssertionError("no SigBlk line")


@pytest.mark.parametrize("pythonpath", [None, "/nonexistent/ours-is-not-theirs"])
def test_the_running_starter_is_the_same_process_re_executed_lean(
    run: Harness, pythonpath: Optional[str]
) -> None:
    port = free_port()
    pid_file, status = run.tmp / "pid", run.tmp / "status"
    args = [
        f"--port=127.0.0.1:{port}", f"--pid-file={pid_file}", f"--status-file={status}",
        "--interval=0.1", "--", PY, APP,
    ]
    env = {"PYTHONPATH": pythonpath} if pythonpath else None
    s = run.start(*args, env=env)
    worker = first_worker(s)
    assert int(pid_file.read_text()) == s.pid  # exec keeps the pid
    assert _lean_cmdline(s.pid) == [PY, "-S", STARTER, "--hand-over=FD", *args]
    # The options are read once and closed, and never were in any environment.
    assert not [f for f in _open_files(s.pid) if "hand-over" in f]
    for pid in (s.pid, worker):
        assert str(status) not in Path(f"/proc/{pid}/environ").read_text(errors="replace")
    seen = proc_environ(worker)
    assert seen.get("PYTHONPATH") == pythonpath
    # Held across the exec, then unblocked by the loop; the worker gets an empty mask.
    assert _blocked(s.pid) & sum(1 << (sig - 1) for sig in USED) == 0
    assert _blocked(worker) == 0
    s.signal(signal.SIGHUP)
    wait_until(lambda: gen_of(http_get(port)) == 2, what="generation 2 to serve")
    s.signal(signal.SIGTERM)
    assert s.wait() == 0


def test_a_config_file_start_drops_the_yaml_parser(run: Harness) -> None:
    yaml = pytest.importorskip("yaml")
    if not yaml.__with_libyaml__:
        pytest.skip("PyYAML without its C extension: nothing mapped to look for")
    port = free_port()
    status = run.tmp / "status"
    cfg = run.tmp / "s.yaml"
    cfg.write_text(
        f"port: 127.0.0.1:{port}\nstatus-file: {status}\ninterval: 0.1\n"
        f"command: [{PY}, {APP}]\n"
    )
    s = run.start(f"--config={cfg}")
    first_worker(s)
    maps = Path(f"/proc/{s.pid}/maps").read_text()
    assert "_yaml" not in maps, "the running starter still holds PyYAML's extension"
    assert _cmdline(s.pid)[1] == "-S"
    assert gen_of(http_get(port)) == 1


def test_interpreter_flags_are_kept(run: Harness) -> None:
    port = free_port()
    status = run.tmp / "status"
    args = [f"--port=127.0.0.1:{port}", f"--status-file={status}", "--interval=0.1", "--", PY, APP]
    s = run.start(*args, argv0=[PY, "-I", "-X", "utf8", "-m", "start_server"])
    first_worker(s)
    assert _lean_cmdline(s.pid, "-I", "-X", "utf8") == [
        PY, "-I", "-X", "utf8", "-S", STARTER, "--hand-over=FD", *args
    ]
    s.signal(signal.SIGHUP)
    wait_until(lambda: gen_of(http_get(port)) == 2, what="generation 2 to serve")
    s.signal(signal.SIGTERM)
    assert s.wait() == 0


def test_the_standard_library_stays_ahead_of_site_packages(run: Harness) -> None:
    """A module in site-packages named like a standard one (an old backport)
    must not shadow it in the lean process any more than in the full one."""
    venv = run.tmp / "venv"
    subprocess.run([PY, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    vpy = str(venv / "bin" / "python")
    site = subprocess.run(
        [vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, timeout=30,
    ).stdout.strip()
    # This venv sees the test environment's packages (ours, click) through a .pth.
    import click

    import start_server

    ours = [str(Path(str(m.__file__)).resolve().parent.parent) for m in (start_server, click)]
    (Path(site) / "outer.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n")
    (Path(site) / "selectors.py").write_text(
        'raise ImportError("a site-packages selectors shadowed the standard one")\n'
    )
    port = free_port()
    status = run.tmp / "status"
    s = run.start(
        f"--port=127.0.0.1:{port}", f"--status-file={status}", "--interval=0.1",
        "--", PY, APP, argv0=[vpy, "-m", "start_server"],
    )
    first_worker(s)
    assert _cmdline(s.pid)[1:3] == ["-S", STARTER]
    assert gen_of(http_get(port)) == 1
    s.signal(signal.SIGTERM)
    assert s.wait() == 0, s.output
