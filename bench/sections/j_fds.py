"""(j) fd-limit restarts of ours under wrk load (Perl's has no fd limit): failed
requests, and how long each replacement took, from the app's crossing of the
limit (its own count, logged) to the starter's log lines."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from harness.common import log
from harness.fmt import fms, median, met
from harness.load import WRK_CONNS, wrk
from harness.processes import Starter
from harness.section import Results, Row, Section
from harness.verdictrows import replace_row, restart_row

from sections.hi_memory import crossings, replacements

FD_LIMIT = 256  # --max-open-files
FD_LEAK_PER_S = 200  # the app's leak: it crosses FD_LIMIT ~1.3 s after it started serving
FD_CHECK_INTERVAL = 0.5
CONFIGS = (("w1", 1), ("w2", 2))


def measure(opt: argparse.Namespace, root: Path) -> dict[str, Any]:
    """The app leaks FD_LEAK_PER_S sockets a second once serving; ours runs it under
    --max-open-files FD_LIMIT --health-check-interval 0.5 --wait-ready (once with one
    worker, once with --workers 2) while wrk -c 50 runs for --mload seconds."""
    out: dict[str, Any] = {"limit": FD_LIMIT, "leak_per_s": FD_LEAK_PER_S}
    for key, workers in CONFIGS:
        out[key] = _one_config(opt, root, key, workers)
    return out


def _one_config(opt: argparse.Namespace, root: Path, key: str, workers: int) -> dict[str, Any]:
    opts = [
        "--wait-ready",
        "--max-open-files",
        str(FD_LIMIT),
        "--health-check-interval",
        f"{FD_CHECK_INTERVAL:g}",
    ]
    if workers > 1:
        opts += ["--workers", str(workers)]
    label = f"j-{key}"
    fd_log = root / f"{label}-fd.log"
    s = Starter(
        "ours",
        label,
        opts,
        0.0,
        root,
        workers=workers,
        extra_env={"BENCH_LEAK_FDS_PER_S": f"{FD_LEAK_PER_S:g}", "BENCH_FD_LOG": str(fd_log)},
    ).start()
    s.wait_settled(stable=0.0)  # it leaks from now on: no time to lose
    spawned0 = len(s.spawns())
    t0 = time.time()
    res = wrk(s.port, opt.mload)
    t1 = time.time()
    spawned = len(s.spawns()) - spawned0
    s.stop()
    reps = replacements(s.log_path, crossings(fd_log, FD_LIMIT), "> --max-open-files")
    during = [r for r in reps if t0 <= r["at"] <= t1]
    done = [r for r in reps if r["gone"] is not None and r["ready"] is not None]
    log(
        f"  (j) {key}: {res['requests']} req, failed {res['failed']}, p99 "
        f"{res['p99_us'] / 1000:.1f} ms; {len(during)} fd verdicts, {spawned} workers "
        f"spawned during the load"
    )
    for r in done:
        log(
            f"  (j) {key} pid {r['pid']}: cross -> detect {r['detect']:.3f} s, "
            f"-> replacement ready {r['ready']:.3f} s, -> old gone {r['gone']:.3f} s"
        )
    return {
        "desc": "ours --workers 2" if workers > 1 else "ours",
        "opts": opts,
        "wrk": res,
        "verdicts_during_load": len(during),
        "spawned_during_load": spawned,
        "replacements": reps,
        "complete": done,
    }


# ---- the table -----------------------------------------------------------------


def rows(results: Results) -> list[Row]:
    j = results.get("j")
    if not j:
        return []
    runs = [(key, j[key]) for key, _ in CONFIGS if j.get(key)]
    return [_restart_row(j, key, run) for key, run in runs] + [
        _replace_row(run) for _key, run in runs
    ]


def _restart_row(j: dict[str, Any], key: str, run: dict[str, Any]) -> Row:
    label = (
        f"(j) `--max-open-files {j['limit']} --health-check-interval {FD_CHECK_INTERVAL:g} "
        "--wait-ready`"
        + (" `--workers 2`" if key == "w2" else "")
        + f", app leaks {j['leak_per_s']} sockets/s, wrk -c {WRK_CONNS}: "
        "failed requests (fd restarts during the load)"
    )
    return restart_row(label, run, "n/a (no fd limit)")


def _replace_row(run: dict[str, Any]) -> Row:
    return replace_row("j", run, "n/a (no fd limit)", FD_CHECK_INTERVAL, what="fd ")


# ---- the reading ---------------------------------------------------------------


def reading(results: Results) -> list[str]:
    j = results.get("j")
    if not j:
        return []
    parts = []
    for key, _ in CONFIGS:
        run = j.get(key)
        if not run:
            continue
        res, done = run["wrk"], run["complete"]
        text = (
            f"{run['desc']}: {res['failed']} failed of {res['requests']} requests, "
            f"{run['verdicts_during_load']} fd restarts during the load, p99 "
            f"{fms(res['p99_us'])}"
        )
        if done:
            text += (
                f"; from the crossing, detected after {median([r['detect'] for r in done]):.2f} s, "
                f"replacement ready after {median([r['ready'] for r in done]):.2f} s, old "
                f"worker gone after {median([r['gone'] for r in done]):.2f} s (median of "
                f"{len(done)})"
            )
        parts.append(text)
    ok = all(
        j[k]["wrk"]["failed"] == 0 and j[k]["verdicts_during_load"] > 0
        for k, _ in CONFIGS
        if k in j
    )
    return [
        f"**(j) fd-limit restarts under load.** The app leaks {j['leak_per_s']} sockets a "
        f"second once serving (and logs its own count, as the starter counts it, after each "
        f"step); ours runs it with `--max-open-files {j['limit']} --health-check-interval "
        f"{FD_CHECK_INTERVAL:g} --wait-ready` while wrk -c {WRK_CONNS} runs: "
        + "; ".join(parts)
        + f" (target zero failures, with restarts: {met(ok)}). The count includes the "
        "connections in flight, so it crosses the limit a little earlier under load. "
        "Perl's starter has no fd limit."
    ]


def note(results: Results, opt: argparse.Namespace) -> str:
    if "j" not in results:
        return ""
    return f"(j): one wrk run of {opt.mload:g} s per configuration"


SECTION = Section(key="j", measure=measure, rows=rows, reading=reading, note=note)
