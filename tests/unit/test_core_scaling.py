"""The pure supervisor scaled live (``--scale``, TTIN, TTOU) and one worker restarted
alone on request (``--restart --worker``).

Worker ``slot`` of generation ``n`` runs as pid ``100 * n + slot``; a worker
spawned later in a slot gets ``+ 10``.
"""

from __future__ import annotations

import signal

import pytest

from start_server.core import (
    Asked,
    Exited,
    Kill,
    Log,
    Notified,
    Policy,
    Signalled,
    Spawn,
    Spawned,
    SpawnFailed,
    Start,
    State,
    Supervisor,
    Tick,
)
from start_server.optiontable import MAX_WORKERS
from start_server.scaling import parse_scale, scaled
from start_server.values import SpecError

HUP = signal.SIGHUP


def make(workers: int = 4, **policy: object) -> Supervisor:
    return Supervisor(Policy(workers=workers, **policy))  # type: ignore[arg-type]


def spawns(acts: list) -> list[tuple[int, int]]:  # type: ignore[type-arg]
    return [(a.number, a.slot) for a in acts if isinstance(a, Spawn)]


def kills(acts: list) -> list[tuple[int, int]]:  # type: ignore[type-arg]
    return [(a.pid, a.signum) for a in acts if isinstance(a, Kill) and not a.group]


def logs(acts: list) -> str:  # type: ignore[type-arg]
    return "\n".join(a.message for a in acts if isinstance(a, Log))


def boot(s: Supervisor, now: float = 0.0) -> None:
    n = s.policy.workers
    assert spawns(s.handle(Start(), now)) == [(1, k) for k in range(n)]
    for k in range(n):
        s.handle(Spawned(1, 100 + k, {}, k), now)
    s.handle(Tick(), now + s.policy.interval)
    assert s.gens[1].state is State.ACTIVE


def answer(s: Supervisor, id: str) -> tuple[str, str]:
    found = [(state, message) for i, state, message in s.snapshot().answers if i == id]
    assert found, s.snapshot().answers
    return found[-1]


def start_slots(s: Supervisor, number: int, acts: list, now: float) -> list:  # type: ignore[type-arg]
    """Answer every Spawn of ``acts`` (pid +10 over the slot's), then pass the interval."""
    for n, slot in spawns(acts):
        s.handle(Spawned(n, 100 * n + slot + 10, {}, slot), now)
    return s.handle(Tick(), now + s.policy.interval)


# ---- the count ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "now", "expected"),
    [("6", 4, 6), ("+2", 4, 6), ("-3", 4, 1), ("1", 4, 1), (str(MAX_WORKERS), 1, MAX_WORKERS)],
)
def test_scaled_counts(text: str, now: int, expected: int) -> None:
    assert scaled(now, *parse_scale(text)) == expected


@pytest.mark.parametrize("text", ["", "0", "-0", "x", "+", "4.5", "++1", " ", "1e3", "٣",
                                  str(MAX_WORKERS + 1)])
def test_parse_scale_refuses(text: str) -> None:
    with pytest.raises(SpecError):
        parse_scale(text)


@pytest.mark.parametrize(("now", "text"), [(4, "-4"), (1, "-1"), (MAX_WORKERS, "+1")])
def test_scaled_out_of_range(now: int, text: str) -> None:
    with pytest.raises(SpecError, match="out of range"):
        scaled(now, *parse_scale(text))


def test_scale_up_continues_the_numbering_in_the_serving_generation() -> None:
    s = make(4)
    boot(s)
    acts = s.handle(Asked("a", "scale", "6"), 5.0)
    assert spawns(acts) == [(1, 4), (1, 5)]
    assert answer(s, "a")[0] == "accepted"
    assert s.snapshot().workers == 6
    start_slots(s, 1, acts, 5.0)
    assert sorted(w.slot for w in s.gens[1].workers) == [0, 1, 2, 3, 4, 5]
    assert all(w.state is State.ACTIVE for w in s.gens[1].workers)
    assert s.gens[1].restarts == {}  # new slots, not replacements
    assert answer(s, "a") == ("done", "generation 1 runs 6 workers")


