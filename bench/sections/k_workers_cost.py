"""(k) What a restart costs the starter as --workers grows: ours --workers N
--wait-ready (N = 1, 8, 32, 64 by default), the app ready at once; per restart
(a HUP), the starter's own CPU time (utime + stime from /proc/PID/stat, from the
HUP until it is idle again), HUP until the status file lists only the new
generation (every old worker gone), and the starter's RSS. Perl's starter has no
--workers."""

from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path
from typing import Any

from harness.common import log, wait_for
from harness.fmt import fmb, median, met, yesno
from harness.processes import Starter
from harness.procfs import cpu_ticks, vmrss_kb
from harness.section import Results, Row, Section

TARGET_MS_PER_WORKER = 2.0  # starter CPU per worker per restart
SETTLE = 120.0  # seconds a generation of 64 workers may take to start on a busy machine


def add_options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--wsizes", help="--workers counts of (k), comma-separated (default 1,8,32,64)")
    ap.add_argument("--wrestarts", type=int, help="restarts per count in (k) (default 5, quick 3)")


def defaults(opt: argparse.Namespace) -> None:
    opt.wsizes = opt.wsizes or "1,8,32,64"
    opt.wrestarts = opt.wrestarts or (3 if opt.quick else 5)


def sched_ns(pid: int) -> int:
    """Time on CPU of the process's main thread (the starter has no other), in ns
    (/proc/PID/schedstat): utime + stime without their clock-tick granularity, a
    cross-check kept in the raw figures."""
    with open(f"/proc/{pid}/schedstat") as fh:
        return int(fh.read().split()[0])


def measure(opt: argparse.Namespace, root: Path) -> dict[str, Any]:
    sizes = [int(x) for x in opt.wsizes.split(",") if x.strip()]
    return {"sizes": {str(n): _one_size(opt, root, n) for n in sizes}}


def _one_size(opt: argparse.Namespace, root: Path, n: int) -> dict[str, Any]:
    s = Starter(
        "ours", f"k-w{n}", ["--wait-ready", "--workers", str(n)], 0.0, root, workers=n
    ).start()
    s.wait_settled(SETTLE)
    rss_start = vmrss_kb(s.pid)
    restarts = [_restart(s, n) for _ in range(opt.wrestarts)]
    out = {
        "cpu_s": [r[0] for r in restarts],
        "sched_s": [r[1] for r in restarts],
        "cutover_s": [r[2] for r in restarts],
        "rss_start_kb": rss_start,
        "rss_after_kb": vmrss_kb(s.pid),
    }
    s.stop()
    log(
        f"  (k) --workers {n}: starter CPU per restart "
        f"{[round(x * 1000) for x in out['cpu_s']]} ms (schedstat "
        f"{[round(x * 1000, 1) for x in out['sched_s']]} ms), HUP -> old gone "
        f"{[round(x, 3) for x in out['cutover_s']]} s, RSS {rss_start} -> "
        f"{out['rss_after_kb']} kB"
    )
    return out


def _restart(s: Starter, n: int) -> tuple[float, float, float]:
    """One HUP: (starter CPU s by stat, by schedstat, HUP -> only the new generation
    listed). The CPU is counted until the starter has settled (idle) again."""
    before, _ = s.wait_settled(SETTLE)
    hz = os.sysconf("SC_CLK_TCK")
    ticks0, ns0 = cpu_ticks(s.pid), sched_ns(s.pid)
    t0 = time.monotonic()
    os.kill(s.pid, signal.SIGHUP)

    def cut_over() -> bool:
        g = s.gens()
        return len(g) == n and all(gen > before for gen, _ in g)

    wait_for(cut_over, SETTLE, f"--workers {n}: every old worker gone after HUP", step=0.002)
    cutover = time.monotonic() - t0
    s.wait_settled(SETTLE)
    return (cpu_ticks(s.pid) - ticks0) / hz, (sched_ns(s.pid) - ns0) / 1e9, cutover


# ---- the table and the reading ---------------------------------------------------


