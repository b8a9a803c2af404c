"""Rows shared by the sections on health verdicts (memory, open fds): failed
requests while the verdicts restart workers under load, and how long one
replacement takes (the limit crossed -> detected / successor ready / old one gone)."""

from __future__ import annotations

from typing import Any

from harness.fmt import median, yesno
from harness.section import Row


def restart_row(label: str, run: dict[str, Any], baseline: str) -> Row:
    """``label``: the row's first cell; ``baseline``: the original's cell."""
    res = run["wrk"]
    return [
        label,
        f"{res['failed']} / {res['requests']} ({run['verdicts_during_load']} "
        f"restarts, {run['spawned_during_load']} spawned)",
        baseline,
        "",
        "ours 0, restarts > 0",
        yesno(res["failed"] == 0 and run["verdicts_during_load"] > 0),
    ]


def replace_row(
    tag: str, run: dict[str, Any], baseline: str, interval: float, what: str = ""
) -> Row:
    """``tag``: the section's letter; ``what``: the kind of limit, as the row names
    it ("" or "fd "); ``interval``: the health check interval of the run."""
    done = run["complete"]
    if not done:
        return [f"({tag}) {run['desc']}: no complete {what}replacement", "n/a", "", "", "", ""]
    det = median([r["detect"] for r in done])
    rdy = median([r["ready"] for r in done])
    gone = median([r["gone"] for r in done])
    worst = max(r["gone"] for r in done)
    over = "fd leak over" if what else "over"
    return [
        f"({tag}) {over} the limit -> detected / replacement ready / old one gone, "
        f"{run['desc']}, median of {len(done)} (worst gone)",
        f"{det:.2f} / {rdy:.2f} / {gone:.2f} s ({worst:.2f} s)",
        baseline,
        "",
        f"info (two checks {interval:g} s apart: detect in "
        f"{interval:g}-{2 * interval:g} s)",
        "",
    ]
