"""(h) memory-limit restarts of ours under wrk load (Perl's has no memory limit) and
(i) how long each replacement took, from the app's crossing of the limit to the
starter's log lines. h and i run together: (i) reads the logs of (h)."""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any

from harness.common import log
from harness.fmt import fms, median, met
from harness.load import WRK_CONNS, wrk
from harness.processes import Starter
from harness.section import Results, Row, Section
from harness.starterlog import log_events
from harness.verdictrows import replace_row, restart_row

MEM_LIMIT_MB = 64  # --max-memory
MEM_GROW_MB_PER_S = 32  # the app's leak: from ~11 MB it crosses 64 MiB ~1.7 s after its start
MEM_CHECK_INTERVAL = 0.5
RUNNING = re.compile(r"(?:new )?worker (\d+) (?:\(slot (\d+)\) )?is now running")


def memory_replacements(log_path: Path, mem_log: Path, limit: int) -> list[dict[str, Any]]:
    """Each --max-memory verdict in the log, timed from the app's crossing of the limit.

    cross: the growth step after which the worker's own PSS first exceeded the
    limit (the app's BENCH_MEM_LOG); detect: the starter's "uses ... >
    --max-memory" line; the rest as ``replacements`` says.
    """
    return replacements(log_path, crossings(mem_log, limit), "> --max-memory")


def replacements(log_path: Path, crossed: dict[int, float], verdict: str) -> list[dict[str, Any]]:
    """Each verdict (a log line containing ``verdict``), timed from its worker's
    crossing of the limit (``crossed``: pid -> time). detect: the verdict's line;
    ready: the replacement's "is now running" line (same slot); gone: the
    starter's line that the worker died. Times are seconds after the crossing;
    None where the log ends first."""
    events = log_events(log_path)
    out = []
    for i, (t, pid, msg) in enumerate(events):
        if pid is None or verdict not in msg:
            continue
        m = re.search(r"\(slot (\d+)\)", msg)
        slot = m.group(1) if m else None
        ready = gone = None
        for t2, pid2, msg2 in events[i + 1 :]:
            r = RUNNING.search(msg2)
            if ready is None and r and int(r.group(1)) != pid and r.group(2) == slot:
                ready = t2
            if gone is None and pid2 == pid and " died" in msg2:
                gone = t2
        c = crossed.get(pid)
        out.append(
            {
                "pid": pid,
                "slot": slot,
                "cross": c,
                "detect": None if c is None else t - c,
                "ready": None if c is None or ready is None else ready - c,
                "gone": None if c is None or gone is None else gone - c,
                "at": t,
            }
        )
    return out


def crossings(app_log: Path, limit: int) -> dict[int, float]:
    """pid -> the time of the app's first step over ``limit`` (its own PSS, or fds),
    from its lines "GEN WORKER PID UNIX_TIME FIGURE"."""
    crossed: dict[int, float] = {}
    for line in app_log.read_text().splitlines():
        parts = line.split()
        if len(parts) != 5:
            continue
        app_pid, app_t, pss = int(parts[2]), float(parts[3]), int(parts[4])
        if pss > limit and app_pid not in crossed:
            crossed[app_pid] = app_t
    return crossed


def measure(opt: argparse.Namespace, root: Path) -> dict[str, Any]:
    """(h) memory-limit restarts under wrk load; (i) how long each took.

    The app leaks MEM_GROW_MB_PER_S once serving; ours runs it under
    --max-memory MEM_LIMIT_MB --memory-check-interval 0.5 --wait-ready (once
    with one worker: the generation is restarted; once with --workers 2: each
    worker is replaced alone), while wrk -c 50 runs for --mload seconds.
    Perl's starter has no memory limit, so there is no Perl figure.
    """
    out: dict[str, Any] = {"limit_mb": MEM_LIMIT_MB, "grow_mb_per_s": MEM_GROW_MB_PER_S}
    for key, workers in (("w1", 1), ("w2", 2)):
        out[key] = _one_config(opt, root, key, workers)
    return out


def _one_config(opt: argparse.Namespace, root: Path, key: str, workers: int) -> dict[str, Any]:
    opts = [
        "--wait-ready",
        "--max-memory",
        f"{MEM_LIMIT_MB}M",
        "--memory-check-interval",
        f"{MEM_CHECK_INTERVAL:g}",
    ]
    if workers > 1:
        opts += ["--workers", str(workers)]
    label = f"h-{key}"
    mem_log = root / f"{label}-mem.log"
    s = Starter(
        "ours",
        label,
        opts,
        0.0,
        root,
        workers=workers,
        extra_env={
            "BENCH_GROW_MB_PER_S": f"{MEM_GROW_MB_PER_S:g}",
            "BENCH_MEM_LOG": str(mem_log),
        },
    ).start()
    s.wait_settled(stable=0.0)  # it grows from now on: no time to lose
    spawned0 = len(s.spawns())
    t0 = time.time()
    res = wrk(s.port, opt.mload)
    t1 = time.time()
    spawned = len(s.spawns()) - spawned0
    s.stop()
    reps = memory_replacements(s.log_path, mem_log, MEM_LIMIT_MB * 1048576)
    during = [r for r in reps if t0 <= r["at"] <= t1]
    done = [r for r in reps if r["gone"] is not None and r["ready"] is not None]
    _log_run(key, res, len(during), spawned, done)
    return {
        "desc": "ours --workers 2" if workers > 1 else "ours",
        "opts": opts,
        "wrk": res,
        "verdicts_during_load": len(during),
        "spawned_during_load": spawned,
        "replacements": reps,
        "complete": done,
    }


