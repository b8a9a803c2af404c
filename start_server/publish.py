"""What the status files say: the core's snapshot as the plain entries and the JSON detail."""

from __future__ import annotations

import time

from .events import Publish, WorkerView
from .generations import State

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Any


def status_detail(snapshot: Publish, starter_pid: int, now: float) -> dict[str, Any]:
    """The JSON sidecar: what ``--status`` and ``--restart`` read."""
    wall = time.time()

    def view(g: WorkerView) -> dict[str, Any]:
        return {
            "generation": g.number,
            "worker": g.slot,
            "memory": g.memory,
            "fds": g.fds,
            "restarts": g.restarts,
            "pid": g.pid,
            "state": g.state.value,
            "ready": g.ready,
            "status": g.status,
            "spawned_at": wall - (now - g.spawned_at),
            "started_at": None if g.started_at is None else wall - (now - g.started_at),
        }

    return {
        "starter_pid": starter_pid,
        "last_generation": snapshot.last_number,
        "failed_generation": snapshot.failed_number,
        "failed_reason": snapshot.failed_reason,
        "failed_at": None if snapshot.failed_at is None else wall - (now - snapshot.failed_at),
        "next_attempt_at": (
            None if snapshot.next_attempt is None else wall + (snapshot.next_attempt - now)
        ),
        "generations": [view(g) for g in snapshot.generations],
        "workers": snapshot.workers,  # the live count (--workers, then --scale)
        "requests": [
            {"id": id, "state": state, "message": message}
            for id, state, message in snapshot.answers
        ],
        "last_event": snapshot.last_event,
        "last_event_at": (
            None if snapshot.last_event_at is None else wall - (now - snapshot.last_event_at)
        ),
        "rolling": (
            None if snapshot.roll is None
            else dict(zip(("generation", "started", "workers"), snapshot.roll))
        ),
        "updated_at": wall,
    }


def status_entries(snapshot: Publish) -> list[tuple[int, int]]:
    """The original's ``GEN:PID`` lines: generations that started and are alive."""
    return [
        (g.number, g.pid)
        for g in snapshot.generations
        if g.state in (State.ACTIVE, State.RETIRING) and g.started_at is not None
    ]
