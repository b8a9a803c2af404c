"""Rolling restarts (``--rolling K``): a new generation replaces the serving workers K at a time.

Nothing of a roll is stored: its state is read off the generations, so an
upgrade hands it over with them. A generation that starts under ``--rolling``
is, while STARTING:

- *spawning*: it has slots not yet spawned and there is room for them: fewer
  worker processes (any generation, any state, spawns on their way) than
  ``--workers`` + K. ``to_spawn`` names the slots, those the oldest code
  serves first, then lowest first;
- *waiting*: for a worker of its own to start, or an old one to exit (which
  makes room; a signalled worker is KILLed after ``--stop-timeout``);
- each of its workers that starts has one old serving worker signalled, as long
  as more than ``--workers`` would serve (``to_retire``: the one in its slot
  first, the oldest generation first); an old worker that died meanwhile is
  not replaced in its old generation: the roll makes up for it;
- *done* once all its workers have started (the generation has started), or
  *stopped* when one fails to start: what it started keeps serving until the old
  generation's emptied slots are filled again (``vacant``), one at a time, or
  *superseded* by a restart asked for meanwhile: its workers not yet started
  are stopped, and the next generation's roll replaces its started ones as it
  replaces the older generation's (``supersede``).

A started worker of the rolling generation that dies is a serving worker's
crash, not a failed start: its slot is respawned (at once, or after the backoff
of crashes in a row) and the roll goes on.

So the worker processes never outnumber ``--workers`` + K under ``--rolling``:
every spawn of the starter (a roll's, a worker replaced alone, a first start)
waits for room (``room``), except one while nothing else serves (only retiring
workers left, e.g. after a scale down, and the last serving one died), and a
started worker's respawn at once in its slot (exits.py): it takes the place of
the process that just died, so the count never rises above the one before. With
``--workers 1`` a roll is the original's restart (one new beside one old)
except that the old worker is signalled as soon as the new one started (no
``--kill-old-delay``), and that a new generation waits until no more than one
older process is left.
"""

from __future__ import annotations

from .events import Spawn
from .generations import State
from .spec import signal_name

TYPE_CHECKING = False  # typing is not loaded at run time (memory of a long-lived process)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Optional

    from .fleet import Fleet
    from .generations import Generation, Worker
    from .policy import Policy


def processes(gens: Iterable[Generation]) -> int:
    """Worker processes alive or on their way (asked for, not yet answered)."""
    return sum(len(g.workers) + len(g.pending) for g in gens)


def limit(p: Policy) -> Optional[int]:
    """The most worker processes at once: ``--workers`` + K under ``--rolling``, else None."""
    return p.workers + p.rolling if p.rolling else None


def room(p: Policy, gens: Iterable[Generation]) -> int:
    """How many more workers may be spawned now (no bound without ``--rolling``).
    Never none while nothing serves, starts or is on its way: retiring workers
    (a scale down leaves more than K) may fill the bound until ``--stop-timeout``,
    and an outage must not last that long for the bound's sake."""
    most = limit(p)
    if most is None:
        return 2**31
    gens = list(gens)
    left = max(most - processes(gens), 0)
    if left == 0 and not any(g.pending for g in gens) and all(
        w.state is State.RETIRING for g in gens for w in g.workers
    ):
        return 1
    return left


def to_spawn(
    p: Policy, g: Generation, gens: Iterable[Generation], waiting: Iterable[int] = ()
) -> list[int]:
    """The slots of ``g`` (STARTING, under ``--rolling``) to spawn now, lowest first;
    not those ``waiting`` out a crash's backoff (timers.py respawns them)."""
    if not p.rolling or g.state is not State.STARTING:
        return []
    gens = list(gens)
    taken = {w.slot for w in g.workers} | set(g.pending) | set(waiting)
    free = [s for s in range(p.workers) if s not in taken]
    free.sort(key=lambda s: (oldest_in(g, gens, s), s))
    return free[: room(p, gens)]


def oldest_in(g: Generation, gens: Iterable[Generation], slot: int) -> int:
    """The generation of the oldest worker serving ``slot`` for a generation other
    than ``g`` (``g``'s own number where none does): a roll takes the slots of the
    oldest code first, and each worker it starts retires the one in its slot."""
    return min((w.number for w in serving_olds(g, gens) if w.slot == slot), default=g.number)


def serving_olds(g: Generation, gens: Iterable[Generation]) -> list[Worker]:
    """The started, unsignalled workers of generations other than ``g``."""
    return [w for o in gens if o is not g for w in o.workers if w.state is State.ACTIVE]


def to_retire(p: Policy, g: Generation, gens: Iterable[Generation], slot: int) -> list[Worker]:
    """Old serving workers to signal now that ``g``'s worker in ``slot`` has started:
    as many as would serve beyond ``--workers``; the one in the same slot first,
    then by generation and slot."""
    gens = list(gens)
    olds = serving_olds(g, gens)
    started = sum(w.state is State.ACTIVE for w in g.workers)
    extra = len(olds) + started - p.workers
    if extra <= 0:
        return []
    olds.sort(key=lambda w: (w.slot != slot, w.number, w.slot))
    return olds[:extra]


