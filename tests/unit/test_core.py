"""The pure supervisor (start_server.core): events in, actions out, time as an argument.

Generation N always runs as pid ``100 * N`` here, so a Kill names its generation.
"""

from __future__ import annotations

import os
import re
import signal
from typing import TYPE_CHECKING, Optional

import pytest
from core_support import logs, make

from start_server.children import describe
from start_server.core import (
    Exit,
    Exited,
    Kill,
    Notified,
    NotifyUpstream,
    Policy,
    Publish,
    Signalled,
    Spawn,
    Spawned,
    SpawnFailed,
    Start,
    State,
    Supervisor,
    Tick,
    WorkerView,
)
from start_server.log import format_line
from start_server.publish import status_entries

if TYPE_CHECKING:
    from start_server.core import Action, Event

TERM = signal.SIGTERM
KILL = signal.SIGKILL


# ---- helpers -------------------------------------------------------------------------


def pid(n: int) -> int:
    return 100 * n


def spawns(acts: list[Action]) -> list[int]:
    return [a.number for a in acts if isinstance(a, Spawn)]


def kills(acts: list[Action]) -> list[Kill]:
    return [a for a in acts if isinstance(a, Kill)]


def upstream(acts: list[Action]) -> list[str]:
    return [a.message for a in acts if isinstance(a, NotifyUpstream)]


def exits(acts: list[Action]) -> list[int]:
    return [a.code for a in acts if isinstance(a, Exit)]


def entries(s: Supervisor) -> list[tuple[int, int]]:
    """The GEN:PID lines of the core's snapshot."""
    return status_entries(s.snapshot())


def state(s: Supervisor, n: int) -> Optional[State]:
    g = s.gens.get(n)
    return None if g is None else g.state


def tick(s: Supervisor, now: float) -> list[Action]:
    return s.handle(Tick(), now)


def sig(s: Supervisor, signum: int, now: float) -> list[Action]:
    return s.handle(Signalled(signum), now)


def spawned(
    s: Supervisor, n: int, now: float, overrides: Optional[dict[str, str]] = None
) -> list[Action]:
    return s.handle(Spawned(n, pid(n), overrides or {}), now)


def exited(s: Supervisor, n: int, now: float, status: int = 256) -> list[Action]:
    return s.handle(Exited(pid(n), status, f"wait status {status}"), now)


def ready(s: Supervisor, n: int, now: float, **extra: str) -> list[Action]:
    return s.handle(Notified(n, {"READY": "1", **extra}), now)


def start(s: Supervisor, now: float = 0.0, overrides: Optional[dict[str, str]] = None) -> None:
    """Start, and generation 1 spawned at ``now`` (not yet started)."""
    assert spawns(s.handle(Start(), now)) == [1]
    spawned(s, 1, now, overrides)
    assert state(s, 1) is State.STARTING


def boot(s: Supervisor, now: float = 0.0) -> float:
    """Generation 1 spawned at ``now`` and past its start check; returns when it started."""
    start(s, now)
    t = s.next_deadline()
    assert t == now + s.policy.interval
    tick(s, t)
    assert state(s, 1) is State.ACTIVE
    return t


def replace_with(s: Supervisor, n: int, now: float) -> list[Action]:
    """HUP at ``now``, generation ``n`` spawned at once; returns the HUP's actions."""
    acts = sig(s, signal.SIGHUP, now)
    assert spawns(acts) == [n]
    spawned(s, n, now)
    return acts


def feed(s: Supervisor, events: list[tuple[Event, float]]) -> list[Action]:
    out: list[Action] = []
    for ev, now in events:
        out += s.handle(ev, now)
    return out


# ---- start ---------------------------------------------------------------------------


def test_start_spawns_generation_one() -> None:
    s = make()
    assert s.next_deadline() is None
    acts = s.handle(Start(), 0.0)
    assert spawns(acts) == [1]
    assert exits(acts) == []


def test_spawned_is_starting_and_published_but_not_listed() -> None:
    s = make(interval=1.0)
    s.handle(Start(), 5.0)
    spawned(s, 1, 5.0)
    assert state(s, 1) is State.STARTING
    snap = s.snapshot()
    assert [(g.number, g.pid, g.state) for g in snap.generations] == [(1, 100, State.STARTING)]
    assert snap.last_number == 1
    assert entries(s) == []  # only started generations are in the status file
    assert s.next_deadline() == 6.0


