"""Defects the model-based test (test_core_model.py) found in the core, one test each.

Most come from the loop's FIFO queue: a Spawn's answer (``Spawned`` or
``SpawnFailed``) is queued behind the events already waiting, so the core must
expect other events between asking for a process and hearing about it.

Worker ``slot`` of generation ``n`` runs as pid ``100 * n + slot``.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from core_support import make, spawns

from start_server.core import (
    Exit,
    Exited,
    Kill,
    Measured,
    Signalled,
    Spawned,
    SpawnFailed,
    Start,
    State,
    Supervisor,
    Tick,
)

if TYPE_CHECKING:
    from start_server.core import Action

TERM, KILL, HUP = signal.SIGTERM, signal.SIGKILL, signal.SIGHUP


def kills(acts: list[Action]) -> list[tuple[int, int, bool]]:
    return [(a.pid, a.signum, a.group) for a in acts if isinstance(a, Kill)]


def exits(acts: list[Action]) -> list[int]:
    return [a.code for a in acts if isinstance(a, Exit)]


def spawned(s: Supervisor, n: int, slot: int, now: float) -> list[Action]:
    return s.handle(Spawned(n, 100 * n + slot, {}, slot), now)


def gone(s: Supervisor, pid: int, now: float) -> list[Action]:
    return s.handle(Exited(pid, 0, "exit code 0"), now)


def boot(s: Supervisor) -> float:
    """Generation 1, all workers spawned at 0 and started at --interval."""
    s.handle(Start(), 0.0)
    for k in range(s.policy.workers):
        spawned(s, 1, k, 0.0)
    s.handle(Tick(), s.policy.interval)
    assert s.gens[1].state is State.ACTIVE
    return s.policy.interval


def test_a_worker_spawned_for_a_generation_told_to_stop_meanwhile_is_stopped_too() -> None:
    """HUP and TERM in one pass: the new worker's Spawned comes after the TERM.

    It joined its retiring generation unsignalled, so the starter waited for it
    forever and never exited.
    """
    s = make(interval=1.0)
    t = boot(s)
    assert spawns(s.handle(Signalled(HUP), t + 1)) == [(2, 0)]
    acts = s.handle(Signalled(TERM), t + 1)
    assert (100, TERM, False) in kills(acts)
    acts = spawned(s, 2, 0, t + 1)
    assert (200, TERM, False) in kills(acts), "the late worker was never told to stop"
    gone(s, 100, t + 2)
    assert exits(gone(s, 200, t + 2)) == [0]


def test_a_worker_spawned_for_a_generation_that_failed_meanwhile_is_stopped() -> None:
    """--workers 2: slot 0's spawn fails before slot 1's Spawned is handled.

    The generation had failed and was gone, so slot 1's worker was ignored: a
    live process nobody listed, signalled or waited for.
    """
    s = make(workers=2, interval=1.0)
    t = boot(s)
    assert spawns(s.handle(Signalled(HUP), t + 1)) == [(2, 0), (2, 1)]
    s.handle(SpawnFailed(2, "fork failed", 0), t + 1)
    acts = spawned(s, 2, 1, t + 1)
    assert (201, TERM, False) in kills(acts), "the late worker was never told to stop"
    assert s.by_pid(201) is not None  # supervised until it exits
    gone(s, 201, t + 2)
    assert 2 not in s.gens
    assert s.gens[1].state is State.ACTIVE


def test_giving_up_on_the_first_generation_waits_for_a_sibling_spawned_meanwhile() -> None:
    """--workers 2, the first generation: slot 0 cannot be spawned, slot 1 can.

    The starter exited 1 at once, and slot 1's worker, whose Spawned was still
    queued, was left running with nobody to stop it.
    """
    s = make(workers=2)
    assert spawns(s.handle(Start(), 0.0)) == [(1, 0), (1, 1)]
    acts = s.handle(SpawnFailed(1, "fork failed", 0), 0.0)
    assert exits(acts) == [], "exited with a spawn still unanswered"
    acts = spawned(s, 1, 1, 0.0)
    assert (101, KILL) in [(pid, sig) for pid, sig, _ in kills(acts)]
    assert exits(acts) == []
    assert exits(gone(s, 101, 0.1)) == [1]


def test_a_spawn_failing_in_a_generation_that_already_failed_schedules_nothing() -> None:
    """--workers 3: slot 1's spawn fails (the generation fails), then slot 2's.

    Slot 2 got a respawn time in a generation that would never respawn it, and
    next_deadline() stayed at that time: a busy loop.
    """
    s = make(workers=3, interval=1.0, backoff_max=4.0)
    t = boot(s)
    s.handle(Signalled(HUP), t + 1)
    spawned(s, 2, 0, t + 1)
    s.handle(SpawnFailed(2, "fork failed", 1), t + 1)
    s.handle(SpawnFailed(2, "fork failed", 2), t + 1)
    for _ in range(6):
        due = s.next_deadline()
        if due is None:
            break
        for n, k in spawns(s.handle(Tick(), due)):
            spawned(s, n, k, due)
        after = s.next_deadline()
        assert after is None or after > due, f"next_deadline() stays at {due}"


def test_in_place_replacements_one_at_a_time_even_before_the_first_is_spawned() -> None:
    """--workers 3, two workers over --max-memory: the second replacement waits
    until the first has started, also while the first's Spawned is still queued."""
    s = make(workers=3, interval=1.0, max_memory=100, health_check_interval=1.0)
    t = boot(s)
    for _ in range(2):  # over the limit on two checks in a row
        t = s.next_deadline() or 0.0
        s.handle(Tick(), t)
        acts = s.handle(Measured({100: 10, 101: 500, 102: 500}), t)
    assert spawns(acts) == [(1, 1)]
    acts = s.handle(Tick(), t)  # another event of the same pass, before the Spawned
    assert spawns(acts) == [], "a second replacement while the first was being spawned"
    after = s.next_deadline()
    assert after is None or after > t