def _log_run(
    key: str, res: dict[str, Any], during: int, spawned: int, done: list[dict[str, Any]]
) -> None:
    log(
        f"  (h) {key}: {res['requests']} req, failed {res['failed']} (connect "
        f"{res['connect']} read {res['read']} write {res['write']} timeout {res['timeout']} "
        f"status {res['status']}), p99 {res['p99_us'] / 1000:.1f} ms; "
        f"{during} memory verdicts, {spawned} workers spawned during the load"
    )
    for r in done:
        log(
            f"  (i) {key} pid {r['pid']}: cross -> detect {r['detect']:.3f} s, "
            f"-> replacement ready {r['ready']:.3f} s, -> old gone {r['gone']:.3f} s"
        )


# ---- the table -----------------------------------------------------------------


def rows(results: Results) -> list[Row]:
    h = results.get("hi")
    if not h:
        return []
    runs = [(key, h[key]) for key in ("w1", "w2") if h.get(key)]
    return [_restart_row(h, key, run) for key, run in runs] + [
        _replace_row(run) for _key, run in runs
    ]


def _restart_row(h: dict[str, Any], key: str, run: dict[str, Any]) -> Row:
    label = (
        f"(h) `--max-memory {h['limit_mb']}M --memory-check-interval "
        f"{MEM_CHECK_INTERVAL:g} --wait-ready`"
        + (" `--workers 2`" if key == "w2" else "")
        + f", app leaks {h['grow_mb_per_s']} MiB/s, wrk -c {WRK_CONNS}: "
        "failed requests (memory restarts during the load)"
    )
    return restart_row(label, run, "n/a (no --max-memory)")


def _replace_row(run: dict[str, Any]) -> Row:
    return replace_row("i", run, "n/a (no --max-memory)", MEM_CHECK_INTERVAL)


# ---- the reading ---------------------------------------------------------------


def reading(results: Results) -> list[str]:
    h = results.get("hi")
    if not h:
        return []
    out = [_restarts_text(h)]
    replaced = _replacements_text(h)
    if replaced:
        out.append(replaced)
    return out


def _restarts_text(h: dict[str, Any]) -> str:
    parts = []
    for key in ("w1", "w2"):
        run = h.get(key)
        if not run:
            continue
        res = run["wrk"]
        parts.append(
            f"{run['desc']}: {res['failed']} failed of {res['requests']} requests, "
            f"{run['verdicts_during_load']} memory restarts during the load "
            f"({run['spawned_during_load']} workers spawned), p99 {fms(res['p99_us'])}"
        )
    ok = all(
        h[k]["wrk"]["failed"] == 0 and h[k]["verdicts_during_load"] > 0
        for k in ("w1", "w2")
        if k in h
    )
    return (
        f"**(h) Memory-limit restarts under load.** The app leaks {h['grow_mb_per_s']} "
        f"MiB/s once serving; ours runs it with `--max-memory {h['limit_mb']}M "
        f"--memory-check-interval {MEM_CHECK_INTERVAL:g} --wait-ready` while wrk -c "
        f"{WRK_CONNS} runs: "
        + "; ".join(parts)
        + f" (target zero failures, with restarts: {met(ok)}). A memory restart is an "
        "ordinary graceful restart (one worker at a time with `--workers`), so no request "
        "is lost. Perl's starter has no memory limit."
    )


def _replacements_text(h: dict[str, Any]) -> str:
    parts = []
    for key in ("w1", "w2"):
        run = h.get(key)
        if not run or not run["complete"]:
            continue
        done = run["complete"]
        parts.append(
            f"{run['desc']} ({len(done)} replacements): detected after "
            f"{median([r['detect'] for r in done]):.2f} s, replacement ready after "
            f"{median([r['ready'] for r in done]):.2f} s, old worker gone after "
            f"{median([r['gone'] for r in done]):.2f} s (worst "
            f"{max(r['gone'] for r in done):.2f} s)"
        )
    if not parts:
        return ""
    return (
        "**(i) Time to replace a worker over the limit**, from the growth step that "
        "took its PSS over the limit (the app logs its own PSS after each step) to "
        "the starter's log lines (UTC, ms): "
        + "; ".join(parts)
        + f". The rule needs two checks in a row over the limit, checks run every "
        f"{MEM_CHECK_INTERVAL:g} s, so detection lands {MEM_CHECK_INTERVAL:g}-"
        f"{2 * MEM_CHECK_INTERVAL:g} s after the crossing by construction; then the "
        "replacement starts (`--wait-ready`: the app's own start) and the old worker "
        "drains and exits. With `--workers 2` both workers cross at about the same time "
        "and are replaced one after the other, so the second waits for the first "
        "replacement to be ready."
    )


def note(results: Results, opt: argparse.Namespace) -> str:
    if "hi" not in results:
        return ""
    return f"(h), (i): one wrk run of {opt.mload:g} s per configuration"


SECTION = Section(key="hi", measure=measure, rows=rows, reading=reading, note=note)