def test_start_check_passes_at_interval() -> None:
    s = make(interval=2.0)
    start(s, 10.0)
    assert tick(s, 11.999) == []
    assert state(s, 1) is State.STARTING
    acts = tick(s, 12.0)
    assert state(s, 1) is State.ACTIVE
    assert s.gens[1].started_at == 12.0
    assert upstream(acts) == ["READY=1\nSTATUS=generation 1 (pid 100) is serving"]
    assert kills(acts) == []
    assert spawns(acts) == []
    assert entries(s) == [(1, 100)]
    assert "new worker 100 is now running" in logs(acts)
    assert s.current() is s.gens[1]


def test_nothing_timed_means_no_deadline() -> None:
    s = make()
    boot(s)
    assert s.next_deadline() is None


def test_unknown_pid_and_unhandled_signal_are_ignored() -> None:
    s = make()
    boot(s)
    assert s.handle(Exited(4242, 0, "exit code 0"), 3.0) == []
    assert sig(s, signal.SIGUSR2, 3.0) == []
    assert s.handle(Notified(99, {"READY": "1"}), 3.0) == []
    assert state(s, 1) is State.ACTIVE


def test_first_spawn_failure_exits_1() -> None:
    s = make()
    s.handle(Start(), 0.0)
    acts = s.handle(SpawnFailed(1, "cannot execute 'nope': No such file"), 0.0)
    assert exits(acts) == [1]
    assert "nope" in logs(acts)
    assert spawns(acts) == []
    assert s.next_deadline() is None


def test_first_generation_of_several_workers_gives_up_once() -> None:
    """--workers 3, every spawn fails: one "failed to start" line, then "giving up";
    the siblings' failures after it add nothing to the log."""
    s = make(workers=3)
    s.handle(Start(), 0.0)
    lines = []
    for slot in range(3):
        acts = s.handle(SpawnFailed(1, "cannot execute 'nope': No such file", slot), 0.0)
        lines += logs(acts).splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "failed to start generation 1", "giving up", "exiting"
    ], lines
    assert exits(acts) == [1]


def test_later_spawn_failure_is_a_failed_start_and_retried() -> None:
    s = make(interval=1.0)
    boot(s)
    sig(s, signal.SIGHUP, 10.0)
    acts = s.handle(SpawnFailed(2, "cannot execute 'x'"), 10.0)
    assert exits(acts) == []
    assert state(s, 1) is State.ACTIVE  # the old one keeps serving
    assert kills(acts) == []
    snap = s.snapshot()
    assert (snap.failed_number, snap.failed_reason) == (2, "cannot execute 'x'")
    assert status_entries(snap) == [(1, 100)]
    assert s.next_deadline() == 11.0
    assert spawns(tick(s, 11.0)) == [3]


# ---- HUP -----------------------------------------------------------------------------


def test_hup_spawns_next_generation_and_tells_upstream() -> None:
    s = make()
    boot(s)
    acts = sig(s, signal.SIGHUP, 10.0)
    assert spawns(acts) == [2]
    assert upstream(acts) == ["RELOADING=1\nMONOTONIC_USEC=10000000"]
    assert kills(acts) == []


def test_new_generation_started_retires_old_in_same_call_without_delay() -> None:
    s = make(interval=1.0)
    boot(s)
    replace_with(s, 2, 10.0)
    assert state(s, 1) is State.ACTIVE  # nobody is signalled before the new one started
    acts = tick(s, 11.0)
    assert state(s, 2) is State.ACTIVE
    assert kills(acts) == [Kill(100, TERM)]
    assert state(s, 1) is State.RETIRING
    assert upstream(acts) == ["READY=1\nSTATUS=generation 2 (pid 200) is serving"]
    assert entries(s) == [(1, 100), (2, 200)]
    assert "sending TERM to old workers:100" in logs(acts)
    assert s.current() is s.gens[2]
    acts = exited(s, 1, 11.5, status=15)
    assert state(s, 1) is None
    assert spawns(acts) == []
    assert entries(s) == [(2, 200)]


def test_signal_on_hup_is_used_for_old_generations() -> None:
    s = make(signal_on_hup=signal.SIGUSR1)
    boot(s)
    replace_with(s, 2, 10.0)
    assert kills(tick(s, 11.0)) == [Kill(100, signal.SIGUSR1)]


def test_kill_old_delay_defers_the_signal() -> None:
    s = make(interval=1.0, kill_old_delay=3.0)
    boot(s)
    replace_with(s, 2, 10.0)
    acts = tick(s, 11.0)
    assert state(s, 2) is State.ACTIVE
    assert kills(acts) == []
    assert "sleeping 3 secs before killing old workers" in logs(acts)
    assert s.next_deadline() == 14.0
    assert kills(tick(s, 13.9)) == []
    assert state(s, 1) is State.ACTIVE
    acts = tick(s, 14.0)
    assert kills(acts) == [Kill(100, TERM)]
    assert state(s, 1) is State.RETIRING
    assert s.next_deadline() is None


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (Policy(), 0.0),
        (Policy(auto_restart=True), 5.0),
        (Policy(auto_restart=True, kill_old_delay=0.0), 0.0),
        (Policy(kill_old_delay=2.5), 2.5),
    ],
)
def test_default_kill_old_delay(policy: Policy, expected: float) -> None:
    assert policy.effective_kill_old_delay == expected


