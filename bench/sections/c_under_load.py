"""(c) Failed requests and latency under wrk while the starter gets HUP every 100 ms,
then every 1 s; also the generations really spawned and the starter's RSS before and
after (the leak check of (e))."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Optional

from harness.common import READY_DELAY, log
from harness.fmt import fms, info_row, met, ratio, yesno
from harness.load import WRK_CONNS, WRK_THREADS, WRK_TIMEOUT, HupSender, wrk
from harness.processes import Starter
from harness.procfs import vmrss_kb
from harness.section import OURS_I1, OURS_READY, PERL_I1, Results, Row, RunConfig, Section

PERIODS = (("0.1", "100 ms"), ("1", "1 s"))  # HUP periods: key of the runs, as written


def measure(opt: argparse.Namespace, root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for config in (OURS_READY, OURS_I1, PERL_I1):
        out[config[0]] = _one_config(opt, root, config)
    return out


def _one_config(opt: argparse.Namespace, root: Path, config: RunConfig) -> dict[str, Any]:
    key, impl, opts, notify, desc = config
    s = Starter(impl, f"c-{key}", opts, READY_DELAY, root, notify=notify).start()
    s.wait_settled()
    rss_start = vmrss_kb(s.pid)
    runs = {}
    for period in (0.1, 1.0):
        res = _hup_run(opt, s, period)
        runs[f"{period:g}"] = res
        log(
            f"  (c) {desc} HUP/{period:g}s: {res['requests']} req, failed {res['failed']} "
            f"(connect {res['connect']} read {res['read']} write {res['write']} "
            f"timeout {res['timeout']} status {res['status']}), p99 {res['p99_us'] / 1000:.1f} "
            f"ms, {res['hups']} HUPs -> {res['spawned']} generations"
        )
    out = {
        "desc": desc,
        "runs": runs,
        "rss_start_kb": rss_start,
        "rss_after_kb": vmrss_kb(s.pid),
    }
    s.stop()
    return out


def _hup_run(opt: argparse.Namespace, s: Starter, period: float) -> dict[str, Any]:
    """One wrk run of --load seconds while HUPs arrive every ``period``."""
    before = len(s.spawns())
    hup = HupSender(s.pid, period, opt.load)
    try:
        hup.start()
        res = wrk(s.port, opt.load)
    finally:
        hup.stop()
    s.wait_settled(60)
    res["hups"] = hup.sent
    res["spawned"] = len(s.spawns()) - before
    return res


def rows(results: Results) -> list[Row]:
    c = results.get("c")
    if not c:
        return []
    out = []
    for period, label in PERIODS:
        pr = c["perl"]["runs"][period]
        for key in ("ours_ready", "ours_i1"):
            orun = c[key]["runs"][period]
            out.append(
                [
                    f"(c) HUP every {label}: failed requests, {c[key]['desc']} vs perl",
                    f"{orun['failed']} / {orun['requests']}",
                    f"{pr['failed']} / {pr['requests']}",
                    ratio(orun["failed"], pr["failed"]),
                    "ours 0",
                    yesno(orun["failed"] == 0),
                ]
            )
        for key in ("ours_ready", "ours_i1"):
            orun = c[key]["runs"][period]
            out.append(
                info_row(
                    f"(c) HUP every {label}: p99 latency, {c[key]['desc']} vs perl",
                    fms(orun["p99_us"]),
                    fms(pr["p99_us"]),
                    ratio(orun["p99_us"], pr["p99_us"]),
                )
            )
    return out


def reading(results: Results) -> list[str]:
    c = results.get("c")
    if not c:
        return []
    parts = []
    for period, label in PERIODS:
        orr, oi, pr = (c[k]["runs"][period] for k in ("ours_ready", "ours_i1", "perl"))
        parts.append(
            f"HUP every {label}: failed requests {orr['failed']} (`--wait-ready`) and "
            f"{oi['failed']} (`--interval 1`) for ours, {pr['failed']} for Perl (target 0: "
            f"{met(orr['failed'] == 0 and oi['failed'] == 0)}); p99 "
            f"{fms(orr['p99_us'])} / {fms(oi['p99_us'])} vs {fms(pr['p99_us'])}; "
            f"req/s {orr['rps']:.0f} / {oi['rps']:.0f} vs {pr['rps']:.0f}; "
            f"{orr['hups']} HUPs gave {orr['spawned']} / {oi['spawned']} generations under "
            f"ours, {pr['spawned']} under Perl"
        )
    return [
        "**(c) Restarts under load.** "
        + "; ".join(parts)
        + ". Ours coalesces the HUPs that arrive while a generation is starting into one "
        "pending restart (the log says so), so a HUP every 100 ms starts only as many "
        "generations as can start; Perl starts one per HUP and holds each for its 1 s "
        "interval, so at 100 ms it runs many interpreters at once, which is what its "
        "latency and req/s in that row show. Failed = non-2xx + connect + read + write + "
        "timeout errors of wrk."
    ]


DETAIL_HEAD = [
    "config",
    "HUP every",
    "HUPs",
    "gens spawned",
    "requests",
    "req/s",
    "non-2xx",
    "connect",
    "read",
    "write",
    "timeout",
    "p50",
    "p99",
    "max",
]


def details(results: Results) -> Optional[tuple[str, Row, list[Row]]]:
    """Every wrk run of (c) with each kind of error and the latency percentiles."""
    c = results.get("c")
    if not c:
        return None
    out = []
    for key in ("ours_ready", "ours_i1", "perl"):
        for period, res in c[key]["runs"].items():
            out.append(
                [
                    c[key]["desc"],
                    f"{float(period):g} s",
                    str(res["hups"]),
                    str(res["spawned"]),
                    str(res["requests"]),
                    f"{res['rps']:.0f}",
                    str(res["status"]),
                    str(res["connect"]),
                    str(res["read"]),
                    str(res["write"]),
                    str(res["timeout"]),
                    fms(res["p50_us"]),
                    fms(res["p99_us"]),
                    fms(res["max_us"]),
                ]
            )
    return "(c) in detail:", DETAIL_HEAD, out


def note(results: Results, opt: argparse.Namespace) -> str:
    if "c" not in results:
        return ""
    return (
        f"(c): one wrk run of {opt.load:g} s per row "
        f"(-c {WRK_CONNS} -t {WRK_THREADS}, --timeout {WRK_TIMEOUT}s)"
    )


SECTION = Section(key="c", measure=measure, rows=rows, reading=reading, note=note, details=details)
