"""The pure supervisor's crash backoff: what counts as a failure in a row, and what resets it.

A failed start (exited, not ready in time, spawn failed) counts; so does the
death of a started worker within ``--min-uptime`` of its start (a crash loop).
A start resets the count, unless the very worker that started then dies within
``--min-uptime``. A started worker that ran at least ``--min-uptime`` and then
dies is respawned at once, as the original always does.

Generation N runs as pid ``100 * N``; with ``--workers``, slot k of generation
N as ``100 * N + k`` and its replacements ``+ 10`` each.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import pytest
from core_support import logs, make, spawns

from start_server.backoff import BACKOFF_FLOOR, Backoff
from start_server.core import (
    Exited,
    Policy,
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


def spawned(s: Supervisor, n: int, now: float, slot: int = 0, pid: int = 0) -> None:
    s.handle(Spawned(n, pid or 100 * n + slot, {}, slot), now)


def died(s: Supervisor, pid: int, now: float) -> list[Action]:
    return s.handle(Exited(pid, 9, "killed by SIGKILL"), now)


def tick(s: Supervisor, now: float) -> list[Action]:
    return s.handle(Tick(), now)


def hup(s: Supervisor, now: float) -> list[Action]:
    return s.handle(Signalled(signal.SIGHUP), now)


def boot(s: Supervisor, now: float = 0.0) -> float:
    """Generation 1 spawned at ``now`` and started at its start check; returns when."""
    s.handle(Start(), now)
    for k in range(s.policy.workers):
        spawned(s, 1, now, k)
    t = now + s.policy.interval
    tick(s, t)
    assert s.gens[1].state is State.ACTIVE
    return t


# ---- a start resets the count of failed starts ---------------------------------------


def test_a_start_resets_the_failed_starts_count() -> None:
    s = make(interval=1.0, backoff_max=30.0)
    s.handle(Start(), 0.0)
    spawned(s, 1, 0.0)
    acts = died(s, 100, 0.1)  # generation 1 fails at once
    assert "failed starts in a row: 1" in logs(acts)
    assert spawns(tick(s, 1.0)) == [(2, 0)]
    spawned(s, 2, 1.0)
    tick(s, 2.0)
    assert s.gens[2].state is State.ACTIVE  # generation 2 started: it serves
    assert spawns(hup(s, 10.0)) == [(3, 0)]
    spawned(s, 3, 10.0)
    acts = died(s, 300, 10.1)  # generation 3 fails: the first failure since a start
    assert "failed starts in a row: 1" in logs(acts)
    assert s.next_deadline() == 11.0  # --interval after its spawn, not twice that


def test_a_start_resets_the_count_even_right_after_it() -> None:
    """The old generation's success is not revoked by a failure of the next deploy."""
    s = make(interval=1.0, min_uptime=5.0)
    s.handle(Start(), 0.0)
    spawned(s, 1, 0.0)
    died(s, 100, 0.1)
    tick(s, 1.0)
    spawned(s, 2, 1.0)
    tick(s, 2.0)
    hup(s, 2.1)
    spawned(s, 3, 2.1)
    acts = died(s, 300, 2.2)
    assert "failed starts in a row: 1" in logs(acts)


def test_failed_starts_still_back_off_without_a_start_in_between() -> None:
    s = make(interval=1.0, backoff_max=30.0)
    boot(s)
    hup(s, 10.0)
    n, t = 2, 10.0
    for count in (1, 2, 3):
        spawned(s, n, t)
        acts = died(s, 100 * n, t + 0.1)
        assert f"failed starts in a row: {count}" in logs(acts)
        due = s.next_deadline()
        assert due is not None
        assert due == t + 2 ** (count - 1)
        assert spawns(tick(s, due)) == [(n + 1, 0)]
        n, t = n + 1, due


# ---- the floor: --interval 0 is no busy loop ----------------------------------------


