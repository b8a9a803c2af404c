"""What a chaos run found: the accounting done once the run is over."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engine import Chaos

KILL_SLACK = 0.05  # a request begun this shortly after a SIGKILL may still have met it
AFTERMATH = 3.0  # how long an event may still make a --restart fail: backoff-max 2 s + a start
STARTED = re.compile(r"gen=(\d+) pid=(\d+) starting new worker")


@dataclass
class Verdict:
    violations: list[str] = field(default_factory=list)
    events: list[float] = field(default_factory=list)  # when each scheduled event began
    kills: list[float] = field(default_factory=list)  # when each worker was SIGKILLed
    broken: list[list[float]] = field(default_factory=list)  # [from, to] of broken deploys
    restarts: list[tuple[float, float, int, str]] = field(default_factory=list)
    spikes: list[int] = field(default_factory=list)  # pids that took a memory spike
    served: int = 0
    failed: int = 0
    excused: int = 0  # failures of requests in flight to a SIGKILLed worker
    replaced: int = 0  # spiked workers the log shows replaced for --max-memory

    def judge(self, chaos: Chaos) -> None:
        self.served = chaos.load.served
        self._requests(chaos)
        self._restarts()
        self._logs(chaos.logs(), chaos)

    def _requests(self, chaos: Chaos) -> None:
        """A refused connection is always a defect; any other failure is one unless
        a worker was SIGKILLed while the request was in flight (no answer can say
        which worker accepted a connection that died unanswered)."""
        self.failed = len(chaos.load.failures)
        for f in chaos.load.failures:
            at = f"{f.start - chaos.t0:.3f}-{f.end - chaos.t0:.3f}"
            if f.kind == "refused":
                self.violations.append(f"connection refused at {at}: {f.detail}")
            elif any(f.start - KILL_SLACK <= k <= f.end for k in self.kills):
                self.excused += 1
            else:
                self.violations.append(f"request failed at {at} ({f.kind}), no SIGKILL "
                                       f"in flight: {f.detail}")

    def _restarts(self) -> None:
        """``--restart`` may fail only when something else happened meanwhile or
        shortly before (a worker killed just before leaves no active generation for
        a backoff, and the original's --restart refuses that too)."""
        for start, end, rc, out in self.restarts:
            crossed = any(start - AFTERMATH < t < end for t in self.events if t != start) or any(
                b < end and start < e + AFTERMATH for b, e in self.broken)
            if rc != 0 and not crossed:
                self.violations.append(f"--restart exited {rc} with nothing else going on: {out}")

    def _logs(self, text: str, chaos: Chaos) -> None:
        if "Traceback" in text:
            self.violations.append("a traceback in the starter's log")
        started = {(int(g), int(p)) for g, p in STARTED.findall(text)}
        strangers = set(chaos.load.answered) - started
        if strangers:
            self.violations.append(f"answers from workers the log never started: {strangers}")
        self.replaced = sum(
            1 for pid in self.spikes if re.search(rf"pid={pid} .*--max-memory", text))
