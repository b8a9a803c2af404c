"""When --auto-restart is due: the whole generation's restart (one worker, by
the original's rules) and, with --workers, each worker's own (jittered)."""

from __future__ import annotations

from .generations import State

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Optional

    from .generations import Generation, Worker
    from .policy import Policy
    from .replacements import Replacements


def generation_due(
    p: Policy, cur: Optional[Generation], has_olds: bool, blocked: bool
) -> Optional[tuple[float, bool]]:
    """(when, forced) of the next whole-generation auto-restart; ``blocked``:
    stopping, a new generation waiting for the backoff, or one starting."""
    if not p.auto_restart or p.workers > 1 or blocked:
        return None
    if cur is None or cur.started_at is None:
        return None
    base = cur.started_at + cur.jitter
    if has_olds:
        return (base + 2 * p.auto_restart_interval, True)
    return (base + p.auto_restart_interval, False)


def workers_due(
    p: Policy, cur: Optional[Generation], slots: Replacements, stopping: bool
) -> list[tuple[float, Worker]]:
    """With --workers, each running worker's own auto-restart deadline
    (none for a slot whose replacement is already on its way)."""
    if not p.auto_restart or p.workers <= 1 or cur is None or stopping:
        return []
    busy = slots.busy_slots(cur)
    return [
        (w.started_at + p.auto_restart_interval + w.jitter, w)
        for w in cur.workers
        if w.state is State.ACTIVE and w.started_at is not None and w.slot not in busy
    ]
