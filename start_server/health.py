"""Health verdicts: when a worker has outgrown --max-memory or its fd limit.

Each limit counts its own checks in a row over it; a verdict takes two, and
both counts start over after one (or while a verdict is being carried out).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Optional

    from .events import Fds
    from .generations import Worker
    from .policy import Policy


def mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def verdict(w: Worker, fds: Optional[Fds], p: Policy) -> Optional[tuple[str, str]]:
    """Count this check of ``w`` (its ``memory`` already set); (what it outgrew,
    the reason) once a limit is exceeded on two checks in a row."""
    mem = w.memory
    if p.max_memory is not None and mem is not None:
        w.over_limit = w.over_limit + 1 if mem > p.max_memory else 0
    limit = None if fds is None else p.fd_limit(fds.nofile)
    if fds is not None and limit is not None:
        w.over_fds = w.over_fds + 1 if fds.count > limit[0] else 0
    if w.over_limit >= 2 and p.max_memory is not None and mem is not None:
        w.over_limit = w.over_fds = 0
        return (
            f"uses {mib(mem)} > --max-memory {mib(p.max_memory)} (two checks in a row)",
            "memory limit",
        )
    if w.over_fds >= 2 and fds is not None and limit is not None:
        w.over_limit = w.over_fds = 0
        return f"holds {fds.describe()} > {limit[1]} (two checks in a row)", "fd limit"
    return None


def newly_unreadable(w: Worker, fds: Optional[Fds]) -> list[tuple[int, str]]:
    """The processes of ``w``'s tree whose fds could not be read, not reported
    before (each is left out of the count; one line the first time)."""
    new = [(pid, why) for pid, why in (() if fds is None else fds.unreadable)
           if pid not in w.unreadable]
    w.unreadable.update(pid for pid, _ in new)
    return new


class Checks:
    """When the next health check is due: armed when a generation first starts,
    then every --health-check-interval after each check."""

    def __init__(self) -> None:
        self.next_at: Optional[float] = None

    def arm(self, now: float, p: Policy) -> None:
        if p.checks_health and self.next_at is None:
            self.next_at = now + p.health_check_interval

    def due(self, p: Policy, stopping: bool) -> list[tuple[float, None]]:
        if stopping or not p.checks_health or self.next_at is None:
            return []
        return [(self.next_at, None)]

    def checked(self, now: float, p: Policy) -> None:
        self.next_at = now + p.health_check_interval
