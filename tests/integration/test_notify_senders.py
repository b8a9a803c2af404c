"""Readiness only from the generation: outsiders are refused, counted, and cheap.

The forger runs as another user (``nobody``: the private directory keeps it
out) and as the starter's own user (the kernel's credentials, checked when
the datagram is read, keep it out), and its senders exit at once, so that
their pid cannot be placed when the datagram is read.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from support import APPS, PY, Harness, Proc, free_port, http_get, read_status, wait_until
from unprivileged import NOBODY, Kit, kit

FORGE = str(APPS / "forge_notify.py")

__all__ = ["kit"]  # the fixture, used by name


def _forge(address: str, mode: str, amount: float, kit: Kit | None = None) -> dict[str, int]:
    """Run the forger, as root or (with ``kit``) as nobody."""
    argv = [PY, FORGE] if kit is None else [kit.python, kit.app("forge_notify.py")]
    as_nobody: dict[str, Any] = (
        {} if kit is None else {"user": NOBODY.pw_uid, "group": NOBODY.pw_gid, "extra_groups": []}
    )
    r = subprocess.run(
        [*argv, address, mode, str(amount)],
        capture_output=True, text=True, timeout=120, check=True, **as_nobody,
    )
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", r.stdout)}


def _ignored(s: Proc, number: int = 1) -> int:
    """How many notifications the starter's log says it ignored for ``number``."""
    total = 0
    for m in re.finditer(rf"ignored (a|\d+) notifications? to generation {number} ", s.output):
        total += 1 if m.group(1) == "a" else int(m.group(1))
    return total


def _waiting_generation(run: Harness) -> tuple[Proc, int, Path, str]:
    port = free_port()
    status = run.tmp / "status"
    s = run.start(f"--port=127.0.0.1:{port}", f"--status-file={status}", "--wait-ready",
                  "--ready-timeout=60", "--", PY, str(APPS / "app.py"))
    s.wait_line(r"gen=1 .*starting new worker")
    address = wait_until(lambda: http_get(port, "/env/NOTIFY_SOCKET").strip(),
                         what="the app to answer")
    return s, port, status, address


def _not_ready(s: Proc, status: Path) -> None:
    assert "is now running" not in s.output
    assert read_status(status) == []
    sidecar = Path(f"{status}.json")
    if sidecar.exists():  # written once there is something to say
        detail = json.loads(sidecar.read_text())
        assert not any(g["ready"] for g in detail["generations"]), detail
        assert "forged" not in sidecar.read_text()


def test_the_notify_socket_is_a_file_in_a_private_directory(run: Harness) -> None:
    s, _port, _status, address = _waiting_generation(run)
    assert address.startswith("/"), address
    directory = os.path.dirname(address)
    st = os.stat(directory)
    assert (st.st_uid, st.st_mode & 0o777) == (os.getuid(), 0o700)
    assert os.stat(address).st_mode & 0o777 == 0o600
    assert s.stop() == 0
    assert not os.path.exists(directory)


def test_senders_of_another_user_cannot_reach_the_socket(run: Harness, kit: Kit) -> None:
    s, _port, status, address = _waiting_generation(run)
    counts = _forge(address, "fork", 50, kit)
    assert counts == {"sent": 0, "refused": 51}, counts
    _not_ready(s, status)


def test_senders_of_the_same_user_outside_the_generation_are_dropped(run: Harness) -> None:
    s, _port, status, address = _waiting_generation(run)
    counts = _forge(address, "fork", 200)
    assert counts["sent"] == 201, counts
    # Every datagram accounted for in the log's summaries, none accepted.
    wait_until(lambda: _ignored(s) == 201, timeout=30, what="all 201 to be counted as ignored")
    assert re.search(r"\(last: pid \d+, uid 0: (already exited|not in its process tree)\)",
                     s.output)
    _not_ready(s, status)


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.timeout(120)
def test_a_notify_flood_is_summarised_and_costs_little(run: Harness) -> None:
    port = free_port()
    status = run.tmp / "status"
    s = run.start(f"--port=127.0.0.1:{port}", f"--status-file={status}", "--wait-ready",
                  "--ready-timeout=60", "--", PY, str(APPS / "app.py"), "--notify",
                  "--notify-delay=1")
    s.wait_line(r"gen=1 .*starting new worker")
    address = wait_until(lambda: http_get(port, "/env/NOTIFY_SOCKET").strip(),
                         what="the app to answer")
    before = _cpu_seconds(s.pid)
    flood_seconds = 4.0
    counts = _forge(address, "flood", flood_seconds)
    used = _cpu_seconds(s.pid) - before
    assert counts["sent"] > 300, counts
    # A starter reading as fast as the flood comes takes a whole CPU (1.5 s of
    # these 4 s on a loaded 2-core machine); reading a bounded budget, 0.05 s.
    assert used < 0.5, f"the starter used {used:.2f} s of CPU in the flood"
    # The generation's own READY=1 still gets through, and is the only one taken.
    s.wait_line(r"gen=1 .*is now running \(ready\)", timeout=60)
    wait_until(lambda: _ignored(s) == counts["sent"], timeout=30,
               what=f"all {counts['sent']} to be counted as ignored")
    summaries = len(re.findall(r"ignored .* to generation 1 ", s.output))
    assert summaries <= flood_seconds + 10, f"{summaries} log lines for one flood"
    assert "forged" not in Path(f"{status}.json").read_text()
