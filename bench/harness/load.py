"""Load: one bounded wrk run, a bounded stream of HUPs, CPU affinity for what starts."""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import threading
import time
from typing import Any, Optional

from harness.common import LUA, BenchError

WRK_CONNS, WRK_THREADS, WRK_TIMEOUT = 50, 2, 2


def wrk(port: int, seconds: int) -> dict[str, Any]:
    """One wrk run (its -d takes whole seconds)."""
    cmd = [
        shutil.which("wrk") or "/usr/bin/wrk",
        "-t",
        str(WRK_THREADS),
        "-c",
        str(WRK_CONNS),
        "-d",
        f"{int(seconds)}s",
        "--timeout",
        f"{WRK_TIMEOUT}s",
        "-s",
        LUA,
        f"http://127.0.0.1:{port}/",
    ]
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30, check=False)
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    m = re.search(r"^BENCH_JSON (\{.*\})\s*$", r.stdout, re.M)
    if r.returncode != 0 or m is None:
        raise BenchError(f"wrk failed ({r.returncode}): {r.stdout[-500:]} {r.stderr[-500:]}")
    d: dict[str, Any] = json.loads(m.group(1))
    d["rps"] = d["requests"] / (d["duration_us"] / 1e6)
    d["failed"] = d["connect"] + d["read"] + d["write"] + d["status"] + d["timeout"]
    # wrk's own CPU time (the only child reaped meanwhile): how much it leaves the app.
    d["wrk_cpu_s"] = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    return d


class HupSender(threading.Thread):
    """SIGHUP every ``period`` for ``duration``: a bounded number of signals."""

    def __init__(self, pid: int, period: float, duration: float) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.period = period
        self.count = max(0, int(duration / period + 1e-9) - 1)  # strictly inside the load
        self.sent = 0
        self.halt = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        for k in range(1, self.count + 1):
            if self.halt.wait(max(0.0, start + k * self.period - time.monotonic())):
                return
            try:
                os.kill(self.pid, signal.SIGHUP)
            except ProcessLookupError:
                return
            self.sent += 1

    def stop(self) -> None:
        self.halt.set()
        self.join(5)


@contextlib.contextmanager
def affinity(cpus: Optional[set[int]]) -> Any:
    """Children started inside inherit ``cpus`` (None: leave as is)."""
    if not cpus:
        yield
        return
    saved = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)