def test_scale_down_retires_the_highest_slots_gracefully() -> None:
    s = make(4, stop_timeout=3.0)
    boot(s)
    acts = s.handle(Asked("d", "scale", "-2"), 5.0)
    assert spawns(acts) == []
    assert kills(acts) == [(102, signal.SIGTERM), (103, signal.SIGTERM)]
    assert answer(s, "d")[0] == "accepted"
    # Past the stop timeout: KILL to the group of the one still there.
    acts = s.handle(Exited(102, 0, "exit 0"), 6.0)
    acts = s.handle(Tick(), 8.5)
    assert [(a.pid, a.signum) for a in acts if isinstance(a, Kill) and a.group] == [
        (103, signal.SIGKILL)
    ]
    s.handle(Exited(103, 9, "killed by KILL"), 8.6)
    assert [w.slot for w in s.gens[1].workers] == [0, 1]
    assert answer(s, "d")[0] == "done"


def test_ttin_and_ttou_step_by_one_and_stop_at_the_bounds() -> None:
    s = make(1)
    boot(s)
    acts = s.handle(Signalled(signal.SIGTTOU), 1.0)
    assert "already at 1 worker; ignored" in logs(acts)
    assert kills(acts) == [] and spawns(acts) == []
    acts = s.handle(Signalled(signal.SIGTTIN), 2.0)
    assert spawns(acts) == [(1, 1)]
    assert "received TTIN: scaling from 1 to 2 workers" in logs(acts)
    start_slots(s, 1, acts, 2.0)
    acts = s.handle(Signalled(signal.SIGTTOU), 5.0)
    assert kills(acts) == [(111, signal.SIGTERM)]
    assert s.policy.workers == 1


def test_ttin_at_the_maximum_is_one_line() -> None:
    s = make(MAX_WORKERS)
    acts = s.handle(Signalled(signal.SIGTTIN), 1.0)
    assert logs(acts) == f"received TTIN: already at the maximum of {MAX_WORKERS} workers; ignored"
    assert spawns(acts) == []


def test_a_refused_scale_is_answered_and_changes_nothing() -> None:
    s = make(2)
    boot(s)
    acts = s.handle(Asked("r", "scale", "-2"), 1.0)
    assert answer(s, "r") == ("refused", "0 workers is out of range (1..4096; 2 now)")
    assert spawns(acts) == [] and kills(acts) == []
    s.handle(Asked("x", "scale", "many"), 1.0)
    assert answer(s, "x")[0] == "refused"


def test_the_count_holds_across_a_hup() -> None:
    s = make(2)
    boot(s)
    start_slots(s, 1, s.handle(Asked("a", "scale", "3"), 1.0), 1.0)
    acts = s.handle(Signalled(HUP), 5.0)
    assert spawns(acts) == [(2, 0), (2, 1), (2, 2)]


def test_a_scale_during_a_start_applies_once_the_new_generation_serves() -> None:
    s = make(2)
    boot(s)
    acts = s.handle(Signalled(HUP), 5.0)
    assert spawns(acts) == [(2, 0), (2, 1)]
    s.handle(Spawned(2, 200, {}, 0), 5.0)
    acts = s.handle(Asked("a", "scale", "+1"), 5.1)
    assert "generation 2 is starting: it gets 3 workers once it serves" in logs(acts)
    assert spawns(acts) == [] and kills(acts) == []  # the old generation is left as it is
    assert s.snapshot().workers == 3
    assert s.policy.workers == 2  # the starting generation starts as it was spawned
    s = Supervisor.from_dict(s.to_dict(), Policy(workers=2))  # noted across an upgrade too
    s.handle(Spawned(2, 201, {}, 1), 5.1)
    acts = s.handle(Tick(), 5.2 + s.policy.interval)
    assert s.gens[2].state is State.ACTIVE
    assert spawns(acts) == [(2, 2)]
    assert s.policy.workers == 3
    start_slots(s, 2, acts, 9.0)
    assert answer(s, "a")[0] == "done"