def test_hups_during_a_start_coalesce_into_one_restart() -> None:
    s = make(interval=1.0)
    boot(s)
    replace_with(s, 2, 10.0)
    a1 = sig(s, signal.SIGHUP, 10.2)
    a2 = sig(s, signal.SIGHUP, 10.4)
    a3 = sig(s, signal.SIGHUP, 10.6)
    assert spawns(a1 + a2 + a3) == []
    # Each reload request is acknowledged (systemd matches them by timestamp) ...
    assert upstream(a1 + a2 + a3) == [
        f"RELOADING=1\nMONOTONIC_USEC={t}" for t in (10_200_000, 10_400_000, 10_600_000)
    ]
    assert "one more restart will follow" in logs(a1)
    assert "coalesced" in logs(a2)
    assert "coalesced" in logs(a3)
    # The pending restart starts once generation 2 has started, and only one.
    acts = tick(s, 11.0)
    assert state(s, 2) is State.ACTIVE
    assert kills(acts) == [Kill(100, TERM)]
    assert spawns(acts) == [3]
    # ... and READY=1 waits for the generation that carries the last request.
    assert upstream(acts) == ["STATUS=generation 2 (pid 200) is serving; one more restart follows"]
    spawned(s, 3, 11.0)
    acts = tick(s, 12.0)
    assert kills(acts) == [Kill(200, TERM)]
    assert spawns(acts) == []
    assert upstream(acts) == ["READY=1\nSTATUS=generation 3 (pid 300) is serving"]
    assert s.next_deadline() is None


def test_a_failed_reload_still_ends_with_ready_upstream() -> None:
    """systemd's reload job must end: the old generation still serves, so READY=1."""
    s = make(interval=1.0)
    boot(s)
    acts = replace_with(s, 2, 10.0)
    assert upstream(acts) == ["RELOADING=1\nMONOTONIC_USEC=10000000"]
    acts = exited(s, 2, 10.5)
    assert upstream(acts) == [
        "READY=1\nSTATUS=generation 2 failed to start (exited before it started "
        "(wait status 256)); generation 1 (pid 100) is still serving"
    ]
    assert state(s, 1) is State.ACTIVE


def test_no_reloading_upstream_before_the_first_start() -> None:
    s = make(interval=1.0)
    start(s, 0.0)
    assert upstream(sig(s, signal.SIGHUP, 0.5)) == []


def test_pending_restart_is_dropped_when_the_start_fails() -> None:
    s = make(interval=1.0)
    boot(s)
    replace_with(s, 2, 10.0)
    sig(s, signal.SIGHUP, 10.1)
    acts = exited(s, 2, 10.5)
    assert spawns(acts) == []
    assert s.next_deadline() == 11.0
    assert spawns(tick(s, 11.0)) == [3]
    spawned(s, 3, 11.0)
    acts = tick(s, 12.0)
    assert kills(acts) == [Kill(100, TERM)]
    assert spawns(acts) == []  # the HUP is served by generation 3, not once more


# ---- failed starts and backoff -------------------------------------------------------


def test_death_during_start_check_is_a_failed_start() -> None:
    s = make(interval=1.0)
    boot(s)
    replace_with(s, 2, 10.0)
    acts = exited(s, 2, 10.5, status=256)
    assert state(s, 2) is None
    assert state(s, 1) is State.ACTIVE
    assert kills(acts) == [Kill(200, TERM, group=True)]  # only its leftovers
    assert spawns(acts) == []
    assert "seems to have failed to start" in logs(acts)
    snap = s.snapshot()
    assert snap.failed_number == 2
    assert "exited before it started" in snap.failed_reason
    assert status_entries(snap) == [(1, 100)]
    assert s.next_deadline() == 11.0  # spawned_at + interval
    assert spawns(tick(s, 10.9)) == []
    assert spawns(tick(s, 11.0)) == [3]


