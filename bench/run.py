#!/usr/bin/env python3
"""Benchmark our start_server against Perl's Server::Starter 0.35, side by side.

    . .venv/bin/activate            # a regular install: pip install '.[test]'
    python bench/run.py --markdown bench/RESULTS.md  # the full run (about 5 minutes)
    python bench/run.py --quick     # fewer samples, shorter loads (about 2 minutes)
    python bench/run.py --only a,d  # some sections only

Both starters run the same app (bench/app.py) with the same interpreter, on
free loopback ports, each in its own temporary directory. The sections:

  a  --restart wall time (the client command), app ready 100 ms after exec
  b  SIGKILL of the worker -> first successful request; five SIGKILLs of the
     serving worker 1.5 s apart (a crashing app), kill -> first OK each time
  c  wrk -c 50 -t 2 while the starter gets HUP every 100 ms / every 1 s
  d  idle wake-ups of the starter (context switches from /proc/PID/status)
  e  RSS of the starter (VmRSS)
  f  req/s of the app bound directly vs under each starter
  g  req/s of ours --workers 2 vs ours --workers 1 (Perl's has no --workers)
  h  memory-limit restarts of ours under wrk load (Perl's has no memory limit)
  i  time from crossing the memory limit to the replacement ready / old one gone
  j  fd-limit restarts of ours under wrk load, and the time from crossing the
     limit to the replacement ready / old one gone (Perl's has no fd limit)
  k  starter CPU per restart, HUP -> cut-over and RSS of ours --workers 1, 8, 32, 64
  l  start_server --upgrade one after the other under wrk: failed requests, and
     --upgrade -> the new code runs its loop (Perl's has no upgrade in place)
  m  a restart of ours --workers 8, all at once vs --rolling: peak processes,
     peak summed PSS, HUP -> the new generation alone

Every wait is a condition polled with a deadline, every load is bounded in
count and time, and everything started is stopped at the end (TERM, a
deadline, then KILL), even on errors or Ctrl-C. Each process started carries
a token in its environment, so anything left behind is found, reported and
killed.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from harness.common import OURS, PERL_STARTER, PY, SETTINGS, BenchError, base_env, log
from harness.machine import loadavg, machine
from harness.processes import ERRORS, LEFTOVERS, section_scope, stop_all, sweep
from harness.section import Results, Section
from report import build_rows, markdown_report, print_text, samples_note
from sections import SECTIONS

WARM_UP = """
import importlib, pkgutil, start_server
for m in pkgutil.iter_modules(start_server.__path__):
    if not m.name.startswith("_"):
        importlib.import_module("start_server." + m.name)
