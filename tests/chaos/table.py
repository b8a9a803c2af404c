"""The process table as the chaos test sees it: the starter, its workers, their
forked grandchildren (named ``app-grandchild`` by tests/apps/app.py), zombies."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

GRANDCHILD = "app-grandchild"


@dataclass(frozen=True)
class Table:
    """One scan of /proc, seen from the starter ``starter``."""

    starter: int
    starter_alive: bool
    workers: frozenset[int]
    grandchildren: frozenset[int]
    zombies: frozenset[int]  # dead, unreaped children of the starter or of a worker
    parents: dict[int, int] = field(default_factory=dict, compare=False)


def _scan() -> dict[int, tuple[int, str, str]]:
    """pid -> (ppid, state, comm) of every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        head, _, tail = data.rpartition(b")")
        fields = tail.split()
        comm = head.partition(b"(")[2].decode(errors="replace")
        out[int(entry)] = (int(fields[1]), fields[0].decode(), comm)
    return out


def scan(starter: int) -> Table:
    procs = _scan()
    me = procs.get(starter)
    workers = frozenset(
        p for p, (pp, st, comm) in procs.items()
        if pp == starter and st != "Z" and comm != GRANDCHILD
    )
    parents = {starter, *workers}
    return Table(
        starter=starter,
        starter_alive=me is not None and me[1] != "Z",
        workers=workers,
        grandchildren=frozenset(
            p for p, (pp, st, comm) in procs.items()
            if comm == GRANDCHILD and st != "Z" and pp in parents
        ),
        zombies=frozenset(p for p, (pp, st, _) in procs.items() if st == "Z" and pp in parents),
        parents={p: pp for p, (pp, _, _) in procs.items() if pp in parents},
    )