def test_backoff_doubles_and_is_capped() -> None:
    s = make(interval=1.0, backoff_max=5.0)
    boot(s)
    sig(s, signal.SIGHUP, 100.0)
    t = 100.0
    n = 2
    delays = []
    for _ in range(6):
        spawned(s, n, t)
        exited(s, n, t + 0.1)
        due = s.next_deadline()
        assert due is not None
        delays.append(round(due - t, 9))
        assert spawns(tick(s, due)) == [n + 1]
        n, t = n + 1, due
    assert delays == [1.0, 2.0, 4.0, 5.0, 5.0, 5.0]
    assert state(s, 1) is State.ACTIVE  # the old generation served all along


def test_first_generation_failing_is_retried_with_backoff() -> None:
    s = make(interval=0.5, backoff_max=30.0)
    start(s, 0.0)
    exited(s, 1, 0.1)
    assert s.next_deadline() == 0.5
    assert spawns(tick(s, 0.5)) == [2]
    spawned(s, 2, 0.5)
    exited(s, 2, 0.6)
    assert s.next_deadline() == 1.5


def test_hup_during_backoff_spawns_at_once() -> None:
    s = make(interval=1.0)
    boot(s)
    replace_with(s, 2, 10.0)
    exited(s, 2, 10.1)
    assert spawns(tick(s, 11.0)) == [3]
    spawned(s, 3, 11.0)
    exited(s, 3, 11.1)
    assert s.next_deadline() == 13.0
    acts = sig(s, signal.SIGHUP, 11.5)
    assert spawns(acts) == [4]
    spawned(s, 4, 11.5)
    assert s.next_deadline() == 12.5  # the start check; the backoff timer is gone
    acts = tick(s, 12.5)
    assert kills(acts) == [Kill(100, TERM)]
    assert spawns(tick(s, 13.0)) == []


# ---- the current generation dies -----------------------------------------------------


def test_current_dying_is_respawned_at_once() -> None:
    s = make(interval=1.0)
    boot(s)
    acts = exited(s, 1, 2.0, status=9)
    assert spawns(acts) == [2]
    assert "died unexpectedly" in logs(acts)
    assert state(s, 1) is None
    assert entries(s) == []


def test_long_lived_current_dying_is_respawned_at_once_every_time() -> None:
    s = make(interval=1.0, backoff_max=30.0)
    boot(s)
    assert spawns(exited(s, 1, 100.0)) == [2]
    spawned(s, 2, 100.0)
    tick(s, 101.0)
    assert spawns(exited(s, 2, 200.0)) == [3]


def test_quick_crash_loop_backs_off() -> None:
    s = make(interval=1.0, backoff_max=30.0, min_uptime=2.0)
    boot(s)
    assert spawns(exited(s, 1, 2.0)) == [2]  # 1 s after its start: the first crash in a row
    spawned(s, 2, 2.0)
    tick(s, 3.0)
    acts = exited(s, 2, 3.5)
    assert spawns(acts) == []
    assert s.next_deadline() == 5.5  # 2 * interval after the crash
    assert spawns(tick(s, 5.4)) == []
    assert spawns(tick(s, 5.5)) == [3]


def test_replacement_crashing_quickly_after_a_long_run_backs_off() -> None:
    """A long run clears the count; quick crashes after it are the first, then the second."""
    s = make(interval=1.0, backoff_max=30.0)
    boot(s)
    assert spawns(exited(s, 1, 100.0)) == [2]  # it ran long: respawned at once
    spawned(s, 2, 100.0)
    tick(s, 101.0)
    assert spawns(exited(s, 2, 101.5)) == [3]  # the first crash in a row: at once
    spawned(s, 3, 101.5)
    tick(s, 102.5)
    acts = exited(s, 3, 103.0)  # the second, 0.5 s after its start
    assert spawns(acts) == [], "a quick crash right after a crash was respawned at once"
    assert s.next_deadline() == 105.0


def test_old_generation_dying_is_only_logged() -> None:
    s = make(interval=1.0, kill_old_delay=10.0)
    boot(s)
    replace_with(s, 2, 10.0)
    tick(s, 11.0)
    assert state(s, 1) is State.ACTIVE  # replaced, waiting for the kill-old delay
    acts = exited(s, 1, 12.0)
    assert spawns(acts) == []
    assert kills(acts) == [Kill(100, TERM, group=True)]  # only its leftovers
    assert "old worker 100 died" in logs(acts)
    assert entries(s) == [(2, 200)]
    assert s.next_deadline() is None


def test_retiring_generation_exit_is_only_logged() -> None:
    s = make(interval=1.0)
    boot(s)
    replace_with(s, 2, 10.0)
    tick(s, 11.0)
    acts = exited(s, 1, 11.2)
    assert spawns(acts) == []
    assert "old worker 100 died" in logs(acts)