import click, daemon, json, selectors, secrets, struct, ctypes.util, argparse, http.server
"""


def preflight(root: Path) -> None:
    if not os.path.exists(PERL_STARTER):
        raise BenchError(f"{PERL_STARTER} missing: apt-get install -y libserver-starter-perl")
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed")
    r = subprocess.run(
        [PY, "-c", "from start_server import notify_ready, __version__; print(__version__)"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if r.returncode != 0:
        raise BenchError(
            f"{PY} cannot import start_server (activate the venv where it is installed): {r.stderr}"
        )
    if SETTINGS["pycache"] is not None:
        # Fill the bytecode cache, so no timed run pays for compiling.
        missing = str(root / "no-such-dir" / "x.pid")
        for cmd in (
            [PY, "-c", WARM_UP],
            [*OURS, "--restart", "--pid-file", missing, "--status-file", missing],
            [*OURS, "--version"],
        ):
            subprocess.run(cmd, capture_output=True, timeout=60, env=base_env(), check=False)


def _add_knobs(ap: argparse.ArgumentParser, sections: Sequence[Section]) -> None:
    ap.add_argument("--quick", action="store_true", help="fewer samples, shorter loads")
    ap.add_argument(
        "--only",
        default=",".join(letter for s in sections for letter in s.key),
        help="sections to run, e.g. a,c (d and e run together, so do h and i)",
    )
    ap.add_argument(
        "--samples", type=int, help="samples per timing in (a), (b) (default 5, quick 3)"
    )
    ap.add_argument("--load", type=int, help="seconds of each wrk run in (c) (default 5, quick 3)")
    ap.add_argument(
        "--idle", type=float, help="idle window of (d) in seconds (default 10, quick 5)"
    )
    ap.add_argument("--tput", type=int, help="seconds of each wrk run in (f) (default 1)")
    ap.add_argument("--reps", type=int, help="rounds of (f) (default 12, quick 4)")
    ap.add_argument("--greps", type=int, help="rounds of each app in (g) (default 8, quick 3)")
    ap.add_argument(
        "--mload", type=int, help="seconds of each wrk run in (h) and (j) (default 12, quick 6)"
    )
    ap.add_argument(
        "--keep-alive",
        action="store_true",
        help="(f) with HTTP/1.1 keep-alive instead of one request per connection",
    )
    ap.add_argument(
        "--pin",
        action="store_true",
        help="(f) with the app (and starter) on the last CPU and wrk on the others",
    )
    for s in sections:
        if s.add_options:
            s.add_options(ap)


def _add_outputs(ap: argparse.ArgumentParser) -> None:
    ap.add_argument(
        "--markdown",
        metavar="FILE",
        help="also write the whole results file (machine, command, tables, reading) as markdown",
    )
    ap.add_argument(
        "--note", default="", help="a sentence for the markdown file (e.g. the machine was busy)"
    )
    ap.add_argument("--json", metavar="FILE", help="also write every raw figure as JSON")
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temporary directory (logs)")
    ap.add_argument(
        "--no-pyc-cache",
        action="store_true",
        help="run Python with the caller's bytecode settings (by default a .pyc cache in the "
        "temporary directory is used, so PYTHONDONTWRITEBYTECODE=1 cannot make every start "
        "of ours recompile its sources)",
    )


def parse_args(argv: Optional[list[str]], sections: Sequence[Section]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _add_knobs(ap, sections)
    _add_outputs(ap)
    opt = ap.parse_args(argv)
    q = opt.quick
    opt.samples = opt.samples or (3 if q else 5)
    opt.load = opt.load or (3 if q else 5)
    opt.idle = opt.idle or (5.0 if q else 10.0)
    opt.tput = opt.tput or 1
    opt.reps = opt.reps or (4 if q else 12)
    opt.mload = opt.mload or (6 if q else 12)
    opt.greps = opt.greps or (3 if q else 8)
    for s in sections:
        if s.defaults:
            s.defaults(opt)
    return opt


def run_sections(
    opt: argparse.Namespace, root: Path, sections: Sequence[Section], results: Results
) -> None:
    """Each section asked for by --only, in order; one that fails is listed under
    ERRORS and the others still run."""
    only = {s.strip() for s in opt.only.split(",") if s.strip()}
    for s in sections:
        if not (set(s.key) & only):
            continue
        try:
            with section_scope(s.key):
                results[s.key] = s.measure(opt, root)
        except (BenchError, subprocess.SubprocessError) as exc:
            ERRORS.append(f"section {s.key}: {exc}")
            log(f"section {s.key} FAILED: {exc}")


def _facts(argv: Optional[list[str]]) -> dict[str, str]:
    info = machine()
    info["command"] = " ".join(
        ["python", sys.argv[0]] + [shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)]
    )
    info["load_start"] = loadavg()
    log(f"ours: {' '.join(OURS)} {info['ours']}; perl: {PERL_STARTER} {info['server_starter']}")
    return info


def write_outputs(
    opt: argparse.Namespace,
    results: Results,
    sections: Sequence[Section],
    info: dict[str, str],
    elapsed: float,
) -> None:
    rows = build_rows(results, sections)
    note = samples_note(results, opt, sections)
    print_text(results, sections, info=info, rows=rows, note=note, elapsed=elapsed)
    if opt.markdown:
        Path(opt.markdown).write_text(
            markdown_report(
                results, sections, opt, info=info, rows=rows, note=note, elapsed=elapsed
            )
        )
    if opt.json:
        Path(opt.json).write_text(
            json.dumps(
                {"machine": info, "results": results, "leftovers": LEFTOVERS, "errors": ERRORS},
                indent=1,
            )
        )


def main(argv: Optional[list[str]] = None, sections: Sequence[Section] = SECTIONS) -> int:
    opt = parse_args(argv, sections)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    root = Path(tempfile.mkdtemp(prefix="start_server-bench-"))
    if not opt.no_pyc_cache:
        SETTINGS["pycache"] = str(root / "pycache")
    results: Results = {}
    t_start = time.monotonic()
    try:
        preflight(root)
        info = _facts(argv)
        log(f"workspace {root}")
        run_sections(opt, root, sections, results)
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        return 130
    except BenchError as exc:
        log(f"error: {exc}")
        return 1
    finally:
        stop_all()
        sweep("end")
        if opt.keep_tmp:
            log(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    elapsed = time.monotonic() - t_start
    info["load_end"] = loadavg()
    write_outputs(opt, results, sections, info, elapsed)
    return 1 if ERRORS else 0


if __name__ == "__main__":
    sys.exit(main())
