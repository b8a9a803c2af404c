"""(d) idle wake-ups of the starter (context switches over an idle window) and
(e) its RSS, the interpreters' floor, what our modules cost, and the leak check
over the (c) runs. d and e run together: the same idle starters."""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from harness.common import PY, base_env, log, wait_for
from harness.fmt import fmb, met, ratio, yesno
from harness.processes import Starter
from harness.procfs import ctx_switches, vmrss_kb
from harness.section import Results, Row, Section

AUTO = ["--enable-auto-restart", "--auto-restart-interval", "3600"]
# (key, implementation, options, the app sends READY=1)
CONFIGS = [
    ("ours", "ours", [], False),
    ("ours_auto", "ours", AUTO, False),
    ("ours_ready", "ours", ["--wait-ready"], True),
    ("perl", "perl", [], False),
    ("perl_auto", "perl", AUTO, False),
]
# The modules our running starter holds (it re-executes itself as `python -S`
# once its options are read, see start_server/reexec.py), nothing run.
IMPORTS_ONLY = (
    "import sys; sys.path.insert(0, {parent!r}); "
    "import start_server.cli, start_server.reexec, start_server.config, start_server.loop, "
    "start_server.daemonize; sys.stdin.read()"
)


def measure(opt: argparse.Namespace, root: Path) -> dict[str, Any]:
    starters = {
        k: Starter(impl, f"d-{k}", o, 0.0, root, notify=notify).start()
        for k, impl, o, notify in CONFIGS
    }
    for s in starters.values():
        s.wait_settled()
    out = _idle_window(opt, starters)
    for s in starters.values():
        s.stop()
    out["bare_python_kb"] = _bare_rss([PY, "-S", "-c", "import sys; sys.stdin.read()"])
    out["bare_perl_kb"] = _bare_rss(["perl", "-e", "my @x = <STDIN>;"])
    import start_server

    parent = str(Path(start_server.__file__).resolve().parent.parent)
    out["imports_kb"] = _bare_rss([PY, "-S", "-c", IMPORTS_ONLY.format(parent=parent)])
    return out


def _idle_window(opt: argparse.Namespace, starters: dict[str, Starter]) -> dict[str, Any]:
    # Both starters are idle once the first generation is listed: ours has no
    # timer left (or one an hour away), Perl sits in wait(2) (or its 1 s alarm).
    c0 = {k: ctx_switches(s.pid) for k, s in starters.items()}
    rss = {k: vmrss_kb(s.pid) for k, s in starters.items()}
    threads = {k: len(os.listdir(f"/proc/{s.pid}/task")) for k, s in starters.items()}
    t0 = time.monotonic()
    time.sleep(opt.idle)  # the measurement window itself, nothing to wait for
    c1 = {k: ctx_switches(s.pid) for k, s in starters.items()}
    window = time.monotonic() - t0
    out: dict[str, Any] = {"window": window}
    for k in starters:
        out[k] = {
            "switches": c1[k] - c0[k],
            "per_s": (c1[k] - c0[k]) / window,
            "rss_kb": rss[k],
            "threads": threads[k],
        }
        log(f"  (d/e) {k}: {c1[k] - c0[k]} switches in {window:.1f} s, RSS {rss[k]} kB")
    return out


def _bare_rss(cmd: list[str]) -> int:
    """RSS of a bare interpreter blocked on stdin: the floor under either starter."""
    p = subprocess.Popen(
        cmd,
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=base_env(),
        start_new_session=True,
    )
    try:

        def blocked() -> bool:
            # /proc/PID/syscall: "0 0x0 ..." is read(2) on fd 0, which happens
            # only once the interpreter has finished starting up.
            with open(f"/proc/{p.pid}/syscall") as fh:
                fields = fh.read().split()
            return len(fields) > 1 and fields[0] == "0" and int(fields[1], 16) == 0

        wait_for(blocked, 10, f"{cmd[0]} to block on stdin", step=0.01)
        return vmrss_kb(p.pid)
    finally:
        assert p.stdin is not None
        p.stdin.close()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


# ---- the table -----------------------------------------------------------------


def rows(results: Results) -> list[Row]:
    d = results.get("de")
    out = _idle_rows(d) + _rss_rows(d) if d else []
    c = results.get("c")
    if c:
        out.append(_leak_row(c))
    return out


def _wakeups(o: dict[str, Any], window: float) -> str:
    return f"{o['per_s']:.2f} ({o['switches']} in {window:.0f} s)"


def _idle_rows(d: dict[str, Any]) -> list[Row]:
    out = []
    for key, label in (("", "no auto-restart"), ("_auto", "--enable-auto-restart, interval 3600")):
        o, p = d["ours" + key], d["perl" + key]
        out.append(
            [
                f"(d) idle wake-ups of the starter per second ({label})",
                _wakeups(o, d["window"]),
                _wakeups(p, d["window"]),
                ratio(o["per_s"], p["per_s"]),
                "ours 0",
                yesno(o["switches"] == 0),
            ]
        )
    o = d["ours_ready"]
    out.append(
        [
            "(d) idle wake-ups per second, ours --wait-ready",
            _wakeups(o, d["window"]),
            "",
            "",
            "ours 0",
            yesno(o["switches"] == 0),
        ]
    )
    return out