def test_a_due_deadline_is_acted_on_or_moves_on() -> None:
    """A Tick at next_deadline() must not leave the same deadline behind (a busy loop).

    Generation 1 is replaced with a kill-old delay; generation 2 then dies and its
    successors fail to start, so generation 1 is serving again when its retire time
    comes. Whether or not it is signalled then, the deadline must not stay in the past.
    """
    s = make(interval=1.0, kill_old_delay=5.0, min_uptime=5.0)
    boot(s)
    replace_with(s, 2, 10.0)
    tick(s, 11.0)  # generation 2 started; generation 1 to be signalled at 16
    assert spawns(exited(s, 2, 12.0)) == [3]
    spawned(s, 3, 12.0)
    exited(s, 3, 12.5)  # failed start, next attempt at 14
    assert spawns(tick(s, 14.0)) == [4]
    spawned(s, 4, 14.0)
    exited(s, 4, 14.5)  # failed start, next attempt at 18
    # Generation 1 serves again, so its retirement at 16 is called off.
    assert s.next_deadline() == 18.0
    assert kills(tick(s, 16.0)) == []
    after = s.next_deadline()
    assert after is None or after > 16.0, f"next_deadline() is still {after} after a Tick at 16"


# ---- stopping ------------------------------------------------------------------------


def test_term_signals_all_and_exits_when_all_are_gone() -> None:
    s = make(interval=1.0, signal_on_term=signal.SIGUSR2)
    boot(s)
    replace_with(s, 2, 10.0)  # generation 2 is still starting
    acts = sig(s, TERM, 10.5)
    assert sorted(kills(acts), key=lambda k: k.pid) == [
        Kill(100, signal.SIGUSR2),
        Kill(200, signal.SIGUSR2),
    ]
    assert upstream(acts) == ["STOPPING=1"]
    assert exits(acts) == []
    assert state(s, 1) is State.RETIRING
    assert state(s, 2) is State.RETIRING
    assert exits(exited(s, 2, 10.6)) == []
    assert spawns(tick(s, 11.0)) == []  # no start check for a stopped generation
    acts = exited(s, 1, 10.7)
    assert exits(acts) == [0]
    assert spawns(acts) == []
    assert entries(s) == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGQUIT])
def test_int_and_quit_send_term(signum: int) -> None:
    s = make(signal_on_term=signal.SIGUSR2)
    boot(s)
    acts = sig(s, signum, 5.0)
    assert kills(acts) == [Kill(100, TERM)]
    assert upstream(acts) == ["STOPPING=1"]
    assert exits(exited(s, 1, 5.1)) == [0]


def test_term_does_not_resignal_a_retiring_generation() -> None:
    s = make(interval=1.0, stop_timeout=4.0)
    boot(s)
    replace_with(s, 2, 10.0)
    tick(s, 11.0)
    assert state(s, 1) is State.RETIRING
    acts = sig(s, TERM, 12.0)
    assert kills(acts) == [Kill(200, TERM)]
    # Generation 1 keeps its own deadline (signalled at 11).
    assert s.next_deadline() == 15.0


def test_second_term_while_stopping_is_only_logged() -> None:
    s = make()
    boot(s)
    sig(s, TERM, 5.0)
    acts = sig(s, TERM, 5.5)
    assert kills(acts) == []
    assert "while stopping" in logs(acts)


def test_hup_while_stopping_is_ignored() -> None:
    s = make()
    boot(s)
    sig(s, TERM, 5.0)
    acts = sig(s, signal.SIGHUP, 5.5)
    assert spawns(acts) == []
    assert upstream(acts) == []
    assert "ignored" in logs(acts)
    assert exits(exited(s, 1, 6.0)) == [0]


def test_term_during_backoff_exits_without_respawning() -> None:
    s = make(interval=1.0)
    start(s, 0.0)
    exited(s, 1, 0.1)
    assert s.next_deadline() == 1.0
    acts = sig(s, TERM, 0.5)
    assert exits(acts) == [0]
    assert spawns(acts) == []
    assert s.next_deadline() is None


def test_stop_timeout_escalates_to_sigkill_of_the_group() -> None:
    s = make(stop_timeout=3.0)
    boot(s)
    sig(s, TERM, 10.0)
    assert s.next_deadline() == 13.0
    assert kills(tick(s, 12.9)) == []
    acts = tick(s, 13.0)
    assert kills(acts) == [Kill(100, KILL, group=True)]
    assert "sending KILL to its process group" in logs(acts)
    assert s.next_deadline() is None
    assert kills(tick(s, 20.0)) == []  # only once
    assert exits(exited(s, 1, 20.0, status=9)) == [0]


