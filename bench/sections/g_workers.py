"""(g) Throughput of ours `--workers 2` vs `--workers 1` (Perl's has no --workers),
with a CPU-bound app and with the plain one, plus the CPU each worker used and the
cores the app, wrk and the kernel kept busy."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from harness.common import BenchError, log
from harness.fmt import median
from harness.load import wrk
from harness.processes import Starter
from harness.procfs import cpu_ticks, cpu_total
from harness.section import Results, Row, Section

CPU_MS = 1.0  # the CPU-bound app spends this much CPU time on each request
Cores = dict[str, dict[str, list[float]]]  # "w1"/"w2" -> "app"/"wrk"/"machine"/"irq" -> runs


def measure(opt: argparse.Namespace, root: Path) -> dict[str, Any]:
    """Throughput of ours --workers 2 vs ours --workers 1 (Perl's has no --workers).

    Twice: with the app spending CPU_MS of CPU on each request (CPU-bound, the
    case --workers is for), and with the plain app (where wrk and the
    kernel's loopback work, on the same 2 CPUs, are most of the cost).
    """
    out: dict[str, Any] = {"cpu_ms": CPU_MS}
    for variant, cpu_ms in (("cpu", CPU_MS), ("plain", 0.0)):
        out[variant] = _workers_rounds(opt, root, variant, cpu_ms)
    return out


def _workers_rounds(
    opt: argparse.Namespace, root: Path, variant: str, cpu_ms: float
) -> dict[str, Any]:
    """Same method as (f): rounds of short wrk runs, order rotated, the figure is
    the median of the per-round ratios, and a second run on --workers 1 in
    every round (A/A) shows the noise. The CPU time each of the two workers
    used during the rounds shows that both served.
    """
    ka = opt.keep_alive
    env = {"BENCH_CPU_MS": f"{cpu_ms:g}"} if cpu_ms else None
    one = Starter(
        "ours", f"g-{variant}-w1", ["--wait-ready"], 0.0, root, keep_alive=ka, extra_env=env
    ).start()
    two = Starter(
        "ours",
        f"g-{variant}-w2",
        ["--wait-ready", "--workers", "2"],
        0.0,
        root,
        keep_alive=ka,
        workers=2,
        extra_env=env,
    ).start()
    one.wait_settled()
    two.wait_settled()
    two_pids = [p for _, p in two.gens()]
    for port in (one.port, two.port):  # warm-up, not recorded
        wrk(port, 1)
    ticks0 = {p: cpu_ticks(p) for p in two_pids}
    rps, ratios, cores = _rounds(opt, variant, one, two)
    if sorted(p for _, p in two.gens()) != sorted(two_pids):
        raise BenchError(
            f"(g) the --workers 2 starter replaced a worker during the runs:\n{two.log_tail()}"
        )
    hz = os.sysconf("SC_CLK_TCK")
    cpu = [(cpu_ticks(p) - ticks0[p]) / hz for p in two_pids]
    _log_cpu(variant, cpu, cores)
    one.stop()
    two.stop()
    return {"rps": rps, "ratios": ratios, "worker_cpu_s": cpu, "cores": cores, "keep_alive": ka}


def _rounds(
    opt: argparse.Namespace, variant: str, one: Starter, two: Starter
) -> tuple[dict[str, list[float]], dict[str, list[float]], Cores]:
    targets = {"w1": one.port, "w2": two.port, "w1_again": one.port}
    app_pids = {"w1": [p for _, p in one.gens()], "w2": [p for _, p in two.gens()]}
    app_pids["w1_again"] = app_pids["w1"]
    # CPU cores busy during the runs: the app's workers and wrk (2 CPUs in all here).
    cores: Cores = {k: {"app": [], "wrk": [], "machine": [], "irq": []} for k in ("w1", "w2")}
    rps: dict[str, list[float]] = {k: [] for k in targets}
    ratios: dict[str, list[float]] = {"w2": [], "w1_again": []}
    order = list(targets)
    n = len(order)
    for rep in range(opt.greps):
        this = {}
        for k in order[rep % n :] + order[: rep % n]:
            res = _timed_wrk(opt, k, targets[k], app_pids[k], cores.get(k))
            this[k] = res["rps"]
            rps[k].append(res["rps"])
        for k, series in ratios.items():
            series.append(this[k] / this["w1"])
        log(
            f"  (g) {variant} round {rep + 1}: --workers 1 {this['w1']:.0f}, "
            f"--workers 2 {this['w2']:.0f}, "
            f"--workers 1 again {this['w1_again']:.0f} req/s"
        )
    return rps, ratios, cores


def _timed_wrk(
    opt: argparse.Namespace,
    k: str,
    port: int,
    pids: list[int],
    cores: Any,
) -> dict[str, Any]:
    """One wrk run; into ``cores`` (unless None) the cores the app, wrk, the
    kernel's interrupts and the whole machine kept busy meanwhile."""
    hz = os.sysconf("SC_CLK_TCK")
    t0 = sum(cpu_ticks(p) for p in pids)
    m0 = cpu_total()
    res = wrk(port, opt.tput)
    m1 = cpu_total()
    app_s = (sum(cpu_ticks(p) for p in pids) - t0) / hz
    if res["failed"]:
        raise BenchError(f"(g) {k}: {res['failed']} failed requests, no restart")
    wall = res["duration_us"] / 1e6
    if cores is not None:
        cores["app"].append(app_s / wall)
        cores["wrk"].append(res["wrk_cpu_s"] / wall)
        ncpu = len(os.sched_getaffinity(0))
        ticks = max(1, m1[2] - m0[2])
        cores["machine"].append(ncpu * (m1[0] - m0[0]) / ticks)
        cores["irq"].append(ncpu * (m1[1] - m0[1]) / ticks)
    return res


def _log_cpu(variant: str, cpu: list[float], cores: Cores) -> None:
    log(f"  (g) {variant}: CPU seconds of the two workers: {[round(c, 1) for c in cpu]}")
    for k, c in cores.items():
        log(
            f"  (g) {variant} {k}: cores busy, app {median(c['app']):.2f}, "
            f"wrk {median(c['wrk']):.2f}, "
            f"irq+softirq {median(c['irq']):.2f}, whole machine {median(c['machine']):.2f} "
            "(medians over the runs)"
        )


# ---- the table and the reading ---------------------------------------------------


def _what(g: dict[str, Any], variant: str) -> str:
    if variant == "cpu":
        return f"app spending {g['cpu_ms']:g} ms CPU per request"
    return "plain app (answers at once)"


def rows(results: Results) -> list[Row]:
    g = results.get("g")
    if not g:
        return []
    out = []
    for variant in ("cpu", "plain"):
        v = g.get(variant)
        if v:
            out += _variant_rows(_what(g, variant), v)
    return out


def _busy(c: Cores, k: str) -> str:
    return (
        f"{median(c[k]['app']):.2f} + {median(c[k]['wrk']):.2f} + "
        f"{median(c[k]['irq']):.2f} of {median(c[k]['machine']):.2f}"
    )


def _variant_rows(what: str, v: dict[str, Any]) -> list[Row]:
    r1, r2 = median(v["rps"]["w1"]), median(v["rps"]["w2"])
    q2, qa = v["ratios"]["w2"], v["ratios"]["w1_again"]
    c = v["cores"]
    cpu = v["worker_cpu_s"]
    return [
        [
            f"(g) req/s `--workers 2` / `--workers 1` of ours, {what}: median of "
            "per-round ratios (min-max); median req/s 2 vs 1 (Perl's has no --workers)",
            f"{median(q2):.3f} ({min(q2):.2f}-{max(q2):.2f}); {r2:.0f} vs {r1:.0f}",
            "n/a (no --workers)",
            "",
            f"info (at most {len(os.sched_getaffinity(0))}: CPUs shared with wrk)",
            "",
        ],
        [
            f"(g) {what}: A/A (`--workers 1` again / `--workers 1`); CPU s of each of "
            "the 2 workers; cores busy app + wrk + irq/softirq of the machine",
            f"A/A {median(qa):.3f} ({min(qa):.2f}-{max(qa):.2f}); "
            + " / ".join(f"{x:.1f} s" for x in cpu)
            + f"; 2 workers {_busy(c, 'w2')}, 1 worker {_busy(c, 'w1')}",
            "",
            "",
            "info",
            "",
        ],
    ]


def reading(results: Results) -> list[str]:
    g = results.get("g")
    if not g:
        return []
    n = len(os.sched_getaffinity(0))
    text = (
        "**(g) `--workers 2`.** Perl's starter has no `--workers`, so this compares ours "
        "with 2 workers to ours with 1, the same single-process app, wrk on the same "
        f"{n} CPUs."
    )
    for variant in ("cpu", "plain"):
        v = g.get(variant)
        if v:
            text += _variant_text(g, variant, v)
    return [text]


def _variant_text(g: dict[str, Any], variant: str, v: dict[str, Any]) -> str:
    q2, qa = v["ratios"]["w2"], v["ratios"]["w1_again"]
    c = v["cores"]
    a1, k1 = median(c["w1"]["app"]), median(c["w1"]["wrk"])
    a2, k2 = median(c["w2"]["app"]), median(c["w2"]["wrk"])
    i1, i2 = median(c["w1"]["irq"]), median(c["w2"]["irq"])
    m1, m2 = median(c["w1"]["machine"]), median(c["w2"]["machine"])
    other = max(m1 - a1 - k1 - i1, m2 - a2 - k2 - i2)
    cpu = v["worker_cpu_s"]
    both = min(cpu) > 0.2 * max(cpu)
    if variant == "cpu":
        text = (
            f" With the app spending {g['cpu_ms']:g} ms of CPU on each request "
            f"(CPU-bound, what `--workers` is for), 2 workers serve {median(q2):.2f} x "
            f"the req/s of 1 ({min(q2):.2f}-{max(q2):.2f}, A/A {median(qa):.2f}): the "
            f"app kept {a1:.2f} cores busy with 1 worker and {a2:.2f} with 2."
        )
    else:
        text = (
            f" With the plain app, which answers at once, the ratio is {median(q2):.2f} "
            f"({min(q2):.2f}-{max(q2):.2f}, A/A {median(qa):.2f}): there the app is not "
            f"the bottleneck; with 1 worker it kept {a1:.2f} cores busy, wrk {k1:.2f} "
            f"and the kernel's loopback work (irq/softirq) {i1:.2f}, of {m1:.2f} cores "
            f"busy on the machine, so a second worker has no CPU to run on."
        )
    text += f" The two workers used {cpu[0]:.1f} s and {cpu[1]:.1f} s of CPU" + (
        ", so both served." if both else ": one did most of the work."
    )
    if other > 0.3:
        text += (
            f" Up to {other:.2f} cores went to processes other than the app and wrk "
            "(other work on the machine), which lowers and blurs this figure."
        )
    return text


def note(results: Results, opt: argparse.Namespace) -> str:
    if "g" not in results:
        return ""
    mode = "keep-alive" if opt.keep_alive else "one request per connection"
    return f"(g): {opt.greps} rounds of wrk runs of {opt.tput:g} s each per app, {mode}"


SECTION = Section(key="g", measure=measure, rows=rows, reading=reading, note=note)