def test_a_scale_while_stopping_is_refused() -> None:
    s = make(2)
    boot(s)
    s.handle(Signalled(signal.SIGTERM), 1.0)
    acts = s.handle(Asked("a", "scale", "3"), 1.1)
    assert answer(s, "a") == ("refused", "the starter is stopping")
    assert spawns(acts) == []
    assert "received TTIN while stopping" in logs(s.handle(Signalled(signal.SIGTTIN), 1.2))


def test_a_new_slot_that_fails_fails_the_scale() -> None:
    s = make(2)
    boot(s)
    s.handle(Asked("a", "scale", "3"), 1.0)
    s.handle(SpawnFailed(1, "no such file", 2), 1.0)
    assert answer(s, "a") == ("failed", "the new worker in slot 2 did not start")
    assert s.fleet.slots.retry_at  # tried again after the backoff, as any slot


def test_scale_down_while_a_new_slot_is_spawned_retires_it_when_it_comes() -> None:
    s = make(2)
    boot(s)
    s.handle(Asked("a", "scale", "3"), 1.0)
    s.handle(Asked("b", "scale", "2"), 1.0)
    acts = s.handle(Spawned(1, 112, {}, 2), 1.1)
    assert kills(acts) == [(112, signal.SIGTERM)]
    s.handle(Exited(112, 0, "exit 0"), 1.2)
    assert answer(s, "b")[0] == "done"


def test_a_slot_queued_for_a_new_worker_is_not_spawned_twice_by_a_scale() -> None:
    """A stopped roll queues its emptied slots (rolling.stop): a scale leaves them
    to that queue."""
    s = make(2)
    boot(s)
    old = s.gens[1].in_slot(1)[0]
    s.fleet.retire_worker(old, signal.SIGTERM, 1.0, None)
    s.handle(Exited(old.pid, 0, "exit 0"), 1.0)
    s.fleet.slots.enqueue(1, 1, "the roll stopped")
    made = []
    acts = s.handle(Asked("a", "scale", "3"), 2.0)
    for t in (2.0, 5.0, 8.0):  # each spawn started, until nothing more is spawned
        made += spawns(acts)
        acts = start_slots(s, 1, acts, t)
    made += spawns(acts)
    assert sorted(made) == [(1, 1), (1, 2)]
    assert sorted(w.slot for w in s.gens[1].workers) == [0, 1, 2]


def test_under_rolling_new_slots_wait_for_room() -> None:
    """--rolling K bounds the worker processes to --workers + K: after a scale
    down, the retired workers still count until they exit."""
    s = make(4, rolling=1)
    boot(s)
    s.handle(Asked("d", "scale", "2"), 1.0)  # 102 and 103 retiring
    acts = s.handle(Asked("u", "scale", "4"), 1.1)
    assert spawns(acts) == [(1, 2)]  # 2 serving + 2 leaving + 1 = 4 + 1
    acts = start_slots(s, 1, [Spawn(1, 2)], 1.2)  # slot 2 runs
    assert spawns(acts) == []  # 102 and 103 still leaving: no room
    acts = s.handle(Exited(102, 0, "exit 0"), 5.0)
    assert spawns(acts) == [(1, 3)]
    s.handle(Exited(103, 0, "exit 0"), 5.0)
    start_slots(s, 1, acts, 5.0)
    assert sorted(w.slot for w in s.gens[1].workers) == [0, 1, 2, 3]
    assert answer(s, "u")[0] == "done"


def test_a_spawn_that_fails_for_a_slot_scaled_away_is_not_tried_again() -> None:
    s = make(2)
    boot(s)
    s.handle(Asked("u", "scale", "3"), 1.0)  # slot 2 spawning
    s.handle(Asked("d", "scale", "2"), 1.0)
    s.handle(SpawnFailed(1, "no such file", 2), 1.1)
    assert s.fleet.slots.retry_at == {}
    assert s.next_deadline() is None or not spawns(s.handle(Tick(), 100.0))