def test_no_stop_timeout_means_no_escalation() -> None:
    s = make()
    boot(s)
    sig(s, TERM, 10.0)
    assert s.next_deadline() is None
    assert kills(tick(s, 10_000.0)) == []


def test_stop_timeout_applies_to_replaced_generations() -> None:
    s = make(interval=1.0, stop_timeout=2.0)
    boot(s)
    replace_with(s, 2, 10.0)
    tick(s, 11.0)
    assert s.next_deadline() == 13.0
    assert kills(tick(s, 13.0)) == [Kill(100, KILL, group=True)]


# ---- readiness -----------------------------------------------------------------------


def test_wait_ready_ignores_the_interval_and_starts_on_ready() -> None:
    s = make(interval=1.0, wait_ready=True, ready_timeout=10.0)
    start(s, 0.0)
    assert s.next_deadline() == 10.0
    acts = tick(s, 1.0)
    assert state(s, 1) is State.STARTING
    assert upstream(acts) == []
    acts = ready(s, 1, 2.5)
    assert state(s, 1) is State.ACTIVE
    assert s.gens[1].started_at == 2.5
    assert s.gens[1].ready
    assert upstream(acts) == ["READY=1\nSTATUS=generation 1 (pid 100) is serving"]
    assert entries(s) == [(1, 100)]
    assert s.next_deadline() is None


def test_wait_ready_replacement_retires_old_on_ready() -> None:
    s = make(interval=1.0, wait_ready=True, ready_timeout=10.0)
    start(s, 0.0)
    ready(s, 1, 0.5)
    replace_with(s, 2, 5.0)
    assert kills(tick(s, 6.0)) == []
    acts = ready(s, 2, 7.0)
    assert kills(acts) == [Kill(100, TERM)]


def test_ready_timeout_stops_the_generation_as_a_failed_start() -> None:
    s = make(interval=1.0, wait_ready=True, ready_timeout=10.0, stop_timeout=3.0)
    start(s, 0.0)
    ready(s, 1, 0.5)
    replace_with(s, 2, 20.0)
    assert s.next_deadline() == 30.0
    acts = tick(s, 30.0)
    assert kills(acts) == [Kill(200, TERM)]
    assert state(s, 2) is State.RETIRING
    assert state(s, 1) is State.ACTIVE  # the old one keeps serving
    assert "not ready after 10 s" in logs(acts)
    snap = s.snapshot()
    assert snap.failed_number == 2
    assert "not ready" in snap.failed_reason
    assert status_entries(snap) == [(1, 100)]
    # Retried (the backoff has long passed); the unready one is killed after the grace.
    assert spawns(acts) == [3]
    assert kills(tick(s, 32.9)) == []
    assert kills(tick(s, 33.0)) == [Kill(200, KILL, group=True)]
    acts = exited(s, 2, 33.1, status=9)
    assert "never ready" in logs(acts)
    assert spawns(acts) == []


def test_ready_timeout_grace_defaults_to_ten_seconds() -> None:
    s = make(wait_ready=True, ready_timeout=5.0)
    start(s, 0.0)
    tick(s, 5.0)
    assert state(s, 1) is State.RETIRING
    assert s.policy.not_ready_grace == 10.0
    assert kills(tick(s, 14.9)) == []
    assert kills(tick(s, 15.0)) == [Kill(100, KILL, group=True)]


def test_ready_before_interval_ends_the_start_check() -> None:
    s = make(interval=5.0)
    boot(s)
    replace_with(s, 2, 10.0)
    acts = ready(s, 2, 10.3)
    assert state(s, 2) is State.ACTIVE
    assert s.gens[2].started_at == 10.3
    assert kills(acts) == [Kill(100, TERM)]
    assert s.next_deadline() is None


def test_status_notification_is_published() -> None:
    s = make()
    boot(s)
    s.handle(Notified(1, {"STATUS": "serving 3 clients"}), 2.0)
    snap = s.snapshot()
    assert snap.generations[0].status == "serving 3 clients"
    assert s.handle(Notified(1, {"STATUS": "serving 3 clients"}), 2.1) == []


# ---- auto-restart --------------------------------------------------------------------


def test_auto_restart_after_interval() -> None:
    s = make(interval=1.0, auto_restart=True, auto_restart_interval=100.0)
    started = boot(s)
    assert s.next_deadline() == started + 100.0
    assert spawns(tick(s, started + 99.0)) == []
    acts = tick(s, started + 100.0)
    assert spawns(acts) == [2]
    assert "autorestart triggered (interval=100)" in logs(acts)
    spawned(s, 2, 101.0)
    assert s.next_deadline() == 102.0  # only the start check while starting
    acts = tick(s, 102.0)
    assert kills(acts) == []  # auto-restart implies a kill-old delay of 5
    assert s.next_deadline() == 107.0
    assert kills(tick(s, 107.0)) == [Kill(100, TERM)]


