"""(m) What a restart of --workers 8 costs at its peak: all at once (N new
beside N old) against --rolling (one new beside the old ones, one old retired
per new one ready). Per restart (a HUP), sampled from /proc as fast as it can
be read: the peak count of the starter's children and the peak of their summed
PSS, and the wall time from the HUP until the status file lists only the new
generation. The app (--wait-ready) is ready 100 ms after its exec."""

from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path
from typing import Any

from harness.common import READY_DELAY, log, wait_for
from harness.fmt import fmb, median
from harness.processes import Starter
from harness.procfs import children, pss_kb
from harness.section import Results, Row, Section

WORKERS = 8
SETTLE = 120.0
MODES = {"all": [], "rolling": ["--rolling"]}  # the key in the results -> extra options


def add_options(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--mrestarts", type=int, help="restarts per mode in (m) (default 3, quick 1)")


def defaults(opt: argparse.Namespace) -> None:
    opt.mrestarts = opt.mrestarts or (1 if opt.quick else 3)


def measure(opt: argparse.Namespace, root: Path) -> dict[str, Any]:
    return {mode: _one_mode(opt, root, mode, extra) for mode, extra in MODES.items()}


def _one_mode(opt: argparse.Namespace, root: Path, mode: str, extra: list[str]) -> dict[str, Any]:
    s = Starter(
        "ours", f"m-{mode}", ["--wait-ready", "--workers", str(WORKERS), *extra],
        READY_DELAY, root, workers=WORKERS,
    ).start()
    s.wait_settled(SETTLE)
    runs = [_restart(s) for _ in range(opt.mrestarts)]
    s.stop()
    out = {
        "procs": [r[0] for r in runs],
        "pss_kb": [r[1] for r in runs],
        "wall_s": [r[2] for r in runs],
    }
    log(
        f"  (m) --workers {WORKERS} {mode}: peak processes {out['procs']}, peak PSS "
        f"{[fmb(k) for k in out['pss_kb']]}, HUP -> new generation alone "
        f"{[round(x, 3) for x in out['wall_s']]} s"
    )
    return out


def _restart(s: Starter) -> tuple[int, int, float]:
    """One HUP: (peak children, peak summed PSS in kB, HUP -> only the new generation)."""
    before, _ = s.wait_settled(SETTLE)
    peak_procs = peak_pss = 0
    t0 = time.monotonic()
    os.kill(s.pid, signal.SIGHUP)
    wall = None
    while wall is None:
        kids = children(s.pid)
        peak_procs = max(peak_procs, len(kids))
        peak_pss = max(peak_pss, sum(pss_kb(p) for p in kids))
        g = s.gens()
        if len(g) == WORKERS and all(gen > before for gen, _ in g):
            wall = time.monotonic() - t0
        elif time.monotonic() - t0 > SETTLE:
            wait_for(lambda: False, 0, "the new generation alone after HUP")
    s.wait_settled(SETTLE)
    return peak_procs, peak_pss, wall


# ---- the table and the reading ---------------------------------------------------


def rows(results: Results) -> list[Row]:
    m = results.get("m")
    if not m:
        return []
    out = []
    for mode, label in (("all", "all at once"), ("rolling", "--rolling")):
        run = m[mode]
        out.append(
            [
                f"(m) `--workers {WORKERS} --wait-ready`, {label}: a restart's peak processes; "
                "peak summed PSS; HUP -> new generation alone",
                f"{max(run['procs'])}; {fmb(max(run['pss_kb']))}; "
                f"{median(run['wall_s']):.3f} s",
                "n/a (no --workers)",
                "",
                f"<= {2 * WORKERS} processes" if mode == "all" else f"<= {WORKERS + 1} processes",
                "yes" if max(run["procs"]) <= (2 * WORKERS if mode == "all" else WORKERS + 1)
                else "no",
            ]
        )
    return out


def reading(results: Results) -> list[str]:
    m = results.get("m")
    if not m:
        return []
    a, r = m["all"], m["rolling"]
    slower = median(r["wall_s"]) / median(a["wall_s"]) if median(a["wall_s"]) else 0.0
    return [
        f"**(m) Rolling against all at once.** A restart of `--workers {WORKERS} "
        f"--wait-ready` (the app ready {READY_DELAY * 1000:.0f} ms after exec): all at once "
        f"peaks at {max(a['procs'])} processes and {fmb(max(a['pss_kb']))} summed PSS and "
        f"takes {median(a['wall_s']):.3f} s from the HUP until only the new generation is "
        f"listed; `--rolling` peaks at {max(r['procs'])} processes and "
        f"{fmb(max(r['pss_kb']))}, and takes {median(r['wall_s']):.3f} s ({slower:.1f} x): "
        "memory headroom for one worker instead of N, paid for with N starts one after the "
        "other (and both versions serving meanwhile)."
    ]


def note(results: Results, opt: argparse.Namespace) -> str:
    if "m" not in results:
        return ""
    return f"(m): {opt.mrestarts} restarts per mode"


SECTION = Section(
    key="m",
    measure=measure,
    rows=rows,
    reading=reading,
    note=note,
    add_options=add_options,
    defaults=defaults,
)
