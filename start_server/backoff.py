"""Failed starts in a row, and how long the next attempt waits for them."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Any, Optional

    from .policy import Policy

# From the second failure in a row on, the delay doubles from at least this
# (seconds) and is never shorter, whatever --interval and --backoff-max say:
# with --interval 0 a command that exits at once would otherwise be retried in
# a busy loop, forever. The first retry still waits only --interval, as the
# original's does, and a deploy (HUP) never waits for the backoff.
BACKOFF_FLOOR = 0.05


class Backoff:
    """The count of failed starts in a row; a start ends the run of failures.

    States: *clear* (``failures == 0``), *failing* (``failures >= 1``). A
    success is only remembered (``last_success_at``): the count starts over
    at the next failure, unless that failure is the early death of the very
    worker whose start it was (a crash loop).
    """

    def __init__(self) -> None:
        self.failures = 0  # consecutive failed starts
        self.last_failure_at: Optional[float] = None
        self.last_success_at: Optional[float] = None

    def delay(self, p: Policy) -> float:
        """--interval doubled for each failure in a row after the first, capped;
        from the second on, doubled from at least ``BACKOFF_FLOOR``."""
        if self.failures <= 1:
            return float(p.interval)
        cap = max(p.backoff_max, p.interval, BACKOFF_FLOOR)
        return float(min(max(p.interval, BACKOFF_FLOOR) * 2 ** (self.failures - 1), cap))

    def succeeded(self, now: float) -> None:
        self.last_success_at = now

    def clear(self) -> None:
        """A worker ran long enough: whatever failed before is over."""
        self.failures = 0

    def failed(self, now: float, started_at: Optional[float] = None) -> int:
        """One more failure in a row, or the first one since a start; the count.

        ``started_at``: when the worker that died early had started (a crash),
        None for a start that failed.
        """
        success = self.last_success_at
        if (
            success is not None
            and (self.last_failure_at is None or success > self.last_failure_at)
            and (started_at is None or started_at != success)
        ):
            self.failures = 0
        self.failures += 1
        self.last_failure_at = now
        return self.failures

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Backoff:
        b = cls()
        b.failures = int(d["failures"])
        b.last_failure_at = d["last_failure_at"]
        b.last_success_at = d["last_success_at"]
        return b