@pytest.mark.parametrize(
    ("interval", "backoff_max", "expected"),
    [
        (1.0, 30.0, [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]),  # the floor changes nothing
        (0.5, 3.0, [0.5, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0]),
        (0.0, 30.0, [0.0, 0.1, 0.2, 0.4, 0.8, 1.6, 3.2]),  # first retry at once, then doubling
        (0.01, 0.3, [0.01, 0.1, 0.2, 0.3, 0.3, 0.3, 0.3]),
        (0.0, 0.0, [0.0] + [BACKOFF_FLOOR] * 6),  # --backoff-max 0 cannot undo the floor
    ],
)
def test_backoff_delays(interval: float, backoff_max: float, expected: list[float]) -> None:
    b = Backoff()
    p = Policy(interval=interval, backoff_max=backoff_max)
    delays = []
    for n in range(len(expected)):
        b.failed(float(n))
        delays.append(round(b.delay(p), 9))
    assert delays == expected


def test_interval_zero_command_exiting_at_once_backs_off_from_the_floor() -> None:
    """--interval 0: the worker has started when it is spawned, and dies at once."""
    s = make(interval=0.0, backoff_max=30.0)
    acts = s.handle(Start(), 0.0)
    n, t, delays = 1, 0.0, []
    for _ in range(6):
        spawned(s, n, t)
        assert s.gens[n].state is State.ACTIVE
        acts = died(s, 100 * n, t)
        if spawns(acts):
            delays.append(0.0)
        else:
            due = s.next_deadline()
            assert due is not None
            delays.append(round(due - t, 9))
            acts = tick(s, due)
            t = due
        assert spawns(acts) == [(n + 1, 0)]
        n += 1
    assert delays == [0.0, 0.1, 0.2, 0.4, 0.8, 1.6]


def test_interval_zero_spawn_failures_back_off_from_the_floor() -> None:
    """--interval 0 and a command that cannot be executed any more; a deploy
    (HUP) during the backoff still starts at once."""
    s = make(interval=0.0, backoff_max=30.0)
    boot(s)
    acts = hup(s, 10.0)
    n, t, delays = 2, 10.0, []
    for _ in range(5):
        acts = s.handle(SpawnFailed(n, "No such file or directory"), t)
        assert "failed starts in a row" in logs(acts)
        if not spawns(acts):
            due = s.next_deadline()
            assert due is not None
            delays.append(round(due - t, 9))
            acts = tick(s, due)
            t = due
        else:
            delays.append(0.0)
        assert spawns(acts) == [(n + 1, 0)]
        n += 1
    assert delays == [0.0, 0.1, 0.2, 0.4, 0.8]
    acts = s.handle(SpawnFailed(n, "No such file or directory"), t)
    assert s.next_deadline() == t + 1.6
    assert spawns(hup(s, t + 0.01)) == [(n + 1, 0)]


# ---- --min-uptime: a serving worker that ran long enough is respawned at once -------


def test_serving_worker_killed_after_min_uptime_is_respawned_at_once_every_time() -> None:
    """The issue's scenario: SIGKILL of the serving worker each time its successor ran > 1 s."""
    s = make(interval=1.0, min_uptime=1.0, backoff_max=30.0)
    t = boot(s)  # generation 1 started at 1.0
    n = 1
    for _ in range(6):
        t += 1.5  # killed 1.5 s after its start
        acts = died(s, 100 * n, t)
        assert spawns(acts) == [(n + 1, 0)], logs(acts)
        assert "next attempt" not in logs(acts)
        n += 1
        spawned(s, n, t)
        t += 1.0
        tick(s, t)
        assert s.gens[n].state is State.ACTIVE


def test_death_within_min_uptime_of_the_start_is_a_crash_loop() -> None:
    s = make(interval=1.0, min_uptime=2.0, backoff_max=30.0)
    t = boot(s)  # started at 1.0
    acts = died(s, 100, t + 1.9)  # the first crash in a row: at once
    assert spawns(acts) == [(2, 0)]
    spawned(s, 2, 2.9)
    tick(s, 3.9)
    acts = died(s, 200, 5.8)  # 1.9 s after its start: a crash loop, it waits
    assert spawns(acts) == []
    assert "crashes in a row: 2" in logs(acts)
    assert s.next_deadline() == 7.8  # 2 x --interval
    assert spawns(tick(s, 7.8)) == [(3, 0)]