# ---- one worker ------------------------------------------------------------------------


def test_restart_worker_replaces_that_slot_alone() -> None:
    s = make(4)
    boot(s)
    acts = s.handle(Asked("w", "worker", "2"), 5.0)
    assert spawns(acts) == [(1, 2)]
    assert answer(s, "w") == ("accepted", "restarting worker 2 (pid 102)")
    acts = start_slots(s, 1, acts, 5.0)
    assert kills(acts) == [(102, signal.SIGTERM)]  # once the new one runs
    assert answer(s, "w")[0] == "accepted"  # until the old one has exited
    s.handle(Exited(102, 0, "exit 0"), 7.0)
    assert answer(s, "w") == ("done", "worker 2 restarted: pid 102 -> 112")
    assert {w.pid for w in s.gens[1].workers if w.state is State.ACTIVE} == {100, 101, 112, 103}


def test_restart_worker_waits_for_readiness() -> None:
    s = make(2, wait_ready=True, ready_timeout=5.0)
    s.handle(Start(), 0.0)
    for k in range(2):
        s.handle(Spawned(1, 100 + k, {}, k), 0.0)
        s.handle(Notified(1, {"READY": "1"}, 100 + k), 0.1)
    s.handle(Asked("w", "worker", "1"), 1.0)
    s.handle(Spawned(1, 111, {}, 1), 1.0)
    acts = s.handle(Tick(), 3.0)  # past --interval: not enough with --wait-ready
    assert kills(acts) == [] and answer(s, "w")[0] == "accepted"
    acts = s.handle(Notified(1, {"READY": "1"}, 111), 3.1)
    assert kills(acts) == [(101, signal.SIGTERM)]
    s.handle(Exited(101, 0, "exit 0"), 3.2)
    assert answer(s, "w")[0] == "done"


@pytest.mark.parametrize(("value", "why"), [("4", "there is no worker 4 (workers 0..3)"),
                                            ("x", "not a whole number: 'x'")])
def test_restart_worker_refusals(value: str, why: str) -> None:
    s = make(4)
    boot(s)
    acts = s.handle(Asked("w", "worker", value), 1.0)
    assert answer(s, "w") == ("refused", why)
    assert spawns(acts) == []


def test_restart_worker_during_a_start_is_refused() -> None:
    s = make(2)
    boot(s)
    s.handle(Signalled(HUP), 1.0)
    s.handle(Asked("w", "worker", "0"), 1.0)
    assert answer(s, "w") == ("refused", "cannot restart worker 0: generation 2 is starting")


def test_restart_worker_that_does_not_start_fails() -> None:
    s = make(2)
    boot(s)
    s.handle(Asked("w", "worker", "1"), 1.0)
    s.handle(Spawned(1, 111, {}, 1), 1.0)
    s.handle(Exited(111, 256, "exit 1"), 1.1)
    assert answer(s, "w") == ("failed", "the new worker in slot 1 did not start")
    assert s.gens[1].in_slot(1)[0].pid == 101  # the old one keeps serving


def test_restart_of_a_worker_scaled_away_meanwhile_fails() -> None:
    s = make(4)
    boot(s)
    s.handle(Asked("w", "worker", "3"), 1.0)
    s.handle(Asked("d", "scale", "2"), 1.0)
    assert answer(s, "w") == ("failed", "worker 3 was retired (scaled to 2)")


# ---- the hand-over ---------------------------------------------------------------------


def test_the_count_and_the_requests_survive_the_hand_over() -> None:
    s = make(2)
    boot(s)
    s.handle(Asked("a", "scale", "3"), 1.0)
    s2 = Supervisor.from_dict(s.to_dict(), Policy(workers=2))
    assert s2.policy.workers == 3 and s2.fleet.base_policy.workers == 3
    assert [a.id for a in s2.scale.asks.open] == ["a"]
    assert s2.snapshot().answers == s.snapshot().answers
    s2.handle(Spawned(1, 112, {}, 2), 1.0)
    s2.handle(Tick(), 5.0)
    assert answer(s2, "a")[0] == "done"
