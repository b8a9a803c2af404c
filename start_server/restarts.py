"""Requests for a new generation: one asked for (HUP, --restart, a verdict)
while a generation starts waits for it, and any more coalesce into that one;
after a failed start or a crash the next attempt is due at ``respawn_at``."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Any, Optional


class Restarts:
    def __init__(self) -> None:
        self.pending = False  # asked for while a start was in progress
        self.respawn_at: Optional[float] = None  # next attempt at a new generation

    def request(self, why: str, starting: Optional[int]) -> Optional[str]:
        """A restart asked for: None to start one now, else (generation
        ``starting`` is on its way) it is pending, and the line to log."""
        if starting is None:
            return None
        if self.pending:
            line = f"{why}: a restart is already pending; coalesced"
        else:
            line = (
                f"{why}: generation {starting} is still starting; "
                "one more restart will follow it"
            )
        self.pending = True
        return line

    def take_pending(self) -> bool:
        """True (once) if a restart waits for the start that just ended."""
        was, self.pending = self.pending, False
        return was

    def started(self) -> None:
        """A new generation is on its way: no attempt is due any more."""
        self.respawn_at = None

    def retry_at(self, when: float) -> None:
        self.respawn_at = when

    def cancel(self) -> None:
        """Stopping: nothing pending, nothing due."""
        self.pending = False
        self.respawn_at = None

    def to_dict(self) -> dict[str, Any]:
        return {"restart_pending": self.pending, "respawn_at": self.respawn_at}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Restarts:
        r = cls()
        r.pending = d.get("restart_pending", False)
        r.respawn_at = d.get("respawn_at")
        return r
