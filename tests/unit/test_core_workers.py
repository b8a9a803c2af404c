"""The pure supervisor with several workers, memory limits, jitter and leftovers.

Worker ``slot`` of generation ``n`` runs as pid ``100 * n + slot`` here; a
replacement in the same slot gets ``+ 10`` per replacement.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from core_support import logs, make, spawns

from start_server.core import (
    Exited,
    Kill,
    Leftovers,
    Measure,
    Measured,
    Notified,
    Signalled,
    Spawned,
    Start,
    State,
    Supervisor,
    Tick,
)
from start_server.publish import status_entries

if TYPE_CHECKING:
    from start_server.core import Action

MIB = 1048576

TERM = signal.SIGTERM
KILL = signal.SIGKILL


def kills(acts: list[Action]) -> list[tuple[int, int, bool]]:
    return [(a.pid, a.signum, a.group) for a in acts if isinstance(a, Kill)]


def measures(acts: list[Action]) -> list[tuple[int, ...]]:
    return [a.pids for a in acts if isinstance(a, Measure)]


def entries(s: Supervisor) -> list[tuple[int, int]]:
    return status_entries(s.snapshot())


def states(s: Supervisor, n: int) -> dict[int, State]:
    return {w.pid: w.state for w in s.gens[n].workers}


def boot(s: Supervisor, now: float = 0.0) -> list[Action]:
    """Generation 1 with all its workers, spawned at ``now`` and past the interval."""
    n = s.policy.workers
    assert spawns(s.handle(Start(), now)) == [(1, k) for k in range(n)]
    for k in range(n):
        s.handle(Spawned(1, 100 + k, {}, k), now)
    acts = s.handle(Tick(), now + s.policy.interval)
    assert s.gens[1].state is State.ACTIVE
    return acts


# ---- several workers -----------------------------------------------------------------


def test_generation_starts_only_when_every_worker_has() -> None:
    s = make(workers=3, interval=1.0, wait_ready=True, ready_timeout=30.0)
    assert spawns(s.handle(Start(), 0.0)) == [(1, 0), (1, 1), (1, 2)]
    for k in range(3):
        s.handle(Spawned(1, 100 + k, {}, k), 0.0)
    s.handle(Notified(1, {"READY": "1"}, 100), 0.5)
    s.handle(Notified(1, {"READY": "1"}, 101), 0.6)
    g = s.gens[1]
    assert g.state is State.STARTING
    s.handle(Notified(1, {"READY": "1"}, 102), 0.7)
    assert s.gens[1].state is State.ACTIVE
    # The status file lists every worker, one GEN:PID line each.
    assert entries(s) == [(1, 100), (1, 101), (1, 102)]


def test_a_dead_worker_is_replaced_alone_in_its_generation() -> None:
    s = make(workers=2, interval=1.0)
    boot(s)
    acts = s.handle(Exited(101, 9, "killed by SIGKILL"), 5.0)
    assert spawns(acts) == [(1, 1)]
    assert (101, TERM, True) in kills(acts)  # what it left in its group goes too
    assert "worker 101 (slot 1) died unexpectedly" in logs(acts)
    s.handle(Spawned(1, 111, {}, 1), 5.0)
    acts = s.handle(Tick(), 6.0)
    assert states(s, 1) == {100: State.ACTIVE, 111: State.ACTIVE}
    assert kills(acts) == []  # nobody else was touched
    assert s.last_number == 1


def test_the_snapshot_counts_a_slots_restarts_and_says_the_last_event() -> None:
    s = make(workers=2, interval=1.0)
    boot(s)
    s.handle(Exited(101, 9, "killed by SIGKILL"), 5.0)
    s.handle(Spawned(1, 111, {}, 1), 5.0)
    s.handle(Tick(), 6.0)
    snap = s.snapshot()
    assert [(g.pid, g.restarts) for g in snap.generations] == [(100, 0), (111, 1)]
    assert snap.last_event == "worker 111 (slot 1) is now running (alive after 1 s)"
    assert snap.last_event_at == 6.0
    # A new generation starts counting afresh.
    s.handle(Signalled(signal.SIGHUP), 10.0)
    s.handle(Spawned(2, 200, {}, 0), 10.0)
    s.handle(Spawned(2, 201, {}, 1), 10.0)
    assert [(g.pid, g.restarts) for g in s.snapshot().generations][-2:] == [(200, 0), (201, 0)]


def test_a_crashing_slot_backs_off() -> None:
    s = make(workers=2, interval=1.0, backoff_max=30.0)
    boot(s)
    s.handle(Exited(101, 256, "exit code 1"), 5.0)
    s.handle(Spawned(1, 111, {}, 1), 5.0)
    acts = s.handle(Exited(111, 256, "exit code 1"), 5.2)  # dies again before it started
    assert spawns(acts) == []
    assert "slot 1: next attempt in" in logs(acts)
    due = s.next_deadline()
    assert due is not None and due > 5.2
    assert spawns(s.handle(Tick(), due)) == [(1, 1)]


def test_restart_retires_the_old_workers_only_after_all_new_ones_started() -> None:
    s = make(workers=2, interval=1.0)
    boot(s)
    acts = s.handle(Signalled(signal.SIGHUP), 10.0)
    assert spawns(acts) == [(2, 0), (2, 1)]
    s.handle(Spawned(2, 200, {}, 0), 10.0)
    acts = s.handle(Tick(), 11.0)  # slot 1 of generation 2 has not been spawned yet
    assert kills(acts) == []
    s.handle(Spawned(2, 201, {}, 1), 10.5)
    acts = s.handle(Tick(), 11.5)
    assert sorted(kills(acts)) == [(100, TERM, False), (101, TERM, False)]
    assert s.gens[1].state is State.RETIRING


# ---- memory limit --------------------------------------------------------------------


def test_memory_over_the_limit_twice_restarts_the_generation_once() -> None:
    s = make(interval=1.0, max_memory=64 * MIB, health_check_interval=5.0)
    boot(s)
    assert s.next_deadline() == 6.0
    assert measures(s.handle(Tick(), 6.0)) == [(100,)]
    acts = s.handle(Measured({100: 80 * MIB}), 6.0)
    assert spawns(acts) == []  # one check over the limit is not enough
    assert measures(s.handle(Tick(), 11.0)) == [(100,)]
    acts = s.handle(Measured({100: 90 * MIB}), 11.0)
    assert spawns(acts) == [(2, 0)]
    assert "generation 1 uses 90.0 MiB > --max-memory 64.0 MiB" in logs(acts)
    s.handle(Spawned(2, 200, {}, 0), 11.0)
    # While its successor starts, more checks of the old one give no second verdict.
    for t in (11.2, 11.4, 11.6):
        acts = s.handle(Measured({100: 95 * MIB}), t)
        assert spawns(acts) == []
        assert "uses" not in logs(acts)
    assert not s.restart_pending
    acts = s.handle(Tick(), 12.0)
    assert kills(acts) == [(100, TERM, False)]


def test_memory_under_the_limit_in_between_resets_the_count() -> None:
    s = make(interval=1.0, max_memory=64 * MIB, health_check_interval=5.0)
    boot(s)
    s.handle(Measured({100: 80 * MIB}), 6.0)
    s.handle(Measured({100: 10 * MIB}), 11.0)
    assert spawns(s.handle(Measured({100: 80 * MIB}), 16.0)) == []
    assert spawns(s.handle(Measured({100: 80 * MIB}), 21.0)) == [(2, 0)]


def test_with_workers_only_the_worker_over_the_limit_is_replaced_once() -> None:
    s = make(workers=2, interval=1.0, max_memory=64 * MIB, health_check_interval=1.0)
    boot(s)
    s.handle(Measured({100: 10 * MIB, 101: 80 * MIB}), 2.0)
    acts = s.handle(Measured({100: 10 * MIB, 101: 80 * MIB}), 3.0)
    assert spawns(acts) == [(1, 1)]
    assert "worker 101 (slot 1) uses 80.0 MiB" in logs(acts)
    s.handle(Spawned(1, 111, {}, 1), 3.0)
    for t in (3.2, 3.4, 3.6):
        acts = s.handle(Measured({100: 10 * MIB, 101: 85 * MIB, 111: 5 * MIB}), t)
        assert spawns(acts) == []
        assert "uses" not in logs(acts)
    acts = s.handle(Tick(), 4.0)  # the replacement is up: the old worker goes
    assert kills(acts) == [(101, TERM, False)]
    assert states(s, 1) == {100: State.ACTIVE, 101: State.RETIRING, 111: State.ACTIVE}
    assert s.last_number == 1


# ---- jitter --------------------------------------------------------------------------


def test_jitter_gives_each_worker_its_own_deadline_and_replaces_one_at_a_time() -> None:
    s = make(workers=2, interval=1.0, auto_restart=True, auto_restart_interval=100.0,
             auto_restart_jitter=10.0)
    s.handle(Start(), 0.0)
    s.handle(Spawned(1, 100, {}, 0, 0.25), 0.0)  # jitter 2.5 s
    s.handle(Spawned(1, 101, {}, 1, 0.2), 0.0)  # jitter 2 s
    s.handle(Tick(), 1.0)
    assert s.next_deadline() == 103.0
    acts = s.handle(Tick(), 103.0)
    assert spawns(acts) == [(1, 1)]
    s.handle(Spawned(1, 111, {}, 1, 0.0), 103.0)
    acts = s.handle(Tick(), 103.5)  # slot 0 is due, but slot 1's replacement is starting
    assert spawns(acts) == []
    assert kills(acts) == []
    acts = s.handle(Tick(), 104.0)  # slot 1 done: its old worker goes, slot 0's turn
    assert kills(acts) == [(101, TERM, False)]
    assert spawns(acts) == [(1, 0)]


# ---- leftovers -----------------------------------------------------------------------


def test_leftovers_get_term_then_kill_after_the_stop_timeout() -> None:
    s = make(interval=1.0, stop_timeout=5.0)
    boot(s)
    acts = s.handle(Leftovers((555, 100)), 10.0)  # 100 is a worker: not a leftover
    assert kills(acts) == [(555, TERM, False)]
    assert s.next_deadline() == 15.0
    acts = s.handle(Tick(), 15.0)
    assert kills(acts) == [(555, KILL, False)]
    s.handle(Exited(555, 9, "killed by SIGKILL"), 15.1)
    assert s.leftovers == {}


def test_stop_waits_for_leftovers_before_exiting() -> None:
    s = make(interval=1.0, stop_timeout=5.0)
    boot(s)
    s.handle(Leftovers((555,)), 10.0)
    s.handle(Signalled(signal.SIGTERM), 11.0)
    acts = s.handle(Exited(100, 0, "exit code 0"), 11.5)
    assert not s.done
    acts = s.handle(Exited(555, 15, "killed by SIGTERM"), 12.0)
    assert s.done
    assert any(type(a).__name__ == "Exit" for a in acts)


def test_stop_without_stop_timeout_leaves_leftovers_ignoring_term() -> None:
    """No --stop-timeout: a leftover that ignores TERM is waited for the
    not-ready grace (10 s) after its TERM, then left running; the stop ends."""
    s = make(interval=1.0)
    boot(s)
    acts = s.handle(Leftovers((555, 556)), 10.0)
    assert kills(acts) == [(555, TERM, False), (556, TERM, False)]
    assert s.next_deadline() is None  # running: TERM only, as before
    acts = s.handle(Signalled(signal.SIGTERM), 11.0)
    assert (555, TERM, False) in kills(acts)  # the stop's TERM
    s.handle(Exited(100, 0, "exit code 0"), 11.5)
    s.handle(Exited(556, 0, "exit code 0"), 11.6)
    assert not s.done
    assert s.next_deadline() == 21.0  # 10 s after the stop's TERM to the leftover
    acts = s.handle(Tick(), 21.0)
    assert kills(acts) == []  # no KILL without --stop-timeout
    assert "leaving leftover processes running: 555 " in logs(acts)
    assert s.done
    assert any(type(a).__name__ == "Exit" for a in acts)


def test_leftover_found_during_a_stop_without_stop_timeout_gets_the_grace() -> None:
    s = make(interval=1.0)
    boot(s)
    s.handle(Signalled(signal.SIGTERM), 11.0)
    acts = s.handle(Leftovers((555,)), 11.5)
    assert kills(acts) == [(555, TERM, False)]
    s.handle(Exited(100, 0, "exit code 0"), 11.5)
    assert not s.done
    assert s.next_deadline() == 21.5
    acts = s.handle(Exited(555, 15, "killed by SIGTERM"), 12.0)  # it did go
    assert s.done
    assert "leaving" not in logs(acts)


def test_leftovers_are_left_only_once_no_worker_is_waited_for() -> None:
    s = make(interval=1.0)
    boot(s)
    s.handle(Leftovers((555,)), 10.0)
    s.handle(Signalled(signal.SIGTERM), 11.0)
    assert s.next_deadline() is None  # worker 100 ignores TERM: no limit, as the original
    acts = s.handle(Exited(100, 9, "killed by SIGKILL"), 300.0)  # killed by someone else
    assert "leaving leftover processes running: 555 " in logs(acts)  # its grace is long over
    assert s.done


def test_a_stop_gives_leftovers_signalled_long_ago_their_grace_again() -> None:
    """A stop sends TERM again to leftovers stopped earlier; their grace counts
    from that TERM, so none is signalled and left in the same breath."""
    s = make(interval=1.0)
    boot(s)
    s.handle(Leftovers((555,)), 10.0)
    acts = s.handle(Signalled(signal.SIGTERM), 60.0)  # 50 s after the leftover's TERM
    assert (555, TERM, False) in kills(acts)
    assert s.leftovers == {555: 60.0}
    acts = s.handle(Exited(100, 0, "exit code 0"), 61.0)  # no worker left
    assert "leaving" not in logs(acts)
    assert s.next_deadline() == 70.0
    assert "leaving leftover processes running: 555 " in logs(s.handle(Tick(), 70.0))
    assert s.done


def test_jitter_moves_a_single_generation_auto_restart() -> None:
    s = make(interval=1.0, auto_restart=True, auto_restart_interval=100.0,
             auto_restart_jitter=10.0)
    s.handle(Start(), 0.0)
    s.handle(Spawned(1, 100, {}, 0, 0.5), 0.0)  # jitter 5 s
    s.handle(Tick(), 1.0)
    assert s.next_deadline() == 106.0
    assert spawns(s.handle(Tick(), 105.9)) == []
    assert spawns(s.handle(Tick(), 106.0)) == [(2, 0)]


def _all_slots_backing_off(s: Supervisor) -> float:
    """The workers of generation 1 crash at once, again and again, until none is
    left and every slot waits over 1.5 s for its next attempt; returns the time."""
    now, pid = 5.0, 110
    todo = [s.handle(Exited(100 + k, 256, "exit code 1"), now) for k in range(s.policy.workers)]
    while True:
        while todo:  # each respawn dies at once
            for _, slot in spawns(todo.pop()):
                s.handle(Spawned(1, pid, {}, slot), now)
                todo.append(s.handle(Exited(pid, 256, "exit code 1"), now))
                pid += 1
        if s.gens[1].workers == [] and min(s.slot_respawn.values()) > now + 1.5:
            return now
        now = min(s.slot_respawn.values())
        todo.append(s.handle(Tick(), now))


def test_a_generation_without_workers_goes_when_its_successor_starts() -> None:
    s = make(workers=2, interval=1.0, backoff_max=30.0)
    boot(s)
    now = _all_slots_backing_off(s)
    assert spawns(s.handle(Signalled(signal.SIGHUP), now)) == [(2, 0), (2, 1)]
    s.handle(Spawned(2, 200, {}, 0), now)
    s.handle(Spawned(2, 201, {}, 1), now)
    s.handle(Tick(), now + 1.0)
    assert list(s.gens) == [2] and s.slot_respawn == {}
    s.handle(Signalled(signal.SIGTERM), now + 2)
    s.handle(Exited(200, 0, "exit code 0"), now + 2)
    acts = s.handle(Exited(201, 0, "exit code 0"), now + 2)
    assert any(type(a).__name__ == "Exit" for a in acts)  # it used to wait forever


def test_stop_while_every_slot_backs_off_exits_at_once() -> None:
    s = make(workers=2, interval=1.0, backoff_max=30.0)
    boot(s)
    now = _all_slots_backing_off(s)
    acts = s.handle(Signalled(signal.SIGTERM), now)
    assert s.done and any(type(a).__name__ == "Exit" for a in acts)
    assert spawns(s.handle(Tick(), now + 100)) == []


def test_a_worker_spawned_into_a_stopping_generation_is_stopped_and_awaited() -> None:
    s = make(workers=2, interval=1.0, backoff_max=30.0)
    boot(s)
    now = _all_slots_backing_off(s)
    due = min(s.slot_respawn.values())
    first = spawns(s.handle(Tick(), due))[:1]
    assert first  # a respawn is under way (Spawned not in yet) when TERM comes
    s.handle(Signalled(signal.SIGTERM), due)
    assert not s.done and 1 in s.gens
    acts = s.handle(Spawned(1, 999, {}, first[0][1]), due)
    assert (999, TERM, False) in kills(acts)
    acts = s.handle(Exited(999, 0, "exit code 0"), due + 0.1)
    assert s.done and any(type(a).__name__ == "Exit" for a in acts)
    assert now < due
