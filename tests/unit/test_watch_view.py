"""What ``--status --watch`` shows for a given JSON sidecar: the live table and the lines."""

from __future__ import annotations

import io
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from start_server import control
from start_server.watch import _JsonLines, _Lines

NOW = 1_800_000_000.0


def worker(gen: int, slot: int, pid: int, state: str, **extra: Any) -> dict[str, Any]:
    return {"generation": gen, "worker": slot, "pid": pid, "state": state, "ready": False,
            "spawned_at": NOW - 5, "memory": 3 * 1048576, "fds": 9, "restarts": 0,
            "status": "", **extra}


def detail(*workers: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"starter_pid": 42, "generations": list(workers), **extra}


def test_the_live_table_adds_restarts_and_the_last_event() -> None:
    d = detail(worker(1, 0, 100, "active", restarts=2),
               last_event="worker 100 (slot 0) is now running", last_event_at=NOW - 3)
    lines = control.render(d, 42, NOW, live=True)
    assert lines[1].split() == ["GEN", "WORKER", "PID", "STATE", "READY", "UPTIME", "MEMORY",
                                "FDS", "RESTARTS", "STATUS"]
    assert lines[2].split() == ["1", "0", "100", "active", "-", "5s", "3.0M", "9", "2"]
    assert lines[-1] == "last event 3s ago: worker 100 (slot 0) is now running"
    # --status itself is unchanged.
    plain = control.render(d, 42, NOW)
    assert "RESTARTS" not in plain[1] and not plain[-1].startswith("last event")


def shown(view: _Lines, d: dict[str, Any]) -> list[str]:
    out = view.out
    assert isinstance(out, io.StringIO)
    start = len(out.getvalue())
    view.show(d, NOW)
    # Each line: the UTC time, then what changed.
    return [line.split(" ", 1)[1] for line in out.getvalue()[start:].splitlines()]


def test_lines_say_only_what_changed() -> None:
    view = _Lines(io.StringIO(), 42)
    assert shown(view, detail(worker(1, 0, 100, "active"))) == [
        "generation 1 worker 0 pid 100: active"
    ]
    # Memory, fds and uptime alone make no line.
    assert shown(view, detail(worker(1, 0, 100, "active", memory=1, fds=3))) == []
    assert shown(view, detail(worker(1, 0, 100, "active"), worker(2, 0, 200, "starting"))) == [
        "generation 2 worker 0 pid 200: starting"
    ]
    assert shown(view, detail(worker(1, 0, 100, "retiring"),
                              worker(2, 0, 200, "active", ready=True, status="up"))) == [
        "generation 1 worker 0 pid 100: retiring",
        "generation 2 worker 0 pid 200: active, ready, status: up",
    ]
    assert shown(view, detail(worker(2, 0, 200, "active", ready=True, status="up",
                                     restarts=1))) == [
        "generation 2 worker 0 pid 200: active, ready, restarts 1, status: up",
        "generation 1 worker 0 pid 100: gone",
    ]
    failed = detail(worker(2, 0, 200, "active", ready=True, status="up", restarts=1),
                    failed_generation=3, failed_at=NOW, failed_reason="exit code 3")
    assert shown(view, failed) == ["generation 3 failed to start: exit code 3"]
    assert shown(view, failed) == []
    # Every write converts the failure's time to wall-clock time anew: it moves
    # by microseconds, and a sidecar read in the middle of nothing has no failure.
    assert shown(view, {**failed, "failed_at": NOW + 1e-6}) == []
    assert shown(view, detail(worker(2, 0, 200, "active", ready=True, status="up",
                                     restarts=1))) == []
    assert shown(view, {**failed, "failed_at": NOW - 1e-6}) == []
    assert shown(view, {**failed, "failed_generation": 4}) == [
        "generation 4 failed to start: exit code 3"
    ]


def test_json_lines_change_with_the_content_not_the_write_time() -> None:
    view = _JsonLines(io.StringIO(), 42)
    d = detail(worker(1, 0, 100, "active"), updated_at=NOW)
    view.show(d, NOW)
    view.show({**d, "updated_at": NOW + 1}, NOW + 1)
    view.show(detail(worker(1, 0, 100, "active", fds=10)), NOW + 2)
    lines = view.out.getvalue().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 2 and json.loads(lines[1])["generations"][0]["fds"] == 10


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=6),
    max_leaves=30,
)
fields = st.fixed_dictionaries({}, optional={
    k: json_values for k in ("generation", "worker", "pid", "state", "ready", "restarts",
                             "status", "spawned_at", "memory", "fds")
})


@settings(max_examples=20)  # each render may read /proc (memory of the pids it lists)
@given(st.lists(st.lists(fields, max_size=4), max_size=4), json_values, json_values)
def test_any_sidecar_makes_printable_lines(
    snapshots: list[list[dict[str, Any]]], event: Any, failed: Any
) -> None:
    """Untrusted JSON: the lines and the live table stay printable, one per line."""
    view = _Lines(io.StringIO(), 42)
    for workers in snapshots:
        d = detail(*workers, last_event=event, last_event_at=NOW, failed_generation=failed)
        view.show(d, NOW)
        assert all(line.isprintable() for line in control.render(d, 42, NOW, live=True))
    assert all(line.isprintable() for line in view.out.getvalue().splitlines())  # type: ignore[attr-defined]


def test_the_headline_says_a_scale_under_way_and_nothing_once_it_is_done() -> None:
    four = [worker(1, k, 100 + k, "active") for k in range(4)]
    assert control.render(detail(*four, workers=4), 42, NOW)[0] == (
        "start_server pid 42: serving generation 1"
    )
    up = detail(*four, worker(1, 4, 104, "starting"), workers=6)
    assert control.render(up, 42, NOW)[0] == (
        "start_server pid 42: serving generation 1 (1 of 5 workers starting), scaling to 6 workers"
    )
    down = detail(*four[:2], *(worker(1, k, 100 + k, "retiring") for k in (2, 3)), workers=2)
    assert control.render(down, 42, NOW)[0] == "start_server pid 42: serving generation 1"
    # A slot replaced alone (two workers in it) or a new generation starting is no scale.
    busy = detail(*four, worker(1, 2, 112, "starting"), worker(2, 0, 200, "starting"),
                  workers=5)
    assert "scaling" not in control.render(busy, 42, NOW)[0]


def test_lines_say_a_roll_once_per_step() -> None:
    view = _Lines(io.StringIO(), 42)
    roll = {"generation": 2, "started": 1, "workers": 3}
    w = worker(1, 0, 100, "active")
    assert "rolling: generation 2: 1/3 workers" in shown(view, detail(w, rolling=roll))
    assert shown(view, detail(w, rolling=roll)) == []
    assert shown(view, detail(w, rolling={**roll, "started": 2})) == [
        "rolling: generation 2: 2/3 workers"
    ]
    assert shown(view, detail(w, rolling=None)) == []