def test_auto_restart_is_forced_at_twice_the_interval_while_old_ones_live() -> None:
    s = make(interval=1.0, auto_restart=True, auto_restart_interval=100.0, kill_old_delay=0.0)
    boot(s)
    tick(s, 101.0)
    spawned(s, 2, 101.0)
    tick(s, 102.0)  # generation 2 started; generation 1 signalled but lingers
    assert state(s, 1) is State.RETIRING
    assert s.next_deadline() == 302.0
    assert spawns(tick(s, 202.0)) == []
    acts = tick(s, 302.0)
    assert spawns(acts) == [3]
    assert "forced" in logs(acts)


def test_auto_restart_returns_to_interval_when_the_old_one_exits() -> None:
    s = make(interval=1.0, auto_restart=True, auto_restart_interval=100.0, kill_old_delay=0.0)
    boot(s)
    tick(s, 101.0)
    spawned(s, 2, 101.0)
    tick(s, 102.0)
    assert s.next_deadline() == 302.0
    exited(s, 1, 150.0)
    assert s.next_deadline() == 202.0
    acts = tick(s, 202.0)
    assert spawns(acts) == [3]
    assert "forced" not in logs(acts)


def test_no_auto_restart_while_stopping() -> None:
    s = make(auto_restart=True, auto_restart_interval=10.0)
    boot(s)
    sig(s, TERM, 5.0)
    assert s.next_deadline() is None
    assert spawns(tick(s, 100.0)) == []


# ---- envdir overrides ----------------------------------------------------------------


def test_envdir_kill_old_delay_override() -> None:
    s = make(interval=1.0)
    start(s, 0.0, overrides={"KILL_OLD_DELAY": "2"})
    tick(s, 1.0)
    assert spawns(sig(s, signal.SIGHUP, 10.0)) == [2]
    spawned(s, 2, 10.0, overrides={"KILL_OLD_DELAY": "2"})  # the envdir is read per spawn
    assert kills(tick(s, 11.0)) == []
    assert s.next_deadline() == 13.0
    assert kills(tick(s, 13.0)) == [Kill(100, TERM)]


def test_envdir_enables_auto_restart_with_its_interval() -> None:
    s = make(interval=1.0)
    start(s, 0.0, overrides={"ENABLE_AUTO_RESTART": "1", "AUTO_RESTART_INTERVAL": "50"})
    tick(s, 1.0)
    assert s.policy.auto_restart
    assert s.policy.effective_kill_old_delay == 5.0
    assert s.next_deadline() == 51.0
    assert spawns(tick(s, 51.0)) == [2]


def test_envdir_can_disable_auto_restart() -> None:
    s = make(interval=1.0, auto_restart=True, auto_restart_interval=50.0)
    start(s, 0.0, overrides={"ENABLE_AUTO_RESTART": "0"})
    tick(s, 1.0)
    assert not s.policy.auto_restart
    assert s.next_deadline() is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"KILL_OLD_DELAY": "soon"},
        {"KILL_OLD_DELAY": "nan"},  # made the starter spin, never retiring the old generation
        {"KILL_OLD_DELAY": "inf"},  # overflowed the loop's timeout
        {"KILL_OLD_DELAY": "1e11"},
        {"KILL_OLD_DELAY": "-1"},
        {"KILL_OLD_DELAY": "\uff15"},  # a fullwidth 5
        {"ENABLE_AUTO_RESTART": "1", "AUTO_RESTART_INTERVAL": "1e300"},
        {"ENABLE_AUTO_RESTART": "1", "AUTO_RESTART_INTERVAL": "0"},
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_envdir_bad_value_is_logged_and_ignored(overrides: dict[str, str]) -> None:
    s = make(interval=1.0)
    s.handle(Start(), 0.0)
    acts = spawned(s, 1, 0.0, overrides=overrides)
    assert "ignoring the envdir's policy values" in logs(acts)
    assert s.policy == Policy(interval=1.0)


def test_envdir_override_removed_reverts_to_the_configured_policy() -> None:
    """An envdir file that is gone no longer applies (the original's defect, fixed)."""
    s = make(interval=1.0)
    start(s, 0.0, overrides={"KILL_OLD_DELAY": "7"})
    tick(s, 1.0)
    # The file was removed before generation 2 was spawned: no override any more.
    replace_with(s, 2, 10.0)
    acts = tick(s, 11.0)
    assert kills(acts) == [Kill(100, TERM)], "KILL_OLD_DELAY=7 still applied after removal"


