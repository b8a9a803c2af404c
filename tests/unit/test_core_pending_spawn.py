"""Events between a Spawn and its result.

The loop queues a spawn's result (Spawned or SpawnFailed) behind the events
already waiting, so a signal or an exit can be handled while a generation's
process is being made. Whatever comes first, the result must find its place:
a stop is never left waiting for a generation that has no process, and a
process spawned for a generation that was told to go goes too.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence

from start_server.core import (
    Exit,
    Exited,
    Kill,
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

TERM = signal.SIGTERM


def _exits(acts: Sequence[object]) -> list[int]:
    return [a.code for a in acts if isinstance(a, Exit)]


def _kills(acts: Sequence[object]) -> list[tuple[int, int]]:
    return [(a.pid, a.signum) for a in acts if isinstance(a, Kill) and not a.group]


def _serving(workers: int = 1) -> Supervisor:
    """Generation 1 serving, its workers pids 100, 101, ..."""
    s = Supervisor(Policy(interval=1.0, workers=workers))
    s.handle(Start(), 0.0)
    for slot in range(workers):
        s.handle(Spawned(1, 100 + slot, {}, slot), 0.0)
    s.handle(Tick(), 1.0)
    assert s.gens[1].state is State.ACTIVE
    return s


def test_term_while_a_restart_is_spawning_then_the_spawn_fails() -> None:
    s = _serving()
    assert any(isinstance(a, Spawn) for a in s.handle(Signalled(signal.SIGHUP), 5.0))
    s.handle(Signalled(TERM), 5.0)  # generation 2 has no process yet
    s.handle(Exited(100, 0, "exit code 0"), 5.1)
    acts = s.handle(SpawnFailed(2, "cannot execute 'x'"), 5.1)
    assert _exits(acts) == [0]
    assert s.gens == {}


def test_term_while_a_restart_is_spawning_then_it_is_spawned() -> None:
    s = _serving()
    s.handle(Signalled(signal.SIGHUP), 5.0)
    s.handle(Signalled(TERM), 5.0)
    acts = s.handle(Spawned(2, 200, {}), 5.0)
    assert (200, TERM) in _kills(acts), "the late worker is told to go"
    acts = s.handle(Exited(100, 0, "exit code 0"), 5.1)
    assert _exits(acts) == [], "worker 200 still runs"
    acts = s.handle(Exited(200, 0, "exit code 0"), 5.2)
    assert _exits(acts) == [0]


def test_term_while_the_first_generation_is_spawning() -> None:
    s = Supervisor(Policy(interval=1.0))
    s.handle(Start(), 0.0)
    s.handle(Signalled(TERM), 0.0)
    acts = s.handle(Spawned(1, 100, {}), 0.0)
    assert (100, TERM) in _kills(acts)
    acts = s.handle(Exited(100, 0, "exit code 0"), 0.1)
    assert _exits(acts) == [0]


def test_a_worker_spawned_for_a_generation_already_gone_is_stopped_and_awaited() -> None:
    s = _serving(workers=2)
    # Slot 1 dies and is replaced; before its replacement is made, TERM, and
    # slot 0 exits: generation 1 is gone when the replacement's result comes.
    acts = s.handle(Exited(101, 9, "killed by SIGKILL"), 10.0)
    assert any(isinstance(a, Spawn) for a in acts)
    s.handle(Signalled(TERM), 10.0)
    s.handle(Exited(100, 0, "exit code 0"), 10.0)
    acts = s.handle(Spawned(1, 102, {}, 1), 10.0)
    assert (102, TERM) in _kills(acts), "nobody else would stop it"
    assert _exits(acts) == []
    acts = s.handle(Exited(102, 0, "exit code 0"), 10.1)
    assert _exits(acts) == [0]
