"""What the unit tests of the pure core (test_core*.py) share: a Supervisor
made from policy fields, and the actions of an event picked apart."""

from __future__ import annotations

from typing import TYPE_CHECKING

from start_server.core import Log, Policy, Spawn, Supervisor

if TYPE_CHECKING:
    from start_server.core import Action


def make(**policy: object) -> Supervisor:
    return Supervisor(Policy(**policy))  # type: ignore[arg-type]


def spawns(acts: list[Action]) -> list[tuple[int, int]]:
    """(generation, slot) of each Spawn."""
    return [(a.number, a.slot) for a in acts if isinstance(a, Spawn)]


def logs(acts: list[Action]) -> str:
    return "\n".join(a.message for a in acts if isinstance(a, Log))