# ---- snapshots -----------------------------------------------------------------------


def test_publish_views_and_status_entries_through_a_restart() -> None:
    s = make(interval=1.0)
    boot(s)
    sig(s, signal.SIGHUP, 10.0)
    spawned(s, 2, 10.0)
    snap = s.snapshot()
    assert [(g.number, g.pid, g.state) for g in snap.generations] == [
        (1, 100, State.ACTIVE),
        (2, 200, State.STARTING),
    ]
    assert snap.generations[1].started_at is None
    assert status_entries(snap) == [(1, 100)]  # the starting one is not listed yet
    tick(s, 11.0)
    assert entries(s) == [(1, 100), (2, 200)]  # both live, old one retiring
    exited(s, 1, 11.5)
    assert entries(s) == [(2, 200)]


def test_publish_last_number_counts_failed_attempts() -> None:
    s = make(interval=1.0)
    start(s, 0.0)
    exited(s, 1, 0.1)
    tick(s, 1.0)
    spawned(s, 2, 1.0)
    snap = s.snapshot()
    assert snap.last_number == 2
    assert snap.failed_number == 1
    tick(s, 2.0)
    assert entries(s) == [(2, 200)]


def test_snapshot_unchanged_when_nothing_changed() -> None:
    """The loop writes the status files only when the snapshot differs."""
    s = make()
    boot(s)
    before = s.snapshot()
    tick(s, 50.0)
    assert s.snapshot() == before


def test_event_sequence_helper() -> None:
    s = make(interval=1.0)
    acts = feed(
        s,
        [
            (Start(), 0.0),
            (Spawned(1, 100), 0.0),
            (Tick(), 1.0),
            (Signalled(TERM), 2.0),
            (Exited(100, 15, "killed by SIGTERM"), 2.1),
        ],
    )
    assert spawns(acts) == [1]
    assert kills(acts) == [Kill(100, TERM), Kill(100, TERM, group=True)]
    assert upstream(acts) == [
        "READY=1\nSTATUS=generation 1 (pid 100) is serving",
        "STOPPING=1",
    ]
    assert exits(acts) == [0]
    assert s.done


# ---- effects' pure helpers: describe, format_line, status_entries --------------------


def wait_status(script: str) -> int:
    """The raw wait status of a real ``sh -c script``."""
    child = os.posix_spawn("/bin/sh", ["sh", "-c", script], {})
    _, status = os.waitpid(child, 0)
    return status


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("exit 0", "exit code 0"),
        ("exit 3", "exit code 3"),
        ("exit 255", "exit code 255"),
        ("kill -KILL $$", "killed by SIGKILL"),
        ("kill -TERM $$", "killed by SIGTERM"),
        ("kill -USR1 $$", "killed by SIGUSR1"),
    ],
)
def test_describe_real_wait_statuses(script: str, expected: str) -> None:
    assert describe(wait_status(script)) == expected


def test_describe_core_dump_and_stop_encodings() -> None:
    # Linux encodings (a core dump is slow and depends on the host's core pattern):
    # signal number, 0x80 for a core dump; 0x7f plus the signal << 8 for a stop.
    assert describe(signal.SIGSEGV | 0x80) == "killed by SIGSEGV, core dumped"
    assert describe(signal.SIGABRT) == "killed by SIGABRT"
    assert describe((signal.SIGSTOP << 8) | 0x7F).startswith("wait status ")


def test_format_line_is_one_greppable_line() -> None:
    line = format_line("starting new worker 123", 4, 123)
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z start_server\[(\d+)\] "
        r"gen=4 pid=123 starting new worker 123\n",
        line,
    )
    assert f"start_server[{os.getpid()}] " in line


def test_format_line_without_generation_or_pid() -> None:
    assert format_line("exiting").endswith(f"start_server[{os.getpid()}] exiting\n")
    assert format_line("failed", 3).endswith(f"start_server[{os.getpid()}] gen=3 failed\n")
    assert format_line("failed", 3, 0).endswith("] gen=3 failed\n")


def test_status_entries_list_only_started_live_generations() -> None:
    def view(n: int, st: State, started: Optional[float]) -> WorkerView:
        return WorkerView(n, pid(n), st, float(n), started, False, "")

    snap = Publish(
        (
            view(1, State.RETIRING, 1.5),
            view(2, State.ACTIVE, 2.5),
            view(3, State.RETIRING, None),  # stopped before it ever started
            view(4, State.STARTING, None),
        ),
        last_number=4,
        failed_number=None,
        failed_reason="",
    )
    assert status_entries(snap) == [(1, 100), (2, 200)]
    assert status_entries(Publish((), 0, None, "")) == []
