"""Workers replaced alone, in their slot (``--workers``): the second state machine of the core.

A slot of the current generation is, besides serving: *queued* (a verdict or
its own auto-restart asked for a new worker: ``queue``, one replacement spawned
at a time), *waiting* (its last replacement did not start: ``retry_at``, the
backoff), *spawning* (``Generation.pending``) or *starting* (a STARTING worker
in it). A generation that retires or is gone drops all of its slots' entries.
"""

from __future__ import annotations

from .generations import Generation, State

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from typing import Any, Optional

    Key = tuple[int, int]  # (generation, slot)
    Entry = tuple[int, int, str]  # (generation, slot, why)


class Replacements:
    """The queued replacements and the slots waiting out their backoff."""

    def __init__(self) -> None:
        self.queue: list[Entry] = []  # in-place replacements to do, oldest first
        self.retry_at: dict[Key, float] = {}  # (generation, slot) -> when to try again

    def enqueue(self, number: int, slot: int, why: str) -> None:
        if all((n, s) != (number, slot) for n, s, _ in self.queue):
            self.queue.append((number, slot, why))

    def retry(self, number: int, slot: int, when: float) -> None:
        self.retry_at[(number, slot)] = when

    def spawned(self, number: int, slot: int) -> None:
        """A worker for the slot is being spawned: its wait is over."""
        self.retry_at.pop((number, slot), None)

    def drop(self, number: int) -> None:
        """A generation that is gone or replaced gets no worker replaced alone."""
        for key in [k for k in self.retry_at if k[0] == number]:
            del self.retry_at[key]
        self.queue = [r for r in self.queue if r[0] != number]

    def drop_slots(self, number: int, first: int) -> None:
        """Generation ``number`` was scaled down to ``first`` slots: none at or above
        it is replaced any more."""
        for key in [k for k in self.retry_at if k[0] == number and k[1] >= first]:
            del self.retry_at[key]
        self.queue = [r for r in self.queue if r[0] != number or r[1] < first]

    def clear(self) -> None:
        self.queue.clear()
        self.retry_at.clear()

    def busy_slots(self, g: Generation) -> set[int]:
        """Slots of ``g`` with a replacement queued, being spawned, starting or due again."""
        busy = {s for n, s, _ in self.queue if n == g.number}
        busy.update(g.pending)
        busy.update(w.slot for w in g.workers if w.state is State.STARTING)
        busy.update(s for n, s in self.retry_at if n == g.number)
        return busy

    def next(self, cur: Generation) -> Optional[Entry]:
        """The replacement to start now in ``cur``, the current generation, if it
        is settled (nothing spawning or starting) and the slot is not waiting."""
        if cur.pending or any(w.state is State.STARTING for w in cur.workers):
            return None
        nxt = next((r for r in self.queue if r[0] == cur.number), None)
        if nxt is None or (nxt[0], nxt[1]) in self.retry_at:
            return None
        return nxt

    def take(self, entry: Entry) -> None:
        """``entry`` (from ``next``) is carried out; entries of other generations are void."""
        self.queue = [r for r in self.queue if r[0] == entry[0] and r != entry]

    def waiting(self, number: int) -> list[tuple[float, Key]]:
        """(when, key) of generation ``number``'s slots waiting out their backoff."""
        return [(when, key) for key, when in self.retry_at.items() if key[0] == number]

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue": [list(e) for e in self.queue],
            "retry_at": [[n, s, when] for (n, s), when in self.retry_at.items()],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Replacements:
        r = cls()
        r.queue = [(int(n), int(s), str(why)) for n, s, why in d["queue"]]
        r.retry_at = {(int(n), int(s)): float(when) for n, s, when in d["retry_at"]}
        return r