def _rss_rows(d: dict[str, Any]) -> list[Row]:
    o_kb, p_kb = d["ours"]["rss_kb"], d["perl"]["rss_kb"]
    out = [
        [
            "(e) starter RSS after start",
            fmb(o_kb),
            fmb(p_kb),
            ratio(o_kb, p_kb),
            "ours <= perl",
            yesno(o_kb <= p_kb),
        ],
        [
            "(e) a bare interpreter's RSS (`python -S -c` / `perl -e`, blocked on stdin)",
            fmb(d["bare_python_kb"]),
            fmb(d["bare_perl_kb"]),
            ratio(d["bare_python_kb"], d["bare_perl_kb"]),
            "info (floor)",
            "",
        ],
    ]
    if "imports_kb" in d:
        out.append(
            [
                "(e) a bare `python -S -c` that imports our running starter's modules, nothing run",
                fmb(d["imports_kb"]),
                "",
                "",
                "info",
                "",
            ]
        )
    return out


def _leak_row(c: dict[str, Any]) -> Row:
    o_kb, o_kb0 = c["ours_ready"]["rss_after_kb"], c["ours_ready"]["rss_start_kb"]
    p_kb, p_kb0 = c["perl"]["rss_after_kb"], c["perl"]["rss_start_kb"]
    return [
        "(e) starter RSS before -> after the (c) HUP runs (ours --wait-ready)",
        f"{fmb(o_kb0)} -> {fmb(o_kb)}",
        f"{fmb(p_kb0)} -> {fmb(p_kb)}",
        ratio(o_kb, p_kb),
        "info (leak check)",
        "",
    ]


# ---- the reading ---------------------------------------------------------------


def reading(results: Results) -> list[str]:
    d = results.get("de")
    if not d:
        return []
    return [_idle_text(d), _rss_text(d, results.get("c"))]


def _idle_text(d: dict[str, Any]) -> str:
    o, oa, orr = d["ours"], d["ours_auto"], d["ours_ready"]
    p, pa = d["perl"], d["perl_auto"]
    ok = o["switches"] == 0 and oa["switches"] == 0
    return (
        f"**(d) Idle wake-ups.** Over {d['window']:.0f} s idle, ours was switched in "
        f"{o['switches']} times without auto-restart, {oa['switches']} times with "
        f"`--enable-auto-restart --auto-restart-interval 3600` and {orr['switches']} with "
        f"`--wait-ready` (target 0: {met(ok)}); Perl {p['switches']} and "
        f"{pa['switches']} times. Ours blocks in its selector with no timeout, or with the "
        "next deadline (an hour away) as the timeout; Perl with auto-restart wakes on a "
        "1 s alarm to check the time."
    )


def _rss_text(d: dict[str, Any], c: Any) -> str:
    o, p = d["ours"], d["perl"]
    text = (
        f"**(e) RSS.** Ours {fmb(o['rss_kb'])}, Perl {fmb(p['rss_kb'])} (target ours <= "
        f"Perl: {met(o['rss_kb'] <= p['rss_kb'])})."
        " Once its options are read (click, and PyYAML with --config), ours re-executes "
        "itself under `python -S` with the same pid and arguments, so the process that "
        "stays holds neither the option parser nor the site machinery; its run-time "
        "modules avoid typing, shutil, random and the IDNA codec. The floor is the "
        f"interpreter: a bare `python -S -c` blocked on stdin holds "
        f"{fmb(d['bare_python_kb'])}, a bare `perl -e` {fmb(d['bare_perl_kb'])}"
    )
    if "imports_kb" in d:
        text += (
            f"; importing our running starter's modules (nothing run) brings Python to "
            f"{fmb(d['imports_kb'])}, so the modules and the libraries they load "
            f"account for {fmb(d['imports_kb'] - d['bare_python_kb'])} and the running "
            f"starter's own data for {fmb(max(0, o['rss_kb'] - d['imports_kb']))}"
        )
    text += (
        f". Perl's starter is {fmb(p['rss_kb'] - d['bare_perl_kb'])} over its floor. "
        "It does not grow with restarts (next row)."
    )
    if c:
        r0, r1 = c["ours_ready"]["rss_start_kb"], c["ours_ready"]["rss_after_kb"]
        n_gens = sum(r["spawned"] for r in c["ours_ready"]["runs"].values())
        text += f" After the (c) runs ({n_gens} generations) ours went from {fmb(r0)} to {fmb(r1)}."
    return text


def note(results: Results, opt: argparse.Namespace) -> str:
    return f"(d): {opt.idle:g} s idle window" if "de" in results else ""


SECTION = Section(key="de", measure=measure, rows=rows, reading=reading, note=note)
