"""(l) start_server upgraded in place under wrk load: ``start_server --upgrade``
one after the other for the whole run; failed requests, and the time from
``--upgrade`` to it returning (the new code runs its loop). Perl's starter has
no upgrade in place: restarting it closes the port."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path
from typing import Any

from harness.common import READY_DELAY, BenchError, log, timed_run
from harness.fmt import fs, info_row, median, met, yesno
from harness.load import wrk
from harness.processes import Starter
from harness.section import OURS_READY, Results, Row, Section


def measure(opt: argparse.Namespace, root: Path) -> dict[str, Any]:
    key, impl, opts, notify, desc = OURS_READY
    s = Starter(impl, f"l-{key}", opts, READY_DELAY, root, notify=notify).start()
    try:
        s.wait_settled()
        workers = s.gens()
        times: list[float] = []
        errors: list[str] = []
        done = threading.Event()

        def upgrades() -> None:
            cmd = [*s.restart_cmd()]
            cmd[cmd.index("--restart")] = "--upgrade"
            while not done.is_set():
                took, r = timed_run(cmd, 60)
                if r.returncode != 0:
                    errors.append(r.stderr.strip())
                    return
                times.append(took)

        t = threading.Thread(target=upgrades, daemon=True)
        t.start()
        try:
            res = wrk(s.port, opt.load)
        finally:
            done.set()
            t.join(90)
        if errors:
            raise BenchError(f"--upgrade failed: {errors[0]}\n{s.log_tail()}")
        same = s.gens() == workers
    finally:
        s.stop()
    log(
        f"  (l) {desc}: {len(times)} upgrades under load, {res['requests']} req, failed "
        f"{res['failed']}, --upgrade took {[round(x, 3) for x in times]}, same workers {same}"
    )
    return {"desc": desc, "times": times, "wrk": res, "same_workers": same}


def rows(results: Results) -> list[Row]:
    m = results.get("l")
    if not m:
        return []
    res = m["wrk"]
    return [
        [
            f"(l) start_server upgraded in place under load ({len(m['times'])} upgrades): "
            "failed requests",
            f"{res['failed']} / {res['requests']}",
            "no upgrade in place",
            "",
            "ours 0",
            yesno(res["failed"] == 0 and m["same_workers"]),
        ],
        info_row("(l) --upgrade -> the new code runs its loop (median)",
                 fs(median(m["times"]) if m["times"] else None)),
    ]


def reading(results: Results) -> list[str]:
    m = results.get("l")
    if not m:
        return []
    res = m["wrk"]
    return [
        f"**(l) Upgrades in place.** {len(m['times'])} `start_server --upgrade` one after "
        f"the other under wrk: {res['failed']} failed of {res['requests']} requests (target "
        f"0: {met(res['failed'] == 0)}), the same workers throughout: {yesno(m['same_workers'])}; "
        f"each took {fs(median(m['times']) if m['times'] else None)} (median) from the "
        "client's start to its return, most of it the check of the new install in a child "
        "process. Perl's starter has no such upgrade: a new version means restarting it."
    ]


SECTION = Section(key="l", measure=measure, rows=rows, reading=reading)