def test_uptime_counts_from_the_start_not_the_spawn() -> None:
    s = make(interval=1.0, min_uptime=1.0)
    t = boot(s)
    died(s, 100, t + 5.0)  # ran long: at once, no count
    spawned(s, 2, t + 5.0)
    tick(s, t + 6.0)  # started 1 s after its spawn
    acts = died(s, 200, t + 6.5)  # 1.5 s after its spawn, 0.5 s after its start
    assert spawns(acts) == [(3, 0)]  # the first crash in a row
    assert "crashes in a row" not in logs(acts)
    spawned(s, 3, t + 6.5)
    tick(s, t + 7.5)
    acts = died(s, 300, t + 8.0)  # again 0.5 s after its start: the second in a row
    assert spawns(acts) == []
    assert "crashes in a row: 2" in logs(acts)


def test_a_long_run_clears_a_crash_loop_of_long_ago() -> None:
    s = make(interval=1.0, min_uptime=1.0, backoff_max=30.0)
    t = boot(s)
    for n in (1, 2, 3):  # three quick crashes: 1, 2, 3 in a row
        t += 0.5
        if not spawns(died(s, 100 * n, t)):
            t = s.next_deadline() or 0.0
            assert spawns(tick(s, t)) == [(n + 1, 0)]
        spawned(s, n + 1, t)
        t += 1.0
        tick(s, t)
    assert s.failures == 3
    acts = died(s, 400, t + 100.0)  # generation 4 ran 100 s: a stable run
    assert spawns(acts) == [(5, 0)]
    spawned(s, 5, t + 100.0)
    tick(s, t + 101.0)
    acts = died(s, 500, t + 101.5)  # a quick crash after it: the first in a row
    assert spawns(acts) == [(6, 0)]


def test_min_uptime_zero_respawns_every_started_worker_at_once() -> None:
    """The original's rule: every death of a serving worker is respawned at once."""
    s = make(interval=1.0, min_uptime=0.0)
    t = boot(s)
    for n in range(1, 6):
        acts = died(s, 100 * n, t)  # killed the moment it started
        assert spawns(acts) == [(n + 1, 0)]
        spawned(s, n + 1, t)
        t += 1.0
        tick(s, t)


def test_death_before_the_start_is_still_a_failed_start() -> None:
    s = make(interval=1.0, min_uptime=0.0)
    t = boot(s)
    died(s, 100, t + 10.0)
    spawned(s, 2, t + 10.0)
    acts = died(s, 200, t + 10.5)  # before its start check: a failed start
    assert spawns(acts) == []
    assert "failed starts in a row: 1" in logs(acts)


# ---- the same rule for a worker replaced alone (--workers) --------------------------


def test_slot_worker_after_min_uptime_is_replaced_at_once_every_time() -> None:
    s = make(workers=2, interval=1.0, min_uptime=1.0)
    t = boot(s)
    pid = 101
    for k in range(1, 5):
        t += 1.5
        acts = died(s, pid, t)
        assert spawns(acts) == [(1, 1)], logs(acts)
        pid = 101 + 10 * k
        spawned(s, 1, t, slot=1, pid=pid)
        t += 1.0
        tick(s, t)
        assert all(w.state is State.ACTIVE for w in s.gens[1].workers)


def test_slot_worker_dying_within_min_uptime_backs_off() -> None:
    s = make(workers=2, interval=1.0, min_uptime=1.0, backoff_max=30.0)
    t = boot(s)
    assert spawns(died(s, 101, t + 0.5)) == [(1, 1)]  # the first in a row
    spawned(s, 1, t + 0.5, slot=1, pid=111)
    tick(s, t + 1.5)
    acts = died(s, 111, t + 2.0)  # 0.5 s after its start: the second in a row
    assert spawns(acts) == []
    assert "crashes in a row: 2" in logs(acts)
