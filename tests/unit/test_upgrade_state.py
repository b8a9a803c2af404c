"""The state an upgrade hands over: the core's state through JSON and back,
and a hand-over captured from a released format read by this code's check."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from start_server import __version__, handover
from start_server.core import Supervisor
from start_server.events import Exited, Signalled, Spawned, Start, Tick
from start_server.policy import Policy
from start_server.reexec import lean_argv

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def _busy_core() -> Supervisor:
    """Two workers; a restart under way; a replacement waiting out its backoff."""
    s = Supervisor(Policy(interval=1.0, workers=2, max_memory=1 << 30))
    s.handle(Start(), 100.0)
    s.handle(Spawned(1, 1001, {}, 0, 0.5), 100.0)
    s.handle(Spawned(1, 1002, {}, 1, 0.25), 100.0)
    s.handle(Tick(), 101.5)
    s.handle(Exited(1002, 256, "exit code 1"), 101.6)
    s.handle(Signalled(1), 102.0)
    s.handle(Spawned(2, 2001, {"KILL_OLD_DELAY": "3"}, 0, 0.1), 102.0)
    return s


def _assert_same(mine: Any, theirs: Any, name: str, seen: set[int]) -> None:
    """``mine`` holds what ``theirs`` holds: plain values and data classes equal,
    other objects (the core's parts, their bookkeeping) attribute by attribute."""
    if not hasattr(theirs, "__dict__") or hasattr(theirs, "__dataclass_fields__"):
        assert mine == theirs, name
        return
    if id(theirs) in seen:  # a part's reference to one shared with the others
        return
    seen.add(id(theirs))
    assert type(mine) is type(theirs) and vars(mine).keys() == vars(theirs).keys(), name
    for key, value in vars(theirs).items():
        if key not in ("out", "now"):  # of the event being handled only
            _assert_same(getattr(mine, key), value, f"{name}.{key}", seen)


def test_the_core_goes_through_json_and_comes_back_the_same() -> None:
    s = _busy_core()
    doc = json.loads(json.dumps(s.to_dict()))
    back = Supervisor.from_dict(doc, Policy(interval=1.0, workers=2, max_memory=1 << 30))
    assert back.to_dict() == s.to_dict()
    assert back.gens == s.gens
    # Every attribute of the core and of its parts, the ones added later too, goes over.
    _assert_same(back, s, "core", set())
    assert back.next_deadline() == s.next_deadline()
    assert back.snapshot() == s.snapshot()
    assert back.policy == s.policy  # the envdir's KILL_OLD_DELAY stays in force
    assert back.policy.kill_old_delay == 3.0
    # And the two go on alike.
    assert back.handle(Tick(), 103.5) == s.handle(Tick(), 103.5)
    assert back.to_dict() == s.to_dict()


def _check(doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    """This code's ``--check`` on ``doc``, as an upgrade runs it."""
    fd = handover.write(doc.pop("kind"), {k: v for k, v in doc.items() if k != "format"})
    try:
        return subprocess.run(lean_argv(handover.argument(fd), ["--check"]), pass_fds=(fd,),
                              capture_output=True, text=True, timeout=60, check=False,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    finally:
        os.close(fd)


def test_a_hand_over_of_the_released_format_is_read() -> None:
    """Captured from format 1 (the first one): the options it knew, not
    those added since, and its core state."""
    doc = json.loads((FIXTURES / "upgrade-state-format-1.json").read_text())
    assert doc["format"] == 1
    r = _check(doc)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == __version__


def test_a_damaged_hand_over_fails_the_check() -> None:
    doc = json.loads((FIXTURES / "upgrade-state-format-1.json").read_text())
    del doc["core"]["gens"]
    r = _check(doc)
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("start_server: ")