def vacant(p: Policy, cur: Generation) -> list[int]:
    """Slots of ``cur`` with no worker serving, starting or on its way (a stopped
    roll took their workers): to be filled again, each in its slot."""
    held = {w.slot for w in cur.workers if w.state in (State.ACTIVE, State.STARTING)}
    return [s for s in range(p.workers) if s not in held and s not in cur.pending]


def successor_of(gens: Iterable[Generation], g: Generation, slot: int) -> Optional[int]:
    """The pid a new worker in ``slot`` of ``g`` (ACTIVE) takes over from: the
    serving worker in that slot of ``g``, else of a stopped roll's generation."""
    mine = [w for w in g.in_slot(slot) if w.state is State.ACTIVE]
    if mine:
        return mine[0].pid
    for o in gens:
        if o.state is State.RETIRING:
            theirs = [w for w in o.in_slot(slot) if w.state is State.ACTIVE]
            if theirs:
                return theirs[0].pid
    return None


def progress(p: Policy, g: Optional[Generation], serving: bool) -> Optional[tuple[int, int, int]]:
    """(generation, workers started, --workers) of a roll in progress: ``g``
    starting under ``--rolling`` while an older generation is ``serving``."""
    if not p.rolling or g is None or g.state is not State.STARTING or not serving:
        return None
    return (g.number, sum(w.state is State.ACTIVE for w in g.workers), p.workers)


# ---- the roll's rules, acting through the core's Fleet (called from starts.py,
# retries.py, exits.py and timers.py) -------------------------------------------------


def in_progress(f: Fleet) -> Optional[Generation]:
    """The generation rolling in now: ``--rolling`` and one is starting."""
    g = f.starting()
    return g if f.policy.rolling and g is not None else None


def due(f: Fleet, stopping: bool) -> list[tuple[float, Generation]]:
    """The rolling generation, due at once when it has slots to spawn and room."""
    g = in_progress(f)
    if stopping or g is None or not to_spawn(f.policy, g, f.gens.values(), _waiting(f, g)):
        return []
    return [(f.now, g)]


def _waiting(f: Fleet, g: Generation) -> list[int]:
    """Slots of ``g`` whose started worker crashed early: they wait out the backoff."""
    return [slot for _, (_, slot) in f.slots.waiting(g.number)]


def spawn(f: Fleet, g: Generation) -> None:
    """Spawn what ``to_spawn`` says, lowest slots first."""
    for slot in to_spawn(f.policy, g, f.gens.values(), _waiting(f, g)):
        g.pending.append(slot)
        f.out.append(Spawn(g.number, slot))


def started(f: Fleet, g: Generation, w: Worker, now: float) -> None:
    """``w`` of ``g`` has started: under ``--rolling``, an old worker goes for it."""
    p = f.policy
    if not p.rolling:
        return
    for old in to_retire(p, g, f.gens.values(), w.slot):
        f.log(
            f"rolling: generation {g.number}: sending {signal_name(p.signal_on_hup)} "
            f"to old worker {old.pid} (slot {old.slot})",
            old,
        )
        f.retire_worker(old, p.signal_on_hup, now, p.stop_timeout)


def supersede(f: Fleet, g: Generation, why: str, now: float) -> bool:
    """A restart asked for while ``g`` rolls in: the newest code rolls in at once
    instead. ``g``'s workers still starting (or on their way) are stopped, its
    started ones serve until the next generation's roll replaces them, as it
    replaces the older generation's. False (nothing done) without ``--rolling``
    or when nothing serves yet (a first start: the restart waits for it)."""
    p = f.policy
    if not p.rolling or f.current() is None:
        return False
    kept = [w for w in g.workers if w.state is State.ACTIVE]
    f.log(
        f"rolling: {why}: generation {g.number} is superseded; its workers not yet started "
        f"are stopped, its started ones ({','.join(str(w.pid) for w in kept) or 'none'}) "
        f"serve until generation {f.last_number + 1} replaces them"
    )
    f.retire(g, p.signal_on_hup, now, p.not_ready_grace, keep_serving=True)
    return True


def stop(f: Fleet, g: Generation, now: float) -> bool:
    """``g`` failed during its roll: stop its workers still starting, keep the
    started ones serving until the old generation's emptied slots are filled
    again. False (nothing done) when it started none or nothing else serves."""
    cur = f.current()
    kept = [w for w in g.workers if w.state is State.ACTIVE]
    if not f.policy.rolling or cur is None or not kept:
        return False
    p = f.policy
    for w in g.workers:
        w.failed_start = w.state is State.STARTING
    f.retire(g, p.signal_on_hup, now, p.not_ready_grace, keep_serving=True)
    holes = vacant(p, cur)
    f.log(
        f"rolling: stopped; generation {g.number}'s started workers "
        f"({','.join(str(w.pid) for w in kept)}) serve until slots "
        f"{','.join(map(str, holes)) or 'none'} of generation {cur.number} are filled again"
    )
    for slot in holes:
        f.slots.enqueue(cur.number, slot, "the roll stopped")
    return True
