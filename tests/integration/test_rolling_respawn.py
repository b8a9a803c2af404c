"""--rolling never makes an outage longer: the last serving worker that dies is
replaced at once, even while more than K retiring workers (a scale down) are
still leaving."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
from support import Harness, free_port, gone, wait_until

# A worker that ignores TERM (from before --interval says it started): a retiring
# one stays until --stop-timeout.
STUBBORN = "trap '' TERM; exec sleep 600"


def _workers(status: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads(Path(f"{status}.json").read_text()).get("generations", []))
    except (OSError, ValueError):
        return []


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
