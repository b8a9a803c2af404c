"""Leftovers: children of the starter that are no worker (re-parented to it
when the worker that started them died), stopped as workers are: TERM at once,
KILL once --stop-timeout has passed. Without --stop-timeout a stop waits for
them a bounded grace, then exits without them."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Any, Optional


class LeftoverPids:
    def __init__(self) -> None:
        self.since: dict[int, Optional[float]] = {}  # pid -> when signalled (None: killed)

    def __contains__(self, pid: int) -> bool:
        return pid in self.since

    def __bool__(self) -> bool:
        return bool(self.since)

    def stopping(self, pid: int, now: float) -> None:
        """``pid`` was sent TERM at ``now``."""
        self.since[pid] = now

    def exited(self, pid: int) -> bool:
        """``pid`` is gone: True if it was a leftover."""
        return self.since.pop(pid, 0) != 0

    def terminated(self) -> list[int]:
        """Those sent TERM and not yet KILL (a stop sends them TERM again, and
        their grace or --stop-timeout counts from that TERM)."""
        return [pid for pid, since in self.since.items() if since is not None]

    def due(self, grace: Optional[float]) -> list[tuple[float, int]]:
        """When each still to be killed is due for KILL (none without a grace)."""
        if grace is None:
            return []
        return [(since + grace, pid) for pid, since in self.since.items() if since is not None]

    def forget(self, pid: int) -> None:
        """No longer wait for ``pid`` (left running)."""
        self.since.pop(pid, None)

    def killed(self, pid: int) -> None:
        self.since[pid] = None

    def to_dict(self) -> list[list[Any]]:
        return [[pid, when] for pid, when in self.since.items()]

    @classmethod
    def from_dict(cls, items: list[list[Any]]) -> LeftoverPids:
        left = cls()
        left.since = {int(pid): when for pid, when in items}
        return left