def _per_restart_ms(run: dict[str, Any]) -> float:
    """Mean starter CPU per restart in ms (a mean: utime + stime count in clock ticks)."""
    return 1000 * sum(run["cpu_s"]) / len(run["cpu_s"])


def rows(results: Results) -> list[Row]:
    wk = results.get("k")
    if not wk:
        return []
    out = []
    for size, run in wk["sizes"].items():
        n = int(size)
        ms = _per_restart_ms(run)
        out.append(
            [
                f"(k) `--workers {n} --wait-ready`, app ready at once: starter CPU per restart "
                "(per worker); HUP -> every old worker gone; starter RSS after start -> "
                "after the restarts",
                f"{ms:.0f} ms ({ms / n:.1f} ms/worker); {median(run['cutover_s']):.3f} s; "
                f"{fmb(run['rss_start_kb'])} -> {fmb(run['rss_after_kb'])}",
                "n/a (no --workers)",
                "",
                f"ours <= {TARGET_MS_PER_WORKER:g} ms/worker" if n > 1 else "info (fixed cost)",
                yesno(ms / n <= TARGET_MS_PER_WORKER) if n > 1 else "",
            ]
        )
    growth = _growth(wk)
    if growth is not None:
        lo, hi, ratio_ = growth
        out.append(
            [
                f"(k) starter CPU per worker per restart at --workers {hi} / at --workers {lo} "
                "(linear cost: about 1)",
                f"{ratio_:.2f}",
                "",
                "",
                "info (linear: about 1)",
                "",
            ]
        )
    return out


def _growth(wk: dict[str, Any]) -> Any:
    """(smallest N > 1, largest N, CPU per worker at the largest / at that smallest)."""
    sizes = sorted(int(x) for x in wk["sizes"] if int(x) > 1)
    if len(sizes) < 2:
        return None
    lo, hi = sizes[0], sizes[-1]
    per = {n: _per_restart_ms(wk["sizes"][str(n)]) / n for n in (lo, hi)}
    return lo, hi, (per[hi] / per[lo]) if per[lo] else float("inf")


def reading(results: Results) -> list[str]:
    wk = results.get("k")
    if not wk:
        return []
    parts = []
    for size, run in wk["sizes"].items():
        n, ms = int(size), _per_restart_ms(run)
        parts.append(
            f"--workers {n}: {ms:.0f} ms of starter CPU per restart ({ms / n:.1f} ms per "
            f"worker), every old worker gone {median(run['cutover_s']):.3f} s after the HUP, "
            f"RSS {fmb(run['rss_start_kb'])} -> {fmb(run['rss_after_kb'])}"
        )
    ok = all(
        _per_restart_ms(r) / int(k) <= TARGET_MS_PER_WORKER
        for k, r in wk["sizes"].items()
        if int(k) > 1
    )
    text = (
        "**(k) Cost of a restart as `--workers` grows.** Ours with `--workers N "
        "--wait-ready`, the app sending READY=1 at once; the starter's own CPU time "
        "(utime + stime) from the HUP until it is idle again, the mean over the restarts: "
        + "; ".join(parts)
        + f" (target at most {TARGET_MS_PER_WORKER:g} ms per worker from 8 workers on, "
        f"where the fixed cost of a restart no longer dominates: {met(ok)})."
        " The HUP -> cut-over time is the N new workers' start (the starter forks them one "
        "after the other without waiting for their exec, then waits for every exec report "
        "and READY=1) and the old workers' exit; on a machine shared with other work it "
        "grows with the load (see the load average above)."
    )
    growth = _growth(wk)
    if growth is not None:
        lo, hi, ratio_ = growth
        text += (
            f" Per worker, a restart costs {ratio_:.2f} x as much at {hi} workers as at {lo}: "
            + (
                "about linear."
                if ratio_ <= 1.5
                else "more than linear (work per event that grows with the number of workers)."
            )
        )
    return [text]


def note(results: Results, opt: argparse.Namespace) -> str:
    if "k" not in results:
        return ""
    return f"(k): {opt.wrestarts} restarts per --workers count"


SECTION = Section(
    key="k",
    measure=measure,
    rows=rows,
    reading=reading,
    note=note,
    add_options=add_options,
    defaults=defaults,
)
