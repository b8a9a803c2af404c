"""The pure supervisor's fd limits: --max-open-files, --max-fd-fraction.

Same shape as --max-memory (test_core_workers.py): two checks in a row over
the limit, then one graceful replacement. Worker ``slot`` of generation ``n``
runs as pid ``100 * n + slot``; a replacement in the same slot gets ``+ 10``.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from core_support import logs, make, spawns

from start_server.core import (
    Fds,
    Kill,
    Log,
    Measure,
    Measured,
    Policy,
    Spawned,
    Start,
    State,
    Supervisor,
    Tick,
)

if TYPE_CHECKING:
    from start_server.core import Action

MIB = 1048576
TERM = signal.SIGTERM


def boot(s: Supervisor) -> None:
    n = s.policy.workers
    s.handle(Start(), 0.0)
    for k in range(n):
        s.handle(Spawned(1, 100 + k, {}, k), 0.0)
    s.handle(Tick(), s.policy.interval)
    assert s.gens[1].state is State.ACTIVE


def fds(count: int, nofile: int | None = 1024, **kinds: int) -> Fds:
    ordered = tuple(sorted(kinds.items(), key=lambda kv: -kv[1])) or (("sockets", count),)
    return Fds(count, ordered, nofile)


def check(s: Supervisor, t: float, **trees: Fds) -> list[Action]:
    """A health check at ``t`` whose result is ``trees`` (pid -> Fds, keyed ``p100``)."""
    by_pid = {int(k[1:]): v for k, v in trees.items()}
    return s.handle(Measured({pid: 10 * MIB for pid in by_pid}, by_pid), t)


def test_fds_over_the_limit_twice_restart_the_generation_once() -> None:
    s = make(interval=1.0, max_open_files=400, health_check_interval=5.0)
    boot(s)
    assert s.next_deadline() == 6.0
    measure = [a for a in s.handle(Tick(), 6.0) if isinstance(a, Measure)]
    assert measure == [Measure((100,), fds=True)]
    assert spawns(check(s, 6.0, p100=fds(412, sockets=398, files=12, pipes=2))) == []
    acts = check(s, 11.0, p100=fds(412, sockets=398, files=12, pipes=2))
    assert spawns(acts) == [(2, 0)]
    assert (
        "generation 1 holds 412 fds: 398 sockets, 12 files, 2 pipes > --max-open-files 400 "
        "(two checks in a row); restarting"
    ) in logs(acts)
    s.handle(Spawned(2, 200, {}, 0), 11.0)
    # While its successor starts, more checks of the old one give no second verdict.
    for t in (11.2, 11.4, 11.6):
        acts = check(s, t, p100=fds(500))
        assert spawns(acts) == [] and "holds" not in logs(acts)
    assert not s.restart_pending
    acts = s.handle(Tick(), 12.0)
    assert [(a.pid, a.signum) for a in acts if isinstance(a, Kill)] == [(100, TERM)]


def test_a_check_under_the_limit_in_between_resets_the_count() -> None:
    s = make(interval=1.0, max_open_files=400)
    boot(s)
    check(s, 6.0, p100=fds(401))
    check(s, 11.0, p100=fds(400))  # at the limit is not over it
    assert spawns(check(s, 16.0, p100=fds(401))) == []
    assert spawns(check(s, 21.0, p100=fds(401))) == [(2, 0)]


def test_memory_and_fds_count_their_own_checks() -> None:
    s = make(interval=1.0, max_memory=64 * MIB, max_open_files=400)
    boot(s)
    s.handle(Measured({100: 80 * MIB}, {100: fds(10)}), 6.0)  # memory over, fds not
    acts = s.handle(Measured({100: 10 * MIB}, {100: fds(401)}), 11.0)  # fds over, memory not
    assert spawns(acts) == []
    acts = s.handle(Measured({100: 10 * MIB}, {100: fds(401)}), 16.0)
    assert spawns(acts) == [(2, 0)] and "--max-open-files 400" in logs(acts)


def test_the_fraction_is_of_each_workers_own_rlimit() -> None:
    s = make(workers=2, interval=1.0, max_fd_fraction=0.5, health_check_interval=1.0)
    boot(s)
    # Slot 0 runs with RLIMIT_NOFILE 1000 (limit 500), slot 1 with 200 (limit 100).
    for t in (2.0, 3.0):
        acts = check(s, t, p100=fds(499, nofile=1000), p101=fds(101, nofile=200))
    assert spawns(acts) == [(1, 1)]
    assert (
        "worker 101 (slot 1) holds 101 fds: 101 sockets > 100 (--max-fd-fraction 0.5 of 200) "
        "(two checks in a row); replacing it"
    ) in logs(acts)
    assert "slot 1: replacing its worker (fd limit)" in logs(acts)
    s.handle(Spawned(1, 111, {}, 1), 3.0)
    for t in (3.2, 3.4):
        acts = check(s, t, p100=fds(499, 1000), p101=fds(150, 200), p111=fds(1, 200))
        assert spawns(acts) == [] and "holds" not in logs(acts)
    acts = s.handle(Tick(), 4.0)  # the replacement is up: the old worker goes
    assert states(s) == {100: State.ACTIVE, 101: State.RETIRING, 111: State.ACTIVE}


def states(s: Supervisor) -> dict[int, State]:
    return {w.pid: w.state for w in s.gens[1].workers}


def test_with_both_options_the_lower_limit_applies() -> None:
    p = Policy(max_open_files=300, max_fd_fraction=0.5)
    assert p.fd_limit(1000) == (300, "--max-open-files 300")
    assert p.fd_limit(400) == (200, "200 (--max-fd-fraction 0.5 of 400)")
    assert p.fd_limit(None) == (300, "--max-open-files 300")
    assert Policy(max_fd_fraction=0.5).fd_limit(None) is None  # unknown rlimit: no limit
    assert Policy().fd_limit(1000) is None
    assert not Policy().checks_health
    assert Policy(max_fd_fraction=0.5).checks_health and Policy(max_fd_fraction=0.5).counts_fds


def test_an_unknown_rlimit_gives_the_fraction_no_verdict() -> None:
    s = make(interval=1.0, max_fd_fraction=0.1)
    boot(s)
    for t in (6.0, 11.0, 16.0):
        assert spawns(check(s, t, p100=fds(5000, nofile=None))) == []


def test_an_unreadable_process_is_one_log_line_however_many_checks() -> None:
    s = make(interval=1.0, max_open_files=400)
    boot(s)
    skipped = Fds(3, (("files", 3),), 1024, ((150, "Permission denied"),))
    acts = s.handle(Measured({100: MIB}, {100: skipped}), 6.0)
    assert logs(acts) == "cannot read the fds of process 150 (Permission denied); not counted"
    assert [a.number for a in acts if isinstance(a, Log)] == [1]  # tagged with its worker
    for t in (11.0, 16.0):
        assert "cannot read" not in logs(s.handle(Measured({100: MIB}, {100: skipped}), t))


def test_memory_only_checks_count_no_fds_and_the_snapshot_shows_both() -> None:
    s = make(interval=1.0, max_memory=64 * MIB)
    boot(s)
    assert [a for a in s.handle(Tick(), 6.0) if isinstance(a, Measure)] == [Measure((100,))]
    s2 = make(interval=1.0, max_open_files=400)
    boot(s2)
    s2.handle(Measured({100: 3 * MIB}, {100: fds(7)}), 6.0)
    view = s2.snapshot().generations[0]
    assert (view.memory, view.fds) == (3 * MIB, 7)


def test_describe_names_the_three_most_numerous_kinds() -> None:
    f = Fds(20, (("sockets", 10), ("files", 5), ("pipes", 3), ("others", 2)))
    assert f.describe() == "20 fds: 10 sockets, 5 files, 3 pipes"
    assert Fds(0).describe() == "0 fds"
