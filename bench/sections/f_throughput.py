"""(f) Throughput: the app bound directly vs under each starter, in rounds of short
wrk runs with an A/A control, and the app's socket and process conditions."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path
from typing import Any

from harness.common import BenchError, log, wait_for
from harness.fmt import info_row, median, met, ratio, yesno
from harness.load import affinity, wrk
from harness.processes import DirectApp, Starter
from harness.procfs import proc_status
from harness.section import Results, Row, Section


def app_profile(pid: int, port: int) -> dict[str, str]:
    """What of the app's serving conditions a starter could change."""
    out = {}
    r = subprocess.run(
        ["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True, timeout=10, check=False
    )
    fields = r.stdout.split()
    out["backlog"] = fields[2] if len(fields) > 2 else "?"
    with open(f"/proc/{pid}/limits") as fh:
        for line in fh:
            if line.startswith("Max open files"):
                out["nofile"] = "/".join(line.split()[3:5])
    with open(f"/proc/{pid}/stat", "rb") as fh:
        stat = fh.read().rsplit(b")", 1)[1].split()
    out["nice"] = stat[16].decode()
    out["policy"] = stat[38].decode()
    out["cpus"] = proc_status(pid)["Cpus_allowed_list"]
    return out


def measure(opt: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Throughput: the same app bound directly and under each starter.

    This machine's speed drifts a lot from one second to the next (a busy
    host), so the runs go in rounds of short runs, order rotated each round,
    and each round gives its own ratio to the direct run next to it in time;
    the figure is the median of those ratios. A second run on the direct app
    in every round ("direct again", an A/A test) shows how much of a
    difference this machine can resolve at all.
    """
    ka = opt.keep_alive
    cpus = sorted(os.sched_getaffinity(0))
    app_cpus = {cpus[-1]} if opt.pin and len(cpus) > 1 else None
    wrk_cpus = set(cpus[:-1]) if app_cpus else None
    with affinity(app_cpus):
        direct = DirectApp("f-direct", 0.0, root, keep_alive=ka).start()
        ours = Starter(
            "ours", "f-ours", ["--interval", "1"], 0.0, root, notify=False, keep_alive=ka
        ).start()
        perl = Starter("perl", "f-perl", [], 0.0, root, notify=False, keep_alive=ka).start()
    wait_for(direct.serving, 15, "the direct app")
    ours.wait_settled()
    perl.wait_settled()
    assert direct.proc is not None
    app_env = {
        "direct": app_profile(direct.proc.pid, direct.port),
        "ours": app_profile(ours.gens()[0][1], ours.port),
        "perl": app_profile(perl.gens()[0][1], perl.port),
    }
    targets = {
        "direct": direct.port,
        "ours": ours.port,
        "direct_again": direct.port,
        "perl": perl.port,
    }
    with affinity(wrk_cpus):
        rps, ratios = _rounds(opt, targets)
    return {
        "rps": rps,
        "ratios": ratios,
        "keep_alive": ka,
        "pinned": bool(app_cpus),
        "app_env": app_env,
    }


def _rounds(
    opt: argparse.Namespace, targets: dict[str, int]
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    for port in (targets["direct"], targets["ours"], targets["perl"]):  # warm-up, not recorded
        wrk(port, 1)
    rps: dict[str, list[float]] = {k: [] for k in targets}
    ratios: dict[str, list[float]] = {"ours": [], "perl": [], "direct_again": []}
    order = list(targets)
    n = len(order)
    for rep in range(opt.reps):
        this = {}
        for k in order[rep % n :] + order[: rep % n]:  # rotate: no position bias
            res = wrk(targets[k], opt.tput)
            if res["failed"]:
                raise BenchError(f"(f) {k}: {res['failed']} failed requests, no restart")
            this[k] = res["rps"]
            rps[k].append(res["rps"])
        for k, series in ratios.items():
            series.append(this[k] / this["direct"])
        log(
            f"  (f) round {rep + 1}: direct {this['direct']:.0f}, ours {this['ours']:.0f}, "
            f"perl {this['perl']:.0f}, direct again {this['direct_again']:.0f} req/s"
        )
    return rps, ratios


def _spread(q: list[float]) -> str:
    return f"{median(q):.3f} ({min(q):.2f}-{max(q):.2f})"


def rows(results: Results) -> list[Row]:
    f = results.get("f")
    if not f:
        return []
    rd = median(f["rps"]["direct"])
    ro, rp = median(f["rps"]["ours"]), median(f["rps"]["perl"])
    qo, qp, qa = f["ratios"]["ours"], f["ratios"]["perl"], f["ratios"]["direct_again"]
    resolved = abs(median(qa) - 1) <= 0.02
    out = [
        info_row(
            f"(f) app req/s under the starter, median (direct: {rd:.0f})",
            f"{ro:.0f}",
            f"{rp:.0f}",
            ratio(ro, rp),
        ),
        [
            "(f) req/s under the starter / direct, median of per-round ratios (min-max)",
            _spread(qo),
            _spread(qp),
            ratio(median(qo), median(qp)),
            "ours >= 0.98",
            yesno(median(qo) >= 0.98) + ("" if resolved else " (within noise, see A/A)"),
        ],
        [
            "(f) A/A control: direct again / direct, same rounds (what this machine resolves)",
            _spread(qa),
            "",
            "",
            "info (ideal 1.000)",
            "",
        ],
    ]
    env = f.get("app_env", {})
    if env:
        out.append(_conditions_row(env))
    return out


def _conditions_row(env: dict[str, dict[str, str]]) -> Row:
    base = env.get("direct")

    def same(k: str) -> str:
        e = env.get(k)
        if e is None or base is None:
            return "n/a"
        diff = [f"{n} {e[n]} vs {base[n]}" for n in base if e.get(n) != base[n]]
        return "same" if not diff else "differs: " + "; ".join(diff)

    return [
        "(f) the app's socket and process vs direct "
        "(listen backlog, RLIMIT_NOFILE, nice, CPUs, sched policy)",
        same("ours"),
        same("perl"),
        "",
        "same",
        yesno(same("ours") == "same"),
    ]


def reading(results: Results) -> list[str]:
    f = results.get("f")
    if not f:
        return []
    qo, qp, qa = f["ratios"]["ours"], f["ratios"]["perl"], f["ratios"]["direct_again"]
    mo, mp, ma = median(qo), median(qp), median(qa)
    spread = max(abs(x - 1) for x in qa)
    text = (
        f"**(f) Throughput.** The app answers {mo:.3f} x its direct req/s under ours and "
        f"{mp:.3f} x under Perl (target >= 0.98: {met(mo >= 0.98)}). The A/A control, "
        f"the direct app measured twice in the same rounds, gives {ma:.3f} "
        f"({min(qa):.2f}-{max(qa):.2f})"
    )
    if spread > 0.02:
        text += (
            f": on this machine two identical runs differ by up to {spread * 100:.0f} %, so "
            "a 2 % difference cannot be resolved and the ratios of ours and Perl's should "
            "be read against the A/A figure, not against 1.000."
        )
    else:
        text += ", so the run resolves differences of about 2 %."
    text += (
        " A starter is not on the request path (the app accepts on the inherited socket "
        "itself); the last (f) row checks that the app runs under the same socket and "
        "process conditions as when bound directly."
    )
    return [text]


def note(results: Results, opt: argparse.Namespace) -> str:
    if "f" not in results:
        return ""
    mode = "keep-alive" if opt.keep_alive else "one request per connection"
    return f"(f): {opt.reps} rounds of wrk runs of {opt.tput:g} s each, {mode}"


SECTION = Section(key="f", measure=measure, rows=rows, reading=reading, note=note)