def test_a_slot_respawn_of_a_generation_being_replaced_leaves_no_stale_deadline() -> None:
    """--workers 2: slot 1 crash-loops, then a restart starts generation 2.

    Generation 1's pending slot respawn can no longer fire (it is not current),
    but next_deadline() kept returning it: a busy loop until generation 1 left.
    """
    s = make(workers=2, interval=1.0, min_uptime=5.0, kill_old_delay=10.0, backoff_max=30.0)
    t = boot(s)
    gone(s, 101, t + 0.5)  # first crash in a row: respawned at once
    s.handle(Spawned(1, 111, {}, 1), t + 0.5)
    s.handle(Tick(), t + 1.5)
    gone(s, 111, t + 2.0)  # second: slot 1 waits 2 s
    assert (1, 1) in s.slot_respawn
    s.handle(Signalled(HUP), t + 2.1)
    spawned(s, 2, 0, t + 2.1)
    spawned(s, 2, 1, t + 2.1)
    s.handle(Tick(), t + 3.1)  # generation 2 started; generation 1 retires at t + 13.1
    assert s.current() is s.gens[2]
    due = s.next_deadline()
    assert due is not None
    s.handle(Tick(), due)
    after = s.next_deadline()
    assert after is None or after > due, f"next_deadline() stays at {due}"


def test_term_with_every_worker_of_the_serving_generation_dead_exits() -> None:
    """--workers 2: both workers died and wait for their respawn when TERM comes.

    The empty generation was retired but, with no worker left to exit, never
    forgotten: the starter never exited.
    """
    s = make(workers=2, interval=1.0, min_uptime=5.0)
    t = boot(s)
    assert spawns(gone(s, 100, t + 0.1)) == [(1, 0)]  # the first crash: at once
    s.handle(SpawnFailed(1, "fork failed", 0), t + 0.1)
    gone(s, 101, t + 0.2)
    assert s.gens[1].workers == []
    assert exits(s.handle(Signalled(TERM), t + 0.3)) == [0]
