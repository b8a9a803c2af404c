"""The pure supervisor under ``--rolling K``: K workers at a time, never more than N + K.

Worker ``slot`` of generation ``n`` runs as pid ``100 * n + slot`` here (a
refill in the same slot: ``+ 10``).
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from core_support import logs, make, spawns

from start_server.core import (
    Exited,
    Kill,
    Notified,
    Signalled,
    Spawned,
    SpawnFailed,
    Start,
    State,
    Supervisor,
    Tick,
)
from start_server.publish import status_detail
from start_server.rolling import processes, to_retire, to_spawn, vacant

if TYPE_CHECKING:
    from start_server.core import Action

TERM = signal.SIGTERM


def kills(acts: list[Action]) -> list[int]:
    return [a.pid for a in acts if isinstance(a, Kill) and not a.group]


def boot(s: Supervisor) -> None:
    """Generation 1, all N workers at once (nothing serves yet), started at t=1."""
    n = s.policy.workers
    assert spawns(s.handle(Start(), 0.0)) == [(1, k) for k in range(n)]
    for k in range(n):
        s.handle(Spawned(1, 100 + k, {}, k), 0.0)
    s.handle(Tick(), 1.0)
    assert s.gens[1].state is State.ACTIVE


def test_a_hup_replaces_one_worker_at_a_time() -> None:
    s = make(workers=3, rolling=1)
    boot(s)
    acts = s.handle(Signalled(signal.SIGHUP), 10.0)
    assert spawns(acts) == [(2, 0)]  # room for one: 3 old + 1 new
    assert s.snapshot().roll == (2, 0, 3)
    s.handle(Spawned(2, 200, {}, 0), 10.0)
    acts = s.handle(Tick(), 11.0)  # alive past --interval: started; slot 0's old goes
    assert kills(acts) == [100]
    assert spawns(acts) == []  # the old one still runs: no room yet
    assert s.snapshot().roll == (2, 1, 3)
    acts = s.handle(Exited(100, 0, "exit code 0"), 11.5)
    assert spawns(acts) == [(2, 1)]
    s.handle(Spawned(2, 201, {}, 1), 11.5)
    assert kills(s.handle(Tick(), 12.5)) == [101]
    assert spawns(s.handle(Exited(101, 0, "exit code 0"), 13.0)) == [(2, 2)]
    s.handle(Spawned(2, 202, {}, 2), 13.0)
    acts = s.handle(Tick(), 14.0)
    assert kills(acts) == [102]
    assert "old workers:none" in logs(acts)  # each was signalled by the roll already
    assert s.gens[2].state is State.ACTIVE and s.current() is s.gens[2]
    assert s.snapshot().roll is None
    s.handle(Exited(102, 0, "exit code 0"), 14.5)
    assert 1 not in s.gens


def test_k_workers_at_a_time_and_wait_ready() -> None:
    s = make(workers=4, rolling=2, wait_ready=True, ready_timeout=30.0)
    n = 4
    s.handle(Start(), 0.0)
    for k in range(n):
        s.handle(Spawned(1, 100 + k, {}, k), 0.0)
        s.handle(Notified(1, {"READY": "1"}, 100 + k), 0.1)
    assert s.gens[1].state is State.ACTIVE
    assert spawns(s.handle(Signalled(signal.SIGHUP), 5.0)) == [(2, 0), (2, 1)]
    s.handle(Spawned(2, 200, {}, 0), 5.0)
    s.handle(Spawned(2, 201, {}, 1), 5.0)
    assert kills(s.handle(Tick(), 10.0)) == []  # alive is not ready
    assert kills(s.handle(Notified(2, {"READY": "1"}, 201), 10.0)) == [101]
    assert processes(s.gens.values()) == 6


def test_an_old_worker_that_dies_during_the_roll_is_made_up_by_the_roll() -> None:
    s = make(workers=3, rolling=1)
    boot(s)
    s.handle(Signalled(signal.SIGHUP), 10.0)
    s.handle(Spawned(2, 200, {}, 0), 10.0)
    acts = s.handle(Exited(102, 256, "exit code 1"), 10.5)
    assert "roll replaces it" in logs(acts)
    assert spawns(acts) == [(2, 1)]  # its room goes to the roll, not to generation 1
    s.handle(Spawned(2, 201, {}, 1), 10.5)
    acts = s.handle(Tick(), 11.5)  # both started: 2 new + 2 old > 3; the one in slot 1 goes
    assert kills(acts) == [101]
    assert processes(s.gens.values()) <= 4


def test_a_failed_replacement_stops_the_roll_and_the_started_ones_serve() -> None:
    s = make(workers=3, rolling=1, backoff_max=8.0)
    boot(s)
    s.handle(Signalled(signal.SIGHUP), 10.0)
    s.handle(Spawned(2, 200, {}, 0), 10.0)
    s.handle(Tick(), 11.0)
    s.handle(Exited(100, 0, "exit code 0"), 11.2)  # slot 1 spawned next
    s.handle(Spawned(2, 201, {}, 1), 11.2)
    acts = s.handle(Exited(201, 256, "exit code 1"), 11.5)
    assert "rolling: stopped" in logs(acts)
    assert kills(acts) == []  # generation 2's started worker keeps serving
    assert s.gens[2].state is State.RETIRING
    assert [w.state for w in s.gens[2].workers] == [State.ACTIVE]
    assert s.current() is s.gens[1] and s.gens[1].pending == [0]  # slot 0 filled again
    assert vacant(s.policy, s.gens[1]) == []
    detail = status_detail(s.snapshot(), 1, 12.0)
    assert detail["failed_generation"] == 2
    assert detail["rolling"] is None
    # Slot 0 of generation 1 is filled again; once it started, 200 goes.
    s.handle(Spawned(1, 110, {}, 0), 11.5)
    acts = s.handle(Tick(), 12.5)
    assert kills(acts) == [200]
    # The backoff's next attempt (1 s after the failure) rolls again, as room allows.
    assert 3 in s.gens and spawns(acts) == []
    assert spawns(s.handle(Exited(200, 0, "exit code 0"), 13.0)) == [(3, 0)]
    assert 2 not in s.gens


def test_a_failed_first_replacement_is_a_failed_start_as_without_rolling() -> None:
    s = make(workers=2, rolling=1)
    boot(s)
    s.handle(Signalled(signal.SIGHUP), 10.0)
    acts = s.handle(SpawnFailed(2, "exec failed", 0), 10.0)
    assert 2 not in s.gens and s.current() is s.gens[1]
    assert len(s.gens[1].workers) == 2 and kills(acts) == []
    assert status_detail(s.snapshot(), 1, 10.0)["failed_generation"] == 2


class Bounded:
    """A supervisor whose every event is checked against --workers + K."""

    def __init__(self, s: Supervisor) -> None:
        self.s = s
        self.spawned: list[tuple[int, int]] = []

    def __call__(self, ev: object, now: float) -> list[Action]:
        acts = self.s.handle(ev, now)  # type: ignore[arg-type]
        self.spawned += spawns(acts)
        p = self.s.policy
        assert processes(self.s.gens.values()) <= p.workers + p.rolling
        return acts


def test_a_hup_during_a_roll_rolls_the_newest_code_in_at_once() -> None:
    s = make(workers=2, rolling=2, wait_ready=True, ready_timeout=30.0)
    s.handle(Start(), 0.0)
    for k in range(2):
        s.handle(Spawned(1, 100 + k, {}, k), 0.0)
        s.handle(Notified(1, {"READY": "1"}, 100 + k), 0.1)
    h = Bounded(s)
    assert spawns(h(Signalled(signal.SIGHUP), 10.0)) == [(2, 0), (2, 1)]
    h(Spawned(2, 200, {}, 0), 10.0)
    h(Spawned(2, 201, {}, 1), 10.0)
    assert kills(h(Notified(2, {"READY": "1"}, 200), 10.5)) == [100]
    h(Exited(100, 0, "exit code 0"), 11.0)  # room for one, but 2 has spawned all it has
    acts = h(Signalled(signal.SIGHUP), 11.5)
    assert "generation 2 is superseded" in logs(acts)
    assert "one more restart" not in logs(acts)
    assert kills(acts) == [201]  # still starting: stopped
    assert spawns(acts) == [(3, 1)]  # at once, in the slot of the oldest code (101)
    assert s.gens[2].state is State.RETIRING and s.current() is s.gens[1]
    assert s.snapshot().roll == (3, 0, 2)
    assert status_detail(s.snapshot(), 1, 11.5)["failed_generation"] is None
    h(Spawned(3, 301, {}, 1), 11.5)
    assert spawns(h(Exited(201, 0, "exit code 0"), 12.0)) == [(3, 0)]
    h(Spawned(3, 300, {}, 0), 12.0)
    assert kills(h(Notified(3, {"READY": "1"}, 301), 12.5)) == [101]  # generation 1's first
    acts = h(Notified(3, {"READY": "1"}, 300), 13.0)
    assert kills(acts) == [200]
    assert s.current() is s.gens[3] and s.gens[3].state is State.ACTIVE
    h(Exited(101, 0, "exit code 0"), 13.5)
    h(Exited(200, 0, "exit code 0"), 13.5)
    assert sorted(s.gens) == [3] and {w.pid for w in s.workers()} == {300, 301}
    assert all(w.state is State.ACTIVE for w in s.workers())


def test_a_hup_during_a_roll_replaces_the_older_generation_first_one_at_a_time() -> None:
    s = make(workers=4, rolling=1)
    boot(s)
    h = Bounded(s)
    h(Signalled(signal.SIGHUP), 10.0)
    h(Spawned(2, 200, {}, 0), 10.0)
    assert kills(h(Tick(), 11.0)) == [100]
    assert spawns(h(Exited(100, 0, "exit code 0"), 11.2)) == [(2, 1)]
    h(Spawned(2, 201, {}, 1), 11.2)
    acts = h(Signalled(signal.SIGHUP), 11.5)
    assert kills(acts) == [201] and spawns(acts) == []  # at N + K until 201 has gone
    assert spawns(h(Exited(201, 0, "exit code 0"), 11.6)) == [(3, 1)]
    retired = []
    for slot, old, at in ((1, 101, 12.0), (2, 102, 14.0), (3, 103, 16.0), (0, 200, 18.0)):
        h(Spawned(3, 300 + slot, {}, slot), at)
        acts = h(Tick(), at + 1.0)  # alive past --interval: started
        retired += kills(acts)
        assert kills(acts) == [old]
        h(Exited(old, 0, "exit code 0"), at + 1.5)
    assert retired == [101, 102, 103, 200]  # generation 1's workers before generation 2's
    assert [sp for sp in h.spawned if sp[0] == 3] == [(3, 1), (3, 2), (3, 3), (3, 0)]
    assert sorted(s.gens) == [3] and s.gens[3].state is State.ACTIVE
    assert sorted(w.pid for w in s.workers()) == [300, 301, 302, 303]
    assert s.snapshot().roll is None


def test_a_failure_after_a_hup_mid_roll_stops_the_new_roll_as_any_roll() -> None:
    s = make(workers=3, rolling=1, backoff_max=8.0)
    boot(s)
    h = Bounded(s)
    h(Signalled(signal.SIGHUP), 10.0)
    h(Spawned(2, 200, {}, 0), 10.0)
    h(Tick(), 11.0)  # 200 started, 100 goes
    h(Exited(100, 0, "exit code 0"), 11.2)
    h(Spawned(2, 201, {}, 1), 11.2)
    h(Signalled(signal.SIGHUP), 11.5)  # 201 stopped
    assert spawns(h(Exited(201, 0, "exit code 0"), 11.6)) == [(3, 1)]
    h(Spawned(3, 301, {}, 1), 11.6)
    assert kills(h(Tick(), 12.6)) == [101]
    assert spawns(h(Exited(101, 0, "exit code 0"), 12.8)) == [(3, 2)]
    h(Spawned(3, 302, {}, 2), 12.8)
    acts = h(Exited(302, 256, "exit code 1"), 13.0)
    assert "rolling: stopped" in logs(acts) and kills(acts) == []
    assert status_detail(s.snapshot(), 1, 13.0)["failed_generation"] == 3
    assert s.current() is s.gens[1] and s.fleet.restarts.respawn_at is not None
    # One worker serves each slot: 200 (generation 2), 301 (3), 102 (1).
    serving = sorted((w.slot, w.pid) for w in s.workers() if w.state is State.ACTIVE)
    assert serving == [(0, 200), (1, 301), (2, 102)]


def test_a_hup_during_a_first_start_under_rolling_still_waits_for_it() -> None:
    s = make(workers=2, rolling=1)
    s.handle(Start(), 0.0)
    s.handle(Spawned(1, 100, {}, 0), 0.0)
    assert "one more restart will follow" in logs(s.handle(Signalled(signal.SIGHUP), 0.5))
    assert kills(s.handle(Spawned(1, 101, {}, 1), 0.5)) == []


def test_term_during_a_roll_stops_everything() -> None:
    s = make(workers=2, rolling=1, stop_timeout=5.0)
    boot(s)
    s.handle(Signalled(signal.SIGHUP), 10.0)
    s.handle(Spawned(2, 200, {}, 0), 10.0)
    acts = s.handle(Signalled(TERM), 10.5)
    assert sorted(kills(acts)) == [100, 101, 200]
    for pid in (100, 101):
        assert spawns(s.handle(Exited(pid, 0, "exit code 0"), 11.0)) == []
    assert any(a.__class__.__name__ == "Exit" for a in s.handle(Exited(200, 0, "x"), 11.0))


def test_one_worker_rolls_like_the_original_restarts() -> None:
    s = make(rolling=1)
    boot(s)
    assert spawns(s.handle(Signalled(signal.SIGHUP), 10.0)) == [(2, 0)]
    s.handle(Spawned(2, 200, {}, 0), 10.0)
    assert kills(s.handle(Tick(), 11.0)) == [100]
    assert s.current() is s.gens[2]


def test_the_roll_is_handed_over_with_the_generations() -> None:
    s = make(workers=3, rolling=1)
    boot(s)
    s.handle(Signalled(signal.SIGHUP), 10.0)
    s.handle(Spawned(2, 200, {}, 0), 10.0)
    s.handle(Tick(), 11.0)
    t = Supervisor.from_dict(s.to_dict(), s.policy)
    assert t.snapshot().roll == (2, 1, 3)
    assert spawns(t.handle(Exited(100, 0, "exit code 0"), 11.5)) == [(2, 1)]


def test_pure_rules() -> None:
    s = make(workers=3, rolling=1)
    boot(s)
    s.handle(Signalled(signal.SIGHUP), 10.0)
    g = s.gens[2]
    gens = list(s.gens.values())
    assert to_spawn(s.policy, g, gens) == []  # 3 + 1 spawn on its way = N + K
    assert to_retire(s.policy, g, gens, 0) == []  # none of its workers started


def test_a_dead_workers_respawn_beside_more_than_k_retiring_ones_does_not_wait() -> None:
    """A scale down leaves two TERM-ignoring workers retiring (4 processes at a
    bound of 2 + 1); slot 0's worker dies: its respawn takes its place at once,
    not after --stop-timeout (the count stays what it was before the death)."""
    s = make(workers=4, rolling=1, stop_timeout=30.0)
    boot(s)
    s.handle(Signalled(signal.SIGTTOU), 2.0)
    s.handle(Signalled(signal.SIGTTOU), 2.0)
    assert s.policy.workers == 2 and processes(s.gens.values()) == 4
    acts = s.handle(Exited(100, 9, "killed by KILL"), 5.0)
    assert spawns(acts) == [(1, 0)]
    assert processes(s.gens.values()) == 4  # as before the death
    # Any other spawn still waits for room: a HUP's roll spawns nothing yet.
    s.handle(Spawned(1, 110, {}, 0), 5.0)
    assert spawns(s.handle(Signalled(signal.SIGHUP), 6.0)) == []


def test_a_started_new_worker_that_dies_mid_roll_is_respawned_and_the_roll_goes_on() -> None:
    s = make(workers=3, rolling=1, min_uptime=0.5)
    boot(s)
    s.handle(Signalled(signal.SIGHUP), 10.0)
    s.handle(Spawned(2, 200, {}, 0), 10.0)
    assert kills(s.handle(Tick(), 11.0)) == [100]  # 200 started: slot 0's old goes
    assert spawns(s.handle(Exited(100, 0, "exit code 0"), 11.2)) == [(2, 1)]
    s.handle(Spawned(2, 201, {}, 1), 11.2)
    acts = s.handle(Exited(200, 9, "killed by KILL"), 11.5)  # ran 0.5 s since its start
    assert "during its generation's start" not in logs(acts)
    assert "rolling: stopped" not in logs(acts) and kills(acts) == []
    assert spawns(acts) == [(2, 0)]  # in its slot, at once
    assert s.fleet.failures == 0 and s.gens[2].state is State.STARTING
    assert s.snapshot().roll == (2, 0, 3)
    s.handle(Spawned(2, 210, {}, 0), 11.5)
    acts = s.handle(Tick(), 12.5)  # 201 and 210 started beside 101 and 102: one goes
    assert kills(acts) == [101]
    assert spawns(s.handle(Exited(101, 0, "exit code 0"), 12.6)) == [(2, 2)]
    s.handle(Spawned(2, 202, {}, 2), 12.6)
    assert kills(s.handle(Tick(), 13.6)) == [102]
    assert s.current() is s.gens[2] and status_detail(s.snapshot(), 1, 14.0)[
        "failed_generation"
    ] is None


def test_a_started_new_worker_crashing_early_again_waits_out_the_backoff_in_its_slot() -> None:
    s = make(workers=3, rolling=1, min_uptime=5.0, backoff_max=8.0)
    boot(s)
    s.handle(Signalled(signal.SIGHUP), 10.0)
    s.handle(Spawned(2, 200, {}, 0), 10.0)
    s.handle(Tick(), 11.0)
    s.handle(Exited(100, 0, "exit code 0"), 11.0)
    s.handle(Spawned(2, 201, {}, 1), 11.0)
    assert spawns(s.handle(Exited(200, 9, "killed by KILL"), 11.5)) == [(2, 0)]  # the first
    s.handle(Spawned(2, 210, {}, 0), 11.5)
    s.handle(Tick(), 12.0)  # 201 started
    assert kills(s.handle(Tick(), 12.5)) == [101]  # 210 started
    acts = s.handle(Exited(210, 9, "killed by KILL"), 13.0)  # the second early crash in a row
    assert "slot 0: next attempt in" in logs(acts)
    assert spawns(acts) == [(2, 2)]  # the roll goes on; slot 0 waits out the backoff
    assert s.gens[2].state is State.STARTING and s.fleet.failures == 2
    assert spawns(s.handle(Exited(101, 0, "exit code 0"), 13.1)) == []
    due = s.next_deadline()
    assert due is not None and due > 13.1
    assert spawns(s.handle(Tick(), due)) == [(2, 0)]  # after the backoff, in its slot
    s.handle(Spawned(2, 202, {}, 2), due)
    s.handle(Spawned(2, 220, {}, 0), due)
    assert kills(s.handle(Tick(), due + 1.0)) == [102]
    assert s.current() is s.gens[2]
